"""The master's request handlers: namespace, allocation, leases and chunkserver reports."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from hercules_core import messages as m
from hercules_core.config import Config
from hercules_core.errors import InvalidArgument, NoSpace, NotFound, TooFewChunkservers, Unavailable
from hercules_core.master.cluster import Chunkserver, Cluster, Lease
from hercules_core.master.store import ChunkRef, MetadataStore
from hercules_core.paths import normalize
from hercules_core.plugins.types import PlacementPolicy
from hercules_core.rpc import CallContext, ConnectionPool, Dispatcher

log = logging.getLogger(__name__)
MAX_REPLICATION = 16


class MasterService:
    def __init__(self, config: Config, store: MetadataStore, placement: PlacementPolicy,
                 pool: ConnectionPool) -> None:
        self.config = config
        self.store = store
        self.placement = placement
        self.pool = pool
        self.cluster = Cluster(dead_after=config.dead_after)
        self.dispatcher = Dispatcher("master")
        self._chunk_locks: dict[object, asyncio.Lock] = {}
        self._register_handlers()

    # -- helpers ----------------------------------------------------------------------------

    def _lock(self, key: object) -> asyncio.Lock:
        lock = self._chunk_locks.get(key)
        if lock is None:
            lock = self._chunk_locks[key] = asyncio.Lock()
        return lock

    def _location(self, ref: ChunkRef, lease: Lease | None = None) -> m.ChunkLocation:
        replicas = [s.address for s in self.cluster.live_replicas(ref.handle)]
        primary, expires = "", 0.0
        if lease is not None and self.cluster.alive(lease.primary):
            primary = self.cluster.servers[lease.primary].address
            expires = time.time() + (lease.expires - time.monotonic())
            replicas.sort(key=lambda a: a != primary)
        return m.ChunkLocation(ref.handle, ref.index, ref.version, replicas, primary, expires)

    async def _call(self, address: str, msg: Any) -> Any:
        reply, _ = await self.pool.call(address, msg, timeout=10.0)
        return reply

    def _replication(self, asked: int | None) -> int:
        if asked is None or asked == 0:
            return self.config.replication
        if not 1 <= asked <= MAX_REPLICATION:
            raise InvalidArgument(f"replication must be between 1 and {MAX_REPLICATION}, not {asked}")
        return asked

    # -- allocation and leases ---------------------------------------------------------------

    async def _allocate(self, file_id: int, index: int) -> tuple[ChunkRef, Lease]:
        async with self._lock(("alloc", file_id, index)):
            ref = await self.store.chunk(file_id, index)
            if ref is None:
                return await self._allocate_new(file_id, index)
        lease = await self._ensure_lease(ref)
        return ChunkRef(ref.handle, ref.index, lease.version), lease

    async def _allocate_new(self, file_id: int, index: int) -> tuple[ChunkRef, Lease]:
        info = await self.store.stat_id(file_id)
        live = [s.view() for s in self.cluster.live_servers()]
        if len(live) < info.replication:
            raise TooFewChunkservers(f"{info.replication} replicas asked but only {len(live)} live chunkservers")
        chosen = self.placement.choose(live, info.replication)
        if len(chosen) < info.replication:
            raise NoSpace(f"only {len(chosen)} chunkservers have free space for {info.replication} replicas")
        ref = await self.store.add_chunk(file_id, index)
        async with self._lock(ref.handle):  # lease requests for the new handle wait for its creation
            results = await asyncio.gather(*(
                self._call(str(s.address), m.CreateChunk(ref.handle, ref.version)) for s in chosen),
                return_exceptions=True)
            for server, result in zip(chosen, results):
                if isinstance(result, BaseException):
                    log.warning("create chunk %d on %s failed: %s", ref.handle, server.address, result)
                else:
                    self.cluster.add_location(ref.handle, server.server_id)
            if isinstance(results[0], BaseException):
                raise Unavailable(f"chunkserver {chosen[0].address} did not create chunk {ref.handle}: {results[0]}")
            await self._call(str(chosen[0].address), m.SetVersion(ref.handle, ref.version, self.config.lease_seconds))
            lease = Lease(chosen[0].server_id, ref.version, time.monotonic() + self.config.lease_seconds)
            self.cluster.leases[ref.handle] = lease
        return ref, lease

    async def _ensure_lease(self, ref: ChunkRef) -> Lease:
        """The current lease, or a new one with a bumped version on the live replicas."""
        async with self._lock(ref.handle):
            now = time.monotonic()
            lease = self.cluster.leases.get(ref.handle)
            if lease is not None and lease.live(now) and self.cluster.alive(lease.primary, now):
                return lease
            if lease is not None and lease.live(now):
                # GFS: never two primaries; the old one may still act until its lease runs out.
                raise Unavailable(f"chunk {ref.handle}: primary is unreachable; lease expires in "
                                  f"{lease.expires - now:.0f}s")
            replicas = self.cluster.live_replicas(ref.handle)
            if not replicas:
                raise Unavailable(f"chunk {ref.handle} has no live replica")
            current = await self.store.versions([ref.handle])
            version = current.get(ref.handle, ref.version) + 1
            await self.store.set_version(ref.handle, version)
            results = await asyncio.gather(*(
                self._call(s.address, m.SetVersion(ref.handle, version)) for s in replicas),
                return_exceptions=True)
            updated = []
            for server, result in zip(replicas, results):
                if isinstance(result, BaseException):
                    log.warning("chunk %d: replica on %s missed version %d: %s", ref.handle,
                                server.address, version, result)
                    self.cluster.drop_location(ref.handle, server.server_id)
                else:
                    updated.append(server)
            if not updated:
                raise Unavailable(f"chunk {ref.handle}: no replica accepted version {version}")
            primary = updated[0]
            await self._call(primary.address, m.SetVersion(ref.handle, version, self.config.lease_seconds))
            lease = Lease(primary.server_id, version, time.monotonic() + self.config.lease_seconds)
            self.cluster.leases[ref.handle] = lease
            return lease

    # -- handlers ------------------------------------------------------------------------------

    def _register_handlers(self) -> None:  # noqa: C901 - a flat table of small handlers
        on = self.dispatcher.on
        store = self.store

        @on(m.Ping)
        async def ping(msg: m.Ping, data: memoryview, ctx: CallContext) -> m.Pong:
            return m.Pong("master", {"chunkservers_alive": len(self.cluster.live_servers()),
                                     "chunk_size": self.config.chunk_size,
                                     "replication": self.config.replication})

        @on(m.Mkdir)
        async def mkdir(msg: m.Mkdir, data: memoryview, ctx: CallContext) -> m.FileInfo:
            return await store.mkdir(normalize(msg.path))

        @on(m.Create)
        async def create(msg: m.Create, data: memoryview, ctx: CallContext) -> m.FileInfo:
            return await store.create(normalize(msg.path), self._replication(msg.replication), msg.exclusive)

        @on(m.Stat)
        async def stat(msg: m.Stat, data: memoryview, ctx: CallContext) -> m.FileInfo:
            return await store.stat(normalize(msg.path))

        @on(m.ListDir)
        async def list_dir(msg: m.ListDir, data: memoryview, ctx: CallContext) -> m.Listing:
            if msg.limit < 0:
                raise InvalidArgument("limit must not be negative")
            entries, cursor = await store.list(normalize(msg.path), msg.recursive, msg.limit, msg.cursor)
            return m.Listing(entries, cursor)

        @on(m.Rename)
        async def rename(msg: m.Rename, data: memoryview, ctx: CallContext) -> m.Ok:
            freed = await store.rename(normalize(msg.source, what="source"),
                                       normalize(msg.target, what="target"), msg.overwrite)
            self.cluster.forget(freed.handles)
            return m.Ok()

        @on(m.Delete)
        async def delete(msg: m.Delete, data: memoryview, ctx: CallContext) -> m.Ok:
            freed = await store.delete(normalize(msg.path), msg.recursive)
            self.cluster.forget(freed.handles)
            return m.Ok()

        @on(m.GetChunk)
        async def get_chunk(msg: m.GetChunk, data: memoryview, ctx: CallContext) -> m.ChunkLocation:
            if msg.index < 0:
                raise InvalidArgument("chunk index must not be negative")
            ref = await store.chunk(msg.file_id, msg.index)
            if ref is None:
                if not msg.for_write:
                    return m.ChunkLocation(0, msg.index, 0, [], exists=False)
                ref, lease = await self._allocate(msg.file_id, msg.index)
                return self._location(ref, lease)
            if msg.for_write:
                lease = await self._ensure_lease(ref)
                return self._location(ChunkRef(ref.handle, ref.index, lease.version), lease)
            return self._location(ref, self.cluster.leases.get(ref.handle))

        @on(m.LastChunk)
        async def last_chunk(msg: m.LastChunk, data: memoryview, ctx: CallContext) -> m.ChunkLocation:
            ref = await store.last_chunk(msg.file_id)
            if ref is None:
                ref, lease = await self._allocate(msg.file_id, 0)
            else:
                lease = await self._ensure_lease(ref)
                ref = ChunkRef(ref.handle, ref.index, lease.version)
            return self._location(ref, lease)

        @on(m.FindChunk)
        async def find_chunk(msg: m.FindChunk, data: memoryview, ctx: CallContext) -> m.ChunkLocation:
            versions = await store.versions([msg.handle])
            if msg.handle not in versions:
                raise NotFound(f"chunk handle {msg.handle} does not exist")
            lease = self.cluster.leases.get(msg.handle)
            live = lease if lease is not None and lease.live(time.monotonic()) else None
            return self._location(ChunkRef(msg.handle, -1, versions[msg.handle]), live)

        @on(m.ExtendSize)
        async def extend(msg: m.ExtendSize, data: memoryview, ctx: CallContext) -> m.Ok:
            if msg.size < 0:
                raise InvalidArgument("size must not be negative")
            await store.extend_size(msg.file_id, msg.size)
            return m.Ok()

        @on(m.ReportBadReplica)
        async def bad_replica(msg: m.ReportBadReplica, data: memoryview, ctx: CallContext) -> m.Ok:
            server = self.cluster.by_address(msg.address)
            if server is not None:
                log.warning("chunk %d on %s reported bad: %s", msg.handle, msg.address, msg.reason)
                self.cluster.drop_location(msg.handle, server.server_id)
                self.cluster.pending_delete.setdefault(server.server_id, set()).add(msg.handle)
            return m.Ok()

        @on(m.ClusterStatus)
        async def cluster_status(msg: m.ClusterStatus, data: memoryview, ctx: CallContext) -> m.ClusterInfo:
            return await self.cluster_info()

        @on(m.Register)
        async def register(msg: m.Register, data: memoryview, ctx: CallContext) -> m.Registered:
            previous = self.cluster.servers.get(msg.server_id)
            if previous is not None:
                for handle in list(previous.held):
                    self.cluster.drop_location(handle, msg.server_id)
            self.cluster.servers[msg.server_id] = Chunkserver(
                msg.server_id, msg.address, msg.capacity_bytes, msg.used_bytes, len(msg.chunks))
            delete = await self._accept_reports(msg.server_id, msg.chunks)
            log.info("chunkserver %s registered at %s with %d chunks", msg.server_id, msg.address, len(msg.chunks))
            return m.Registered(delete + self.cluster.take_deletions(msg.server_id), self.config.heartbeat_interval)

        @on(m.Heartbeat)
        async def heartbeat(msg: m.Heartbeat, data: memoryview, ctx: CallContext) -> m.HeartbeatReply:
            server = self.cluster.servers.get(msg.server_id)
            if server is None:
                return m.HeartbeatReply(known=False)
            server.last_heartbeat = time.monotonic()
            server.capacity_bytes, server.used_bytes = msg.capacity_bytes, msg.used_bytes
            server.chunk_count = msg.chunk_count
            for handle in msg.removed:
                self.cluster.drop_location(handle, msg.server_id)
            await self._accept_new_replicas(msg.server_id, msg.added)
            return m.HeartbeatReply(True, self.cluster.take_deletions(msg.server_id),
                                    self._extend_leases(msg.server_id, msg.lease_extensions))

    async def _accept_reports(self, server_id: str, reports: list[m.ChunkReport]) -> list[int]:
        """Record replicas at the current version; return the ones to delete (orphans, stale)."""
        known = await self.store.versions([r.handle for r in reports])
        delete: list[int] = []
        for report in reports:
            version = known.get(report.handle)
            if version is None or report.version < version:
                delete.append(report.handle)
                continue
            if report.version > version:  # the master failed after granting a lease: adopt it
                await self.store.set_version(report.handle, report.version)
            self.cluster.add_location(report.handle, server_id)
        return delete

    async def _accept_new_replicas(self, server_id: str, reports: list[m.ChunkReport]) -> None:
        """Chunks created since the last heartbeat. Their version may have moved on while the
        report was in flight, so an older one is not proof of staleness here (registration's
        full report is where stale replicas are found)."""
        if not reports:
            return
        known = await self.store.versions([r.handle for r in reports])
        for report in reports:
            if known.get(report.handle) == report.version:
                self.cluster.add_location(report.handle, server_id)

    def _extend_leases(self, server_id: str, handles: list[int]) -> list[m.LeaseExtension]:
        now = time.monotonic()
        extended = []
        for handle in handles:
            lease = self.cluster.leases.get(handle)
            if lease is not None and lease.primary == server_id and lease.live(now):
                lease.expires = now + self.config.lease_seconds
                extended.append(m.LeaseExtension(handle, lease.version, self.config.lease_seconds))
        return extended

    async def cluster_info(self) -> m.ClusterInfo:
        now = time.monotonic()
        rows = [m.ChunkserverStatus(s.server_id, s.address, "alive" if self.cluster.alive(s.server_id, now)
                                    else "dead", s.capacity_bytes, s.used_bytes, s.chunk_count,
                                    round(now - s.last_heartbeat, 3))
                for s in sorted(self.cluster.servers.values(), key=lambda s: s.address)]
        pending = sum(len(v) for v in self.cluster.pending_delete.values())
        return m.ClusterInfo(rows, self.config.chunk_size, self.config.replication, 0, pending)
