"""Snapshots keep their bytes under faults: a master restart, chunks allocated while a snapshot
runs, and a client whose read cache saw the chunks before the snapshot."""

from __future__ import annotations

import asyncio
import random
import signal
import uuid
from pathlib import Path

from hercules_core import messages as m
from hercules_core.client import Client, connect
from hercules_core.errors import HerculesError
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST, MiB, Http, wait_until


def test_snapshot_after_a_master_restart_ends_leases_clients_still_hold(tmp_path: Path) -> None:
    """The restarted master knows no lease, yet the writer's cached lease must not reach the snapshot."""
    settings = {**FAST, "HERCULES_LEASE_SECONDS": "20"}
    with LocalCluster(tmp_path, settings=settings) as c:
        before, after = random.randbytes(MiB), random.randbytes(MiB)

        async def scenario() -> None:
            writer = await connect(c.master_addr)
            try:
                await writer.mkdir("/a")
                await writer.create("/a/f")
                await writer.write("/a/f", 0, before)  # the writer now holds the chunk's lease
                c.procs["master"].stop()
                c.start_master()
                await asyncio.to_thread(c.wait_live, c.chunkservers, 30.0)
                await writer.snapshot("/a", "/a-snap")
                await writer.write("/a/f", 0, after)  # through the lease cached before the restart
                assert await writer.read("/a-snap/f") == before, "the snapshot changed after it was taken"
                assert await writer.read("/a/f") == after
            finally:
                await writer.close()

        asyncio.run(scenario())


async def write_with_lease(client: Client, loc: m.ChunkLocation, data: bytes) -> None:
    """One mutation straight to the primary ``loc`` names, as a client still holding that lease
    sends it (past the client's own margin before a lease's end); the primary may refuse it."""
    data_id = uuid.uuid4().hex
    try:
        await client.pool.call(loc.replicas[0], m.PushData(data_id, loc.replicas[1:]), data)
        await client.pool.call(loc.primary, m.WriteChunk(loc.handle, loc.version, 0, data_id,
                                                         [r for r in loc.replicas if r != loc.primary]))
    except HerculesError:
        pass


def test_chunks_that_join_a_running_snapshot_are_not_shared_with_a_live_lease(tmp_path: Path) -> None:
    """A snapshot slowed by an unreachable primary; a chunk allocated in its tree meanwhile, and a
    leased file renamed into it, must not reach it through their leases afterwards."""
    settings = {**FAST, "HERCULES_LEASE_SECONDS": "20"}
    with LocalCluster(tmp_path, settings=settings) as c:
        first, second = random.randbytes(MiB // 2), random.randbytes(MiB // 2)
        log = c.procs["master"].log_path

        async def scenario() -> None:
            client = await connect(c.master_addr)
            try:
                await client.mkdir("/d")
                await client.create("/d/f", replication=1)
                await client.write("/d/f", 0, b"x" * 1000)  # chunk 0 leased to its only replica
                await client.create("/g", replication=1)
                holder = (await client.chunk_handle("/d/f", 0)).replicas[0]
                index = [c.chunk_addr(i) for i in range(c.chunkservers)].index(holder)
                c.procs[f"chunk{index + 1}"].signal(signal.SIGKILL)
                await asyncio.to_thread(c.wait_live, c.chunkservers - 1, 30.0)
                snap = asyncio.ensure_future(client.snapshot("/d", "/d-snap"))
                await asyncio.to_thread(wait_until, lambda: b"could not revoke lease" in log.read_bytes(), 30,
                                        "the snapshot to wait for the unreachable primary's lease")
                await client.write("/g", 0, first)  # leased, then moved into the tree being snapshotted
                g_lease = await client.chunk_handle("/g", 0)
                await client.rename("/g", "/d/g")
                await client.write("/d/f", MiB, first)  # a new chunk while the snapshot runs
                f_lease = await client.chunk_handle("/d/f", 1)
                await snap
                taken = await client.read("/d-snap/f", MiB), await client.read("/d-snap/g")
                await write_with_lease(client, g_lease, second)
                await write_with_lease(client, f_lease, second)
                now = await client.read("/d-snap/f", MiB), await client.read("/d-snap/g")
                assert now == taken, "the snapshot changed after it was taken"
                await client.write("/d/g", 0, second)
                assert await client.read("/d/g") == second
                assert await client.read("/d-snap/g") == first
            finally:
                await client.close()

        asyncio.run(scenario())


def test_gateway_reads_its_own_write_to_a_copied_chunk_beyond_the_first_eight(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, settings=FAST) as c:
        h = Http(c.gateway_url)
        data = random.randbytes(10 * MiB + 123)

        async def upload() -> None:  # by another client: the gateway holds no lease of the file
            async with await connect(c.master_addr) as other:
                await other.upload("/big/f.bin", data)

        asyncio.run(upload())
        assert h.request("GET", "/api/v1/files/big/f.bin")[2] == data  # every chunk's location cached
        status, body = h.json("POST", "/api/v1/snapshot", {"source": "/big", "target": "/big-snap"})
        assert status == 201, body
        patch = b"NEW!" * 2000
        offset = 9 * MiB + 100  # chunk 9: beyond the locations an open fetches
        assert h.json("POST", f"/api/v1/write?path=/big/f.bin&offset={offset}", patch)[0] == 200
        expected = data[:offset] + patch + data[offset + len(patch):]
        assert h.request("GET", "/api/v1/files/big/f.bin")[2] == expected
        assert h.request("GET", "/api/v1/files/big-snap/f.bin")[2] == data

        elsewhere = 8 * MiB + 7  # chunk 8, its location cached by the gateway, copied by another client

        async def write_elsewhere() -> None:
            async with await connect(c.master_addr) as other:
                await other.write("/big/f.bin", elsewhere, patch)

        asyncio.run(write_elsewhere())
        expected = expected[:elsewhere] + patch + expected[elsewhere + len(patch):]
        assert h.request("GET", "/api/v1/files/big/f.bin")[2] == expected
        assert h.request("GET", "/api/v1/files/big-snap/f.bin")[2] == data
        h.close()
