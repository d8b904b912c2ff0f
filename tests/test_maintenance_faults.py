"""Re-replication after a master restart and rebalancing onto new servers, with real processes."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

from hercules_core.client import connect
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import GFS, MiB, Http, file_handles, replicas_identical, sha256, wait_until


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


async def replica_sets(master: str, paths: list[str]) -> dict[int, list[str]]:
    """The live replicas the master knows for every chunk of ``paths``."""
    client = await connect(master)
    try:
        return {handle: (await client.chunk_servers(handle)).replicas
                for path in paths for handle in await file_handles(client, path)}
    finally:
        await client.close()


def test_chunks_whose_holders_never_return_after_a_master_restart_are_counted_and_repaired(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, chunkservers=5, settings=GFS)
    with cluster as c:
        h = Http(c.gateway_url)
        files = h.put_files({f"/r/{n}": random.randbytes(2 * MiB + 1000 * n) for n in range(6)})
        h.close()
        before = run(replica_sets(c.master_addr, list(files)))
        assert all(len(r) == 3 for r in before.values())
    # Everything stops; the master and two of the five come back, the other three stay away for now.
    try:
        cluster.start_master()
        cluster.start_chunkserver(0)
        cluster.start_chunkserver(1)
        cluster.start_gateway()
        cluster.wait_live(2, 60)
        h = Http(cluster.gateway_url)
        # Every chunk had 3 replicas on 5 servers: with 2 back, none can be at 3 again.
        info = wait_until(lambda: (i := h.json("GET", "/api/v1/cluster")[1])["under_replicated"] > 0 and i,
                          60, "under_replicated > 0 after the registration window")
        assert info["under_replicated"] >= 1
        cluster.start_chunkserver(2)  # the third; chunkservers 4 and 5 never return
        cluster.wait_live(3, 60)

        def repaired() -> bool:
            sets = run(replica_sets(cluster.master_addr, list(files)))
            return len(sets) == len(before) and all(len(r) == 3 for r in sets.values())

        wait_until(repaired, 120, "every chunk back at 3 live replicas")
        wait_until(lambda: h.json("GET", "/api/v1/cluster")[1]["under_replicated"] == 0, 60,
                   "under_replicated back to 0")
        assert run(replicas_identical(cluster.master_addr, list(files)))
        for path, data in files.items():
            assert sha256(h.request("GET", f"/api/v1/files{path}")[2]) == sha256(data)
        h.close()
    finally:
        cluster.stop()


def test_a_new_server_on_a_real_disk_receives_a_fair_share_of_bytes(tmp_path: Path) -> None:
    # No capacity setting: every server reports the whole file system, so usage/capacity is
    # nearly zero everywhere and only the bytes held can tell the servers apart.
    with LocalCluster(tmp_path, settings=GFS) as c:
        h = Http(c.gateway_url)
        files = h.put_files({f"/b/{n}": random.randbytes(3 * MiB + 7 * n) for n in range(8)})
        c.add_chunkserver()
        c.wait_live(4, 60)
        tolerance = 0.25  # of the mean bytes held: a chunk is 1 MiB of about 18 MiB per server

        def balanced() -> list[int] | None:
            servers = [s for s in h.json("GET", "/api/v1/cluster")[1]["chunkservers"] if s["state"] == "alive"]
            held = [s["used_bytes"] for s in servers]
            mean = sum(held) / len(held)
            return held if len(held) == 4 and all(abs(b - mean) <= tolerance * mean for b in held) else None

        held = wait_until(balanced, 120, "bytes held within 25% of the mean on all 4 servers")
        print(f"\nbytes held per server: {held}")
        newcomer = next(s for s in h.json("GET", "/api/v1/cluster")[1]["chunkservers"]
                        if s["address"] == c.chunk_addr(3))
        assert newcomer["chunk_count"] >= 12  # 8 files x 4 chunks x 3 replicas / 4 servers = 24
        sets = wait_until(lambda: (s := run(replica_sets(c.master_addr, list(files))))
                          and all(len(r) == 3 for r in s.values()) and s, 60, "3 replicas of every chunk")
        assert all(len(set(r)) == 3 for r in sets.values())
        assert run(replicas_identical(c.master_addr, list(files)))
        for path, data in files.items():
            assert sha256(h.request("GET", f"/api/v1/files{path}")[2]) == sha256(data)
        h.close()


def test_a_copy_to_a_hung_server_holds_up_no_write_and_is_dropped_once_stale(tmp_path: Path) -> None:
    """A rebalancing move to a server that hangs (still counted live) must not keep writers of the
    chunk waiting for the copy's timeout; the copy, finished late, is at a version writes have
    moved past, so it is deleted instead of joining as a current replica."""
    settings = {**GFS, "HERCULES_DEAD_AFTER": "60", "HERCULES_REBALANCE_INTERVAL": "2"}
    with LocalCluster(tmp_path, settings=settings) as c:
        h = Http(c.gateway_url)
        files = h.put_files({f"/m/{n}": random.randbytes(4 * MiB) for n in range(6)})
        c.add_chunkserver()
        c.wait_live(4, 60)
        c.pause("chunk4")  # moves to it start, and hang in its CopyChunk
        new = {path: bytearray(data) for path, data in files.items()}

        async def rewrite_every_chunk() -> None:
            await asyncio.sleep(3)  # a rebalancing round has started a move to chunk4
            client = await connect(c.master_addr)
            try:
                writes = []
                for path, data in new.items():
                    for offset in range(0, len(data), MiB):
                        piece = random.randbytes(100)
                        data[offset:offset + 100] = piece
                        writes.append(client.write(path, offset, piece))
                await asyncio.gather(*writes)
            finally:
                await client.close()

        try:
            run(rewrite_every_chunk())
        finally:
            c.resume("chunk4")
        late = re.compile(rf"moving chunk \d+ from \S+ to {c.chunk_addr(3)} failed: chunk \d+ on \S+ is at "
                          rf"version|copy of chunk \d+ on {c.chunk_addr(3)} is stale")
        wait_until(lambda: late.search((tmp_path / "logs" / "master.log").read_text()), 150,
                   "the late copy to be refused or found stale")
        wait_until(lambda: run(replicas_identical(c.master_addr, list(new))), 120,
                   "3 identical replicas of every chunk")
        for path, data in new.items():
            assert sha256(h.request("GET", f"/api/v1/files{path}")[2]) == sha256(bytes(data))
        h.close()
