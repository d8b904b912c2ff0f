"""A corrupt block under a mutation: the replica that finds it reports itself, the master drops it,
and the writes go on on the healthy replicas until the chunk is back at its factor."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from hercules_core.client import connect
from hercules_core.errors import HerculesError
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST, Http, flip_byte, replica_contents, wait_until

BLOCK = 64 << 10
SIZE = 100_000  # block 1 is the chunk's last, partial block: an append extends it
OWN_CHUNK = {**FAST, "HERCULES_PACK_THRESHOLD": "0"}  # the file's own chunk is corrupted: not a record in a pack


def data_file(cluster: LocalCluster, replica: str, handle: int) -> Path:
    """The data file of ``handle`` on the chunkserver at ``replica`` (the fs store's layout)."""
    index = next(i for i in range(cluster.chunkservers) if cluster.chunk_addr(i) == replica)
    return cluster.chunk_dir(index) / "store" / "chunks" / f"{handle % 256:02x}" / f"{handle:016x}.chunk"


def good_everywhere(cluster: LocalCluster, handle: int, check) -> bool:  # noqa: ANN001
    """Whether ``handle`` has 3 live replicas, every one readable (CRCs pass) and identical."""
    async def contents() -> dict[str, bytes] | None:
        client = await connect(cluster.master_addr)
        try:
            return await replica_contents(client, handle)
        except HerculesError:
            return None
        finally:
            await client.close()

    found = asyncio.run(contents())
    return bool(found) and len(found) == 3 and len(set(found.values())) == 1 and check(next(iter(found.values())))


@pytest.mark.parametrize("victim", ["primary", "secondary"])
def test_write_and_append_into_a_corrupt_block_go_on_and_the_replica_is_replaced(tmp_path: Path,
                                                                                  victim: str) -> None:
    with LocalCluster(tmp_path, settings=OWN_CHUNK) as c:
        h = Http(c.gateway_url)
        original = random.randbytes(SIZE)
        assert h.json("PUT", "/api/v1/files/f.bin", original)[0] == 201
        status, loc = h.json("GET", "/api/v1/chunk/handle?path=/f.bin&index=0")
        assert status == 200, loc
        handle = loc["handle"]
        primary = loc["primary"] or loc["replicas"][0]
        bad = primary if victim == "primary" else next(r for r in loc["replicas"] if r != primary)
        flip_byte(data_file(c, bad, handle), BLOCK + 1000)  # bit rot in block 1

        patch = b"W" * 500
        status, body = h.json("POST", f"/api/v1/write?path=/f.bin&offset={BLOCK + 2000}", patch)
        assert status == 200 and body["written"] == len(patch), (status, body)
        record = b"R" * 3000
        status, body = h.json("PATCH", "/api/v1/append?path=/f.bin", record)
        assert status == 200 and body["length"] == len(record), (status, body)
        at = body["offset"]

        expected = bytearray(original)
        expected[BLOCK + 2000: BLOCK + 2000 + len(patch)] = patch
        status, _, got = h.request("GET", "/api/v1/files/f.bin")
        assert status == 200 and got[:SIZE] == bytes(expected) and got[at: at + len(record)] == record

        def right(chunk: bytes) -> bool:
            return chunk[:SIZE] == bytes(expected) and chunk[at: at + len(record)] == record

        wait_until(lambda: good_everywhere(c, handle, right), 60, "the corrupt replica replaced by a good one")
        h.close()


def test_copy_on_write_from_a_corrupt_replica_reports_it_and_the_snapshot_is_repaired(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, settings=OWN_CHUNK) as c:
        h = Http(c.gateway_url)
        original = random.randbytes(SIZE)
        assert h.json("PUT", "/api/v1/files/f.bin", original)[0] == 201
        status, body = h.json("POST", "/api/v1/snapshot", {"source": "/f.bin", "target": "/snap.bin"})
        assert status == 201, body
        loc = h.json("GET", "/api/v1/chunk/handle?path=/snap.bin&index=0")[1]
        handle = loc["handle"]
        flip_byte(data_file(c, loc["replicas"][-1], handle), BLOCK + 1000)

        status, body = h.json("POST", "/api/v1/write?path=/f.bin&offset=0", b"new")
        assert status == 200, (status, body)  # the clone on the corrupt replica fails; the others copy
        assert h.request("GET", "/api/v1/files/f.bin")[2] == b"new" + original[3:]
        # The snapshot's chunk had a corrupt replica: found by the clone, reported, and replaced.
        wait_until(lambda: good_everywhere(c, handle, lambda chunk: chunk[:SIZE] == original), 60,
                   "the snapshot's corrupt replica replaced by a good one")
        assert h.request("GET", "/api/v1/files/snap.bin")[2] == original
        h.close()
