"""The master's request handlers: namespace, allocation, leases, snapshots and chunkserver reports.

Background work (failure detection, re-replication, rebalancing, trash collection) lives
in ``maintenance``; both share the per-chunk locks here so a chunk is never leased,
copied and moved at once.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

from hercules_core import messages as m
from hercules_core.config import Config
from hercules_core.errors import (
    AlreadyExists,
    InvalidArgument,
    IsADirectory,
    NoSpace,
    NotFound,
    TooFewChunkservers,
    Unavailable,
)
from hercules_core.master.cluster import Cluster, Lease
from hercules_core.master.phi import PhiParams
from hercules_core.master.store import ChunkRef, MetadataStore
from hercules_core.paths import UPLOADS, normalize, parent_and_name
from hercules_core.plugins.types import PlacementPolicy
from hercules_core.rpc import CallContext, ConnectionPool, Dispatcher

log = logging.getLogger(__name__)
MAX_REPLICATION = 16
MAX_LOCATE = 64  # chunk locations one Locate may ask for
UPLOAD_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class MasterService:
    def __init__(self, config: Config, store: MetadataStore, placement: PlacementPolicy,
                 pool: ConnectionPool) -> None:
        self.config = config
        self.store = store
        self.placement = placement
        self.pool = pool
        params = PhiParams(threshold=config.phi_threshold, acceptable_pause=config.dead_after)
        self.cluster = Cluster(params, config.heartbeat_interval)
        self.dispatcher = Dispatcher("master")
        self._locks: dict[object, asyncio.Lock] = {}
        self._frozen: set[int] = set()  # chunks being snapshotted: no new leases until done
        # A lease granted before a restart may still be live somewhere: wait it out (GFS).
        self.grace_until = time.monotonic() + config.lease_seconds
        self.registering_until = time.monotonic() + 3 * config.heartbeat_interval + 1.0  # reports arrive
        self._register_handlers()

    # -- helpers ----------------------------------------------------------------------------

    def lock(self, key: object) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _location(self, ref: ChunkRef, lease: Lease | None = None) -> m.ChunkLocation:
        replicas = [s.address for s in self.cluster.live_replicas(ref.handle)]
        primary, expires = "", 0.0
        if lease is not None and self.cluster.alive(lease.primary):
            primary = self.cluster.servers[lease.primary].address
            expires = time.time() + (lease.expires - time.monotonic())
            replicas.sort(key=lambda a: a != primary)
        return m.ChunkLocation(ref.handle, ref.index, ref.version, replicas, primary, expires)

    def _read_location(self, ref: ChunkRef | None, index: int) -> m.ChunkLocation:
        """Where to read chunk ``index``; a chunk never created (absent, or version 0) reads as zeros."""
        if ref is None or ref.version == 0:
            return m.ChunkLocation(ref.handle if ref else 0, index, 0, [], exists=False)
        return self._location(ref, self.cluster.leases.get(ref.handle))

    async def call(self, address: str, msg: Any, timeout: float = 10.0) -> Any:
        reply, _ = await self.pool.call(address, msg, timeout=timeout)
        return reply

    def _replication(self, asked: int | None) -> int:
        if asked is None or asked == 0:
            return self.config.replication
        if not 1 <= asked <= MAX_REPLICATION:
            raise InvalidArgument(f"replication must be between 1 and {MAX_REPLICATION}, not {asked}")
        return asked

    async def bump_version(self, handle: int, lease_to: str | None = None) -> tuple[int, list[str]]:
        """Give the live replicas a new version (ending any lease); return it and who took it.

        Replicas that miss the bump are dropped: they are stale from now on. Call with the
        chunk's lock held.
        """
        replicas = self.cluster.live_replicas(handle)
        if not replicas:
            raise Unavailable(f"chunk {handle} has no live replica")
        version = (await self.store.versions([handle])).get(handle)
        if version is None:
            raise NotFound(f"chunk {handle} no longer exists")
        version += 1
        await self.store.set_version(handle, version)
        self.cluster.leases.pop(handle, None)
        lease = self.config.lease_seconds
        results = await asyncio.gather(*(
            self.call(s.address, m.SetVersion(handle, version, lease if s.server_id == lease_to else 0.0))
            for s in replicas), return_exceptions=True)
        took = []
        for server, result in zip(replicas, results):
            if isinstance(result, BaseException):
                log.warning("chunk %d: replica on %s missed version %d: %s", handle, server.address, version, result)
                self.cluster.discard_replica(handle, server.server_id)
            else:
                took.append(server.server_id)
        if not took:
            raise Unavailable(f"chunk {handle}: no replica accepted version {version}")
        return version, took

    # -- allocation, leases, copy-on-write ----------------------------------------------------

    async def _allocate(self, file_id: int, index: int) -> tuple[ChunkRef, Lease]:
        async with self.lock(("alloc", file_id, index)):
            ref = await self.store.chunk(file_id, index)
            if ref is None or ref.version == 0:
                return await self._allocate_new(file_id, index, ref)
        return await self._writable(file_id, ref)

    async def _allocate_new(self, file_id: int, index: int, ref: ChunkRef | None) -> tuple[ChunkRef, Lease]:
        """Create a chunk on replicas chosen by the placement policy, then record it as version 1
        (a chunk still at version 0 was never created anywhere: a crash interrupted it)."""
        info = await self.store.stat_id(file_id)
        live = [s.view() for s in self.cluster.live_servers()]
        if len(live) < info.replication:
            if time.monotonic() < self.registering_until:  # chunkservers are still registering: retry soon
                raise Unavailable(f"master starting: {len(live)} chunkservers registered so far")
            raise TooFewChunkservers(f"{info.replication} replicas asked but only {len(live)} live chunkservers")
        chosen = self.placement.choose(live, info.replication)
        if len(chosen) < info.replication:
            raise NoSpace(f"only {len(chosen)} chunkservers have free space for {info.replication} replicas")
        # A chunk whose row already exists (made with its file by BeginUpload, or by an attempt a
        # crash interrupted) gets a version no earlier attempt can have used, so an empty copy an
        # interrupted attempt left behind is stale, never mistaken for the live replica.
        version = 1 if ref is None else int(time.time())
        ref = ref or await self.store.add_chunk(file_id, index)
        ref = ChunkRef(ref.handle, ref.index, version, ref.refs)
        lease_seconds = self.config.lease_seconds
        async with self.lock(ref.handle):  # lease requests for the new handle wait for its creation
            # The first replica takes the lease with the chunk. Should the version below never be
            # recorded, that lease is at a version no client learns of, and the retry moves on.
            results = await asyncio.gather(*(
                self.call(str(s.address), m.CreateChunk(ref.handle, ref.version, lease_seconds if n == 0 else 0.0))
                for n, s in enumerate(chosen)), return_exceptions=True)
            created = set()
            for server, result in zip(chosen, results):
                if isinstance(result, BaseException):
                    log.warning("create chunk %d on %s failed: %s", ref.handle, server.address, result)
                else:
                    self.cluster.add_location(ref.handle, server.server_id)
                    created.add(server.server_id)
            if len(created) < len(chosen):  # born under-replicated: re-replication takes it from here
                self.cluster.suspect.add(ref.handle)
            if isinstance(results[0], BaseException):
                raise Unavailable(f"chunkserver {chosen[0].address} did not create chunk {ref.handle}: {results[0]}")
            await self.store.set_version(ref.handle, ref.version)
            lease = Lease(chosen[0].server_id, ref.version, time.monotonic() + lease_seconds, frozenset(created))
            self.cluster.leases[ref.handle] = lease
        return ref, lease

    async def _writable(self, file_id: int, ref: ChunkRef) -> tuple[ChunkRef, Lease]:
        if ref.version == 0:
            return await self._allocate(file_id, ref.index)
        if ref.refs > 1:
            ref = await self._copy_on_write(file_id, ref)
        lease = await self._ensure_lease(ref)
        return ChunkRef(ref.handle, ref.index, lease.version), lease

    async def _ensure_lease(self, ref: ChunkRef) -> Lease:
        """The current lease, or a new one with a bumped version on the live replicas."""
        if ref.handle in self._frozen:
            raise Unavailable(f"chunk {ref.handle} is being snapshotted; retry")
        async with self.lock(ref.handle):
            now = time.monotonic()
            lease = self.cluster.leases.get(ref.handle)
            live = {s.server_id for s in self.cluster.live_replicas(ref.handle)}
            prefer = None
            if lease is not None and lease.live(now) and self.cluster.alive(lease.primary, now):
                if lease.replicas <= live:
                    return lease
                prefer = lease.primary  # a replica dropped out: new version, same primary
            elif lease is not None and lease.live(now):
                # GFS: never two primaries; the old one may still act until its lease runs out.
                raise Unavailable(f"chunk {ref.handle}: primary is unreachable; its lease ends in "
                                  f"{lease.expires - now:.1f}s")
            elif lease is None and now < self.grace_until:
                raise Unavailable(f"master restarted: leases resume in {self.grace_until - now:.1f}s")
            replicas = self.cluster.live_replicas(ref.handle)
            if not replicas:
                raise Unavailable(f"chunk {ref.handle} has no live replica")
            primary = prefer or replicas[0].server_id
            version, took = await self.bump_version(ref.handle, lease_to=primary)
            if primary not in took:
                primary = took[0]
                await self.call(self.cluster.servers[primary].address,
                                m.SetVersion(ref.handle, version, self.config.lease_seconds))
            lease = Lease(primary, version, time.monotonic() + self.config.lease_seconds, frozenset(took))
            self.cluster.leases[ref.handle] = lease
            return lease

    async def _copy_on_write(self, file_id: int, ref: ChunkRef) -> ChunkRef:
        """First write to a chunk a snapshot shares: each replica copies it locally first."""
        async with self.lock(("cow", file_id, ref.index)):
            current = await self.store.chunk(file_id, ref.index)
            if current is None or current.refs <= 1:
                return current or ref
            async with self.lock(current.handle):
                replicas = self.cluster.live_replicas(current.handle)
                if not replicas:
                    raise Unavailable(f"chunk {current.handle} has no live replica to copy")
                handle = await self.store.new_handle(current.version)
                results = await asyncio.gather(*(
                    self.call(s.address, m.CloneChunk(current.handle, handle, current.version), timeout=60.0)
                    for s in replicas), return_exceptions=True)
                for server, result in zip(replicas, results):
                    if isinstance(result, BaseException):
                        log.warning("copy-on-write of chunk %d on %s failed: %s", current.handle,
                                    server.address, result)
                    else:
                        self.cluster.add_location(handle, server.server_id)
                if not self.cluster.locations.get(handle):
                    raise Unavailable(f"chunk {current.handle}: no replica could copy it for writing")
                freed = await self.store.repoint(file_id, current.index, current.handle, handle)
                self.cluster.forget(freed.handles)
                self.cluster.suspect.add(handle)
            return ChunkRef(handle, current.index, current.version, 1)

    async def _revoke(self, handle: int) -> None:
        """End a chunk's lease before a snapshot: ask the primary, or wait the lease out."""
        async with self.lock(handle):
            lease = self.cluster.leases.pop(handle, None)
            if lease is None or not lease.live(time.monotonic()):
                return
            server = self.cluster.servers.get(lease.primary)
            try:
                if server is None:
                    raise Unavailable("primary unknown")
                await self.call(server.address, m.RevokeLease(handle))
            except Exception as exc:  # noqa: BLE001 - any failure means: wait for expiry
                wait = lease.expires - time.monotonic()
                log.info("chunk %d: could not revoke lease (%s); waiting %.1fs", handle, exc, wait)
                await asyncio.sleep(max(0.0, wait))

    async def snapshot(self, source: str, target: str, request_id: str = "") -> m.FileInfo:
        try:
            handles = await self.store.handles_under(source)
        except NotFound:
            if not request_id:
                raise
            return await self.store.snapshot(source, target, request_id=request_id)  # a replay answers
        self._frozen.update(handles)
        try:
            await asyncio.gather(*(self._revoke(h) for h in handles))
            return await self.store.snapshot(source, target, request_id=request_id)
        finally:
            self._frozen.difference_update(handles)

    async def _begin_upload(self, path: str, replication: int | None, overwrite: bool,
                            request_id: str, first_chunk: bool) -> m.FileInfo:
        """Refuse a taken path before any data moves; create the hidden file the data goes into
        (named after the request id, so a retried request finds the same file), with its first
        chunk's handle in the same commit when data will follow."""
        try:
            existing = await self.store.stat(path)
        except NotFound:
            existing = None
        if existing is not None and existing.is_dir:
            raise IsADirectory(f"{path}: already exists and is a directory")
        if existing is not None and not overwrite:
            raise AlreadyExists(f"{path}: already exists")
        if request_id and not UPLOAD_NAME.fullmatch(request_id):
            raise InvalidArgument("an upload's request id must be 1-64 letters, digits, '-' or '_'")
        temp = f"{UPLOADS}/{request_id or uuid.uuid4().hex}"
        replication = self._replication(replication)
        try:
            return await self.store.create(temp, replication, request_id=request_id, first_chunk=first_chunk)
        except NotFound:  # no uploads directory yet (or it was removed)
            await self.store.mkdir(UPLOADS)
            return await self.store.create(temp, replication, request_id=request_id, first_chunk=first_chunk)

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
            return await store.create(normalize(msg.path), self._replication(msg.replication), msg.exclusive,
                                      request_id=msg.request_id)

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
                                       normalize(msg.target, what="target"), msg.overwrite, request_id=msg.request_id)
            self.cluster.forget(freed.handles)
            return m.Ok()

        @on(m.BeginUpload)
        async def begin_upload(msg: m.BeginUpload, data: memoryview, ctx: CallContext) -> m.UploadStarted:
            temp = await self._begin_upload(normalize(msg.path), msg.replication, msg.overwrite, msg.request_id,
                                            first_chunk=msg.size_hint > 0)
            if msg.size_hint <= 0:
                return m.UploadStarted(temp)
            ref, lease = await self._allocate(temp.file_id, 0)  # saves the first GetChunk round trip
            return m.UploadStarted(temp, self._location(ref, lease))

        @on(m.PublishUpload)
        async def publish(msg: m.PublishUpload, data: memoryview, ctx: CallContext) -> m.FileInfo:
            temp = normalize(msg.temp, what="temp")
            if parent_and_name(temp)[0] != UPLOADS:
                raise InvalidArgument(f"{temp} is not an upload in progress")
            if msg.size < 0:
                raise InvalidArgument("size must not be negative")
            info, freed = await store.publish(temp, normalize(msg.path), msg.size, msg.overwrite,
                                              request_id=msg.request_id)
            self.cluster.forget(freed.handles)
            return info

        @on(m.Delete)
        async def delete(msg: m.Delete, data: memoryview, ctx: CallContext) -> m.Ok:
            freed = await store.delete(normalize(msg.path), msg.recursive, request_id=msg.request_id)
            self.cluster.forget(freed.handles)
            return m.Ok()

        @on(m.Undelete)
        async def undelete(msg: m.Undelete, data: memoryview, ctx: CallContext) -> m.FileInfo:
            return await store.undelete(normalize(msg.path), request_id=msg.request_id)

        @on(m.ListTrash)
        async def list_trash(msg: m.ListTrash, data: memoryview, ctx: CallContext) -> m.TrashList:
            return m.TrashList([m.TrashEntry(path, at, at + self.config.trash_grace, info)
                                for path, at, info in await store.trash()])

        @on(m.Snapshot)
        async def snapshot(msg: m.Snapshot, data: memoryview, ctx: CallContext) -> m.FileInfo:
            return await self.snapshot(normalize(msg.source, what="source"), normalize(msg.target, what="target"),
                                       msg.request_id)

        @on(m.GetChunk)
        async def get_chunk(msg: m.GetChunk, data: memoryview, ctx: CallContext) -> m.ChunkLocation:
            if msg.index < 0:
                raise InvalidArgument("chunk index must not be negative")
            ref = await store.chunk(msg.file_id, msg.index)
            if ref is None:
                if not msg.for_write:
                    return self._read_location(None, msg.index)
                ref, lease = await self._allocate(msg.file_id, msg.index)
                return self._location(ref, lease)
            if msg.for_write:
                ref, lease = await self._writable(msg.file_id, ref)
                return self._location(ref, lease)
            return self._read_location(ref, msg.index)

        @on(m.Locate)
        async def locate(msg: m.Locate, data: memoryview, ctx: CallContext) -> m.Located:
            if msg.index < 0:
                raise InvalidArgument("chunk index must not be negative")
            if not 0 <= msg.count <= MAX_LOCATE:
                raise InvalidArgument(f"count must be between 0 and {MAX_LOCATE}")
            info = await store.stat(normalize(msg.path))
            chunks = []
            if not info.is_dir and info.size:
                last = min(msg.index + msg.count, (info.size - 1) // self.config.chunk_size + 1)
                for index in range(msg.index, last):
                    chunks.append(self._read_location(await store.chunk(info.file_id, index), index))
            return m.Located(info, chunks)

        @on(m.LastChunk)
        async def last_chunk(msg: m.LastChunk, data: memoryview, ctx: CallContext) -> m.ChunkLocation:
            ref = await store.last_chunk(msg.file_id)
            if ref is None:
                ref, lease = await self._allocate(msg.file_id, 0)
            else:
                ref, lease = await self._writable(msg.file_id, ref)
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
            if server is not None and msg.handle in server.held:
                log.warning("chunk %d on %s reported bad: %s", msg.handle, msg.address, msg.reason)
                self.cluster.discard_replica(msg.handle, server.server_id)
            return m.Ok()

        @on(m.ClusterStatus)
        async def cluster_status(msg: m.ClusterStatus, data: memoryview, ctx: CallContext) -> m.ClusterInfo:
            return self.cluster_info()

        @on(m.Register)
        async def register(msg: m.Register, data: memoryview, ctx: CallContext) -> m.Registered:
            self.cluster.join(msg.server_id, msg.address, msg.capacity_bytes, msg.used_bytes, len(msg.chunks))
            # Leases the server still holds (msg.leases) are not adopted: the replica set they were
            # granted with is unknown here, and a replica missing from it would keep the current
            # version while missing mutations. The start-up grace outlasts them instead.
            delete = await self._accept_full_report(msg.server_id, msg.chunks, stale_too=True)
            log.info("chunkserver %s registered at %s with %d chunks (%d to delete)", msg.server_id,
                     msg.address, len(msg.chunks), len(delete))
            return m.Registered(delete + self.cluster.take_deletions(msg.server_id), self.config.heartbeat_interval)

        @on(m.Heartbeat)
        async def heartbeat(msg: m.Heartbeat, data: memoryview, ctx: CallContext) -> m.HeartbeatReply:
            server = self.cluster.servers.get(msg.server_id)
            if server is None or server.dead:
                return m.HeartbeatReply(known=False)  # re-register with a full report
            server.detector.heartbeat()
            server.capacity_bytes, server.used_bytes = msg.capacity_bytes, msg.used_bytes
            server.chunk_count = msg.chunk_count
            for handle in msg.removed:
                self.cluster.drop_location(handle, msg.server_id)
            self.cluster.confirm_removed(msg.server_id, msg.removed)
            await self._accept_new_replicas(msg.server_id, msg.added)
            orphans = await self._accept_full_report(msg.server_id, msg.full, stale_too=False) \
                if msg.full is not None else []
            return m.HeartbeatReply(True, orphans + self.cluster.take_deletions(msg.server_id),
                                    self._extend_leases(msg.server_id, msg.lease_extensions))

    async def _accept_full_report(self, server_id: str, reports: list[m.ChunkReport], stale_too: bool) -> list[int]:
        """Record replicas at the current version; return the ones to delete.

        Unknown handles are orphans (deleted files, a restored older namespace). An older
        version is a stale replica, but only a registration proves it: a heartbeat's report
        may have been taken just before a version bump reached the server.
        """
        known = await self.store.versions([r.handle for r in reports])
        delete: list[int] = []
        for report in reports:
            version = known.get(report.handle)
            if version is None:
                delete.append(report.handle)
            elif report.version < version:
                if not stale_too:
                    continue
                if self.cluster.locations.get(report.handle):
                    log.info("chunk %d on %s is stale (version %d < %d)", report.handle, server_id,
                             report.version, version)
                    delete.append(report.handle)
                    self.cluster.suspect.add(report.handle)
                else:
                    # No current replica known (yet): a master that died between recording a new
                    # version and telling the replicas leaves every replica "behind" but intact.
                    self.cluster.behind.setdefault(report.handle, {})[server_id] = report.version
            else:
                if report.version > version:  # the master failed after granting a lease: adopt it
                    await self.store.set_version(report.handle, report.version)
                self.cluster.add_location(report.handle, server_id)
        return delete

    async def _accept_new_replicas(self, server_id: str, reports: list[m.ChunkReport]) -> None:
        """Chunks created since the last heartbeat, recorded when their version is current."""
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
            if lease is not None and lease.primary == server_id and lease.live(now) and handle not in self._frozen:
                lease.expires = now + self.config.lease_seconds
                extended.append(m.LeaseExtension(handle, lease.version, self.config.lease_seconds))
        return extended

    def cluster_info(self) -> m.ClusterInfo:
        now = time.monotonic()
        rows = []
        for s in sorted(self.cluster.servers.values(), key=lambda s: s.address):
            phi = s.detector.phi(now)
            rows.append(m.ChunkserverStatus(s.server_id, s.address, "alive" if self.cluster.alive(s.server_id, now)
                                            else "dead", s.capacity_bytes, s.used_bytes, len(s.held),
                                            round(now - (s.detector.last or now), 3), round(phi, 3)))
        pending = sum(len(v) for v in self.cluster.pending_delete.values())
        return m.ClusterInfo(rows, self.config.chunk_size, self.config.replication,
                             self.cluster.under_replicated, pending, self.cluster.missing)
