"""The master's chunk authority on its own (a real SQLite store, no chunkservers): its keyed
locks are forgotten once idle, whatever path took them (allocation, snapshot, lease revocation),
and the service routes every master message to a handler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hercules_core import messages as m
from hercules_core.config import Config
from hercules_core.errors import Unavailable
from hercules_core.master.maintenance import Maintenance
from hercules_core.master.service import MasterService
from hercules_core.plugins import make_plugin_manager
from hercules_core.plugins.types import MetadataContext
from hercules_core.assembly import frame_limits
from hercules_core.rpc import ConnectionPool


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[MasterService]:
    plugins = make_plugin_manager()
    config = Config()
    pool = ConnectionPool(plugins.transport(config.transport), frame_limits(config))
    try:
        async with plugins.metadata_store("sqlite").open(MetadataContext(tmp_path, {})) as store:
            yield MasterService(config, store, plugins.placement(config.placement).create({}), pool)
    finally:
        await pool.close()


async def test_allocation_forgets_its_locks(service: MasterService) -> None:
    authority = service.authority
    await service.authority.store.mkdir("/d")
    info = await authority.store.create("/d/f", 3, first_chunk=True)
    results = await asyncio.gather(*(authority.allocate(info.file_id, i % 2) for i in range(4)),
                                   return_exceptions=True)
    assert all(isinstance(r, Unavailable) for r in results), results  # no chunkserver registered yet
    assert len(authority.locks) == 0


async def test_snapshot_and_revoke_forget_their_locks(service: MasterService) -> None:
    authority = service.authority
    await authority.store.mkdir("/d")
    info = await authority.store.create("/d/f", 3, first_chunk=True)
    handles = await authority.store.handles_under("/d")
    assert handles
    copied = await service.namespace.take_snapshot("/d", "/e")
    assert copied.path == "/e"
    await asyncio.gather(*(authority.revoke(h) for h in handles))
    assert len(authority.locks) == 0
    with pytest.raises(Unavailable):  # the snapshot's freeze and source are released too: only
        await authority.allocate(info.file_id, 1)  # the registration window refuses now
    assert len(authority.locks) == 0


async def test_every_master_message_has_a_handler(service: MasterService) -> None:
    routed = set(service.dispatcher._handlers)  # noqa: SLF001 - the routing table is the subject
    expected = {m.Ping, m.Mkdir, m.Create, m.Stat, m.ListDir, m.Rename, m.BeginUpload, m.PublishUpload,
                m.AbortUpload, m.Delete, m.Undelete, m.ListTrash, m.PurgeTrash, m.Snapshot, m.GetChunk, m.Locate,
                m.LastChunk, m.FindChunk, m.ExtendSize, m.ReportBadReplica, m.ClusterStatus, m.Register,
                m.Heartbeat, m.CheckLease, m.Compose, m.PublishPacked, m.OpenPack, m.CompactPacks}
    assert routed == expected
    Maintenance(service.authority)  # background work is built on the authority alone
