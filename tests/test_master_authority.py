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
                m.Heartbeat, m.CheckLease, m.Compose, m.PublishPacked, m.PublishPackedBatch, m.OpenPack,
                m.CompactPacks, m.WatchEntries}
    assert routed == expected
    Maintenance(service.authority)  # background work is built on the authority alone


async def _a_chunk_on(service: MasterService, servers: list[str], version: int) -> int:
    """A chunk recorded at ``version`` with live replicas on ``servers`` (and a third server known)."""
    store, cluster = service.authority.store, service.authority.cluster
    await store.mkdir("/race")
    info = await store.create("/race/f", 3, first_chunk=True)
    [handle] = await store.handles_under("/race")
    await store.set_version(handle, version)
    for n, server_id in enumerate(["a", "b", "c"]):
        cluster.join(server_id, f"127.0.0.1:{9001 + n}", 1 << 40, 0, 0)
    for server_id in servers:
        cluster.add_location(handle, server_id)
    assert info.file_id
    return handle


@pytest.mark.parametrize("full", [False, True], ids=["new-replica report", "full report"])
async def test_a_report_read_before_a_version_bump_lists_no_stale_replica(
        service: MasterService, monkeypatch: pytest.MonkeyPatch, full: bool) -> None:
    """A heartbeat checks reported versions against the store (an await); a bump of that chunk
    finishing meanwhile asked only the replicas listed then. The reported replica, at the version
    read before the bump, must not be listed afterwards as current: every read of it would fail
    ``stale_version`` and no later heartbeat would correct it."""
    authority, cluster = service.authority, service.authority.cluster
    handle = await _a_chunk_on(service, ["a", "b"], 7)
    asked: list[str] = []

    async def chunkserver_call(address: str, msg: object, timeout: float = 10.0) -> object:
        asked.append(address)
        return m.Ok()

    monkeypatch.setattr(authority, "call", chunkserver_call)
    real_versions = authority.store.versions
    read, go_on = asyncio.Event(), asyncio.Event()

    async def slow_versions(handles: list[int]) -> dict[int, int]:
        found = await real_versions(handles)  # read before the bump ...
        read.set()
        await go_on.wait()  # ... answered after it
        return found

    monkeypatch.setattr(authority.store, "versions", slow_versions)
    report = [m.ChunkReport(handle, 7, 100)]
    checking = asyncio.ensure_future(service.reports._accept_full_report("c", report, stale_too=False) if full
                                     else service.reports._accept_new_replicas("c", report))
    await read.wait()
    monkeypatch.setattr(authority.store, "versions", real_versions)
    async with authority.locks.hold(handle):
        version, took = await authority.bump_version(handle)
    assert (version, sorted(took)) == (8, ["a", "b"])
    go_on.set()
    await checking
    assert sorted(cluster.locations[handle]) == ["a", "b"], "a replica at version 7 is listed at version 8"
    assert sorted(asked) == ["127.0.0.1:9001", "127.0.0.1:9002"]


async def test_a_report_checked_without_a_concurrent_bump_still_lists_its_replica(service: MasterService) -> None:
    """The other side of the check above: with no version change meanwhile, a reported current
    replica is listed (by the new-replica report and by a full report alike)."""
    cluster = service.authority.cluster
    handle = await _a_chunk_on(service, ["a"], 7)
    await service.reports._accept_new_replicas("b", [m.ChunkReport(handle, 7, 100)])
    await service.reports._accept_full_report("c", [m.ChunkReport(handle, 7, 100)], stale_too=False)
    assert sorted(cluster.locations[handle]) == ["a", "b", "c"]
    assert not cluster.versions._changed and not cluster.versions._readers  # noqa: SLF001 - nothing kept


async def test_a_replica_dropped_as_corrupt_is_not_listed_again_by_its_creation_report(
        service: MasterService) -> None:
    """A chunk's new replicas are reported in the next heartbeat; one found corrupt (and dropped)
    before that heartbeat must not come back through it."""
    cluster = service.authority.cluster
    handle = await _a_chunk_on(service, ["a", "b", "c"], 7)
    cluster.discard_replica(handle, "c")  # as ``drop_corrupt`` does
    await service.reports._accept_new_replicas("c", [m.ChunkReport(handle, 7, 0)])
    assert sorted(cluster.locations[handle]) == ["a", "b"]
    cluster.take_deletions("c")  # sent in a heartbeat reply, not yet confirmed removed
    await service.reports._accept_new_replicas("c", [m.ChunkReport(handle, 7, 0)])
    assert sorted(cluster.locations[handle]) == ["a", "b"]
