"""A chunk with more live replicas than its factor is trimmed back to it (a moved replica whose
source came back after the master restarted, a server returning after its chunks were copied
elsewhere): a nemesis run ended with four replicas of a chunk for good."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from hercules_core import messages as m
from hercules_core.client import connect
from hercules_core.testing.cluster import LocalCluster, free_port
from tests.helpers import FAST, file_handles

DATA = bytes(range(256)) * 1024


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("trim"), settings=FAST) as c:
        yield c


async def test_a_fourth_live_replica_is_dropped(cluster: LocalCluster) -> None:
    async with await connect(cluster.master_addr) as client:
        await client.create("/four.bin")
        await client.write("/four.bin", 0, DATA)
        [handle] = await file_handles(client, "/four.bin")
        loc, _ = await client.pool.call(client.master, m.FindChunk(handle))
        assert len(loc.replicas) == 3
        fourth = f"127.0.0.1:{free_port()}"  # a server that holds the chunk at its current version
        used = 1 << 40  # the fullest server: the one trimmed
        await client.pool.call(client.master, m.Register("fourth", fourth, 1 << 41, used,
                                                         [m.ChunkReport(handle, loc.version)]))

        async def beat() -> None:
            while True:
                await client.pool.call(client.master, m.Heartbeat("fourth", 1 << 41, used, 1))
                await asyncio.sleep(0.2)

        beating = asyncio.ensure_future(beat())
        try:
            seen = []  # trimmed once the write's lease has ended (a lease's writes name their replicas)
            for _ in range(10 * (int(float(FAST["HERCULES_LEASE_SECONDS"])) + 15)):
                replicas = (await client.pool.call(client.master, m.FindChunk(handle)))[0].replicas
                seen.append(len(replicas))
                if len(replicas) == 3 and 4 in seen:
                    break
                await asyncio.sleep(0.1)
            assert 4 in seen, f"the fourth replica was never listed: {seen}"
            assert len(replicas) == 3, f"never trimmed back to 3: {seen[-5:]}"
            assert fourth not in replicas, "the fullest server's replica is the one dropped"
        finally:
            beating.cancel()
        assert await client.read("/four.bin") == DATA
