"""Chunk creation on a real chunkserver: the primary's lease comes with ``CreateChunk``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hercules_core import messages as m
from hercules_core.client import connect
from hercules_core.errors import NotPrimary, StaleVersion
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST

HANDLE = 1 << 50  # far above anything the master hands out in this test


async def write(client, address: str, handle: int, version: int, data: bytes) -> m.Written:  # noqa: ANN001
    data_id = f"{handle}-{version}-{len(data)}"
    await client.pool.call(address, m.PushData(data_id, []), data)
    reply, _ = await client.pool.call(address, m.WriteChunk(handle, version, 0, data_id, []))
    return reply


async def lease_with_creation(master: str, address: str) -> None:
    client = await connect(master)
    try:
        await client.pool.call(address, m.CreateChunk(HANDLE, 1, 30.0))  # created as primary
        assert await write(client, address, HANDLE, 1, b"leased") == m.Written(0, 6)

        await client.pool.call(address, m.CreateChunk(HANDLE + 1, 1))  # no lease: a secondary
        with pytest.raises(NotPrimary):
            await write(client, address, HANDLE + 1, 1, b"refused")
        await client.pool.call(address, m.SetVersion(HANDLE + 1, 1, 30.0))  # the lease, granted later
        assert await write(client, address, HANDLE + 1, 1, b"later") == m.Written(0, 5)

        # Creating an existing chunk again moves it to the new version and ends the old lease.
        await client.pool.call(address, m.CreateChunk(HANDLE, 2))
        with pytest.raises(StaleVersion):
            await write(client, address, HANDLE, 1, b"old version")
        with pytest.raises(NotPrimary):
            await write(client, address, HANDLE, 2, b"no lease")
        await client.pool.call(address, m.CreateChunk(HANDLE, 3, 30.0))
        assert await write(client, address, HANDLE, 3, b"again") == m.Written(0, 5)
        _, data = await client.pool.call(address, m.ReadChunk(HANDLE, 3, 0, 100))
        assert bytes(data) == b"againd"  # the chunk kept its bytes; the write replaced the first five
    finally:
        await client.close()


def test_create_chunk_carries_the_primary_lease(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, chunkservers=1, settings={**FAST, "HERCULES_REPLICATION": "1"}) as c:
        asyncio.run(lease_with_creation(c.master_addr, c.chunk_addr(0)))
