"""The chunk authority: allocation, leases, versions, copy-on-write and fencing.

Every change to who may mutate a chunk goes through here, under the chunk's lock (a
``KeyedLocks`` table that forgets idle keys): the request handlers, the chunkserver reports
and the background ``maintenance`` all use these public methods, so a chunk is never leased,
copied and moved at once. docs/consistency.md says why each step is where it is.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Hashable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from hercules_core import messages as m
from hercules_core.config import Config
from hercules_core.errors import HerculesError, NoSpace, NotFound, TooFewChunkservers, Unavailable
from hercules_core.keyed_locks import KeyedLocks
from hercules_core.master.cluster import Cluster, Lease
from hercules_core.master.entry_leases import EntryLeases
from hercules_core.master.lease_tokens import LeaseTokens
from hercules_core.master.phi import PhiParams
from hercules_core.master.store import ChunkRef, MetadataStore
from hercules_core.plugins.types import PlacementPolicy
from hercules_core.rpc import ConnectionPool

log = logging.getLogger(__name__)
MAX_REPLICATION = 16
CLOCK_MARGIN = 1.0  # seconds added to a peer's lease-long clock: rates differ, a heartbeat travels
RENEW_WITHIN = 2.5  # a lease handed to a writer with less left is renewed first (clients refetch at 2 s)


class ChunkAuthority:
    def __init__(self, config: Config, store: MetadataStore, placement: PlacementPolicy,
                 pool: ConnectionPool) -> None:
        self.config = config
        self.store = store
        self.placement = placement
        self.pool = pool
        params = PhiParams(threshold=config.phi_threshold, acceptable_pause=config.dead_after)
        self.cluster = Cluster(params, config.heartbeat_interval,
                               fence_seconds=config.lease_seconds + CLOCK_MARGIN)
        # per chunk handle, and per ("alloc" | "cow", file id, index) for a chunk slot being filled
        self.locks: KeyedLocks[Hashable] = KeyedLocks()
        # chunks being snapshotted (how many snapshots hold each): no new leases, no copies until done
        self._frozen: collections.Counter[int] = collections.Counter()
        self._snapshot_sources: collections.Counter[str] = collections.Counter()  # of running snapshots
        # A lease granted before a restart may still be live somewhere: wait it out (GFS).
        self.grace_until = time.monotonic() + config.lease_seconds + CLOCK_MARGIN
        self.registering_until = time.monotonic() + 3 * config.heartbeat_interval + 1.0  # reports arrive
        self._retiring: set[asyncio.Task[None]] = set()  # version bumps past replicas reported corrupt
        self.tokens = LeaseTokens(config.data_dir())  # what the primaries' mutations carry
        self.leases = EntryLeases(config.entry_lease)  # on entries clients cache

    # -- locations and versions -----------------------------------------------------------------

    def location(self, ref: ChunkRef, lease: Lease | None = None) -> m.ChunkLocation:
        replicas = [s.address for s in self.cluster.live_replicas(ref.handle)]
        primary, expires = "", 0.0
        if lease is not None and self.cluster.alive(lease.primary):
            primary = self.cluster.servers[lease.primary].address
            expires = time.time() + (lease.renew_by - time.monotonic())
            replicas.sort(key=lambda a: a != primary)
        return m.ChunkLocation(ref.handle, ref.index, ref.version, replicas, primary, expires)

    def read_location(self, ref: ChunkRef | None, index: int) -> m.ChunkLocation:
        """Where to read chunk ``index``; a chunk never created (absent, or version 0) reads as zeros."""
        if ref is None or ref.version == 0:
            return m.ChunkLocation(ref.handle if ref else 0, index, 0, [], exists=False)
        return self.location(ref, self.cluster.leases.get(ref.handle))

    async def call(self, address: str, msg: Any, timeout: float = 10.0) -> Any:
        reply, _ = await self.pool.call(address, msg, timeout=timeout)
        return reply

    def set_version(self, handle: int, version: int, lease_seconds: float) -> m.SetVersion:
        """The command moving a replica to ``version``; a lease comes with its token."""
        return m.SetVersion(handle, version, lease_seconds, self.tokens.token(handle, version) if lease_seconds else "")

    async def bump_version(self, handle: int, lease_to: str | None = None) -> tuple[int, list[str]]:
        """Give the live replicas a new version (ending any lease); return it and who took it.

        A replica that misses the bump is dropped, and the bump is repeated on those that took
        it: a SetVersion that timed out may still be applied later (the server was paused), and
        such a replica must hold a version no mutation ever happens at. So the version returned
        was taken by every replica asked, and replicas known but not live are dropped too.
        ``lease_to`` gets the lease with the version, unless a dropped replica may still serve
        reads (see ``Cluster.fence``): the caller checks. Call with the chunk's lock held.
        """
        lease = self.config.lease_seconds
        for _ in range(MAX_REPLICATION + 1):  # every repeated round has dropped a replica
            # Marked before the replicas are listed: a report checked meanwhile lists no replica
            # that this round does not ask (``VersionWatch``).
            self.cluster.versions.changing(handle)
            replicas = self.cluster.live_replicas(handle)
            live = {s.server_id for s in replicas}
            for server_id in self.cluster.locations.get(handle, set()) - live:
                self.cluster.discard_replica(handle, server_id)
            if not replicas:
                raise Unavailable(f"chunk {handle} has no live replica")
            version = (await self.store.versions([handle])).get(handle)
            if version is None:
                raise NotFound(f"chunk {handle} no longer exists")
            version += 1
            await self.cluster.versions.write(handle, self.store.set_version(handle, version))
            self.cluster.leases.pop(handle, None)
            fenced = self.cluster.fence(handle, time.monotonic())[0] > time.monotonic()
            results = await asyncio.gather(*(
                self.call(s.address, self.set_version(
                    handle, version, lease if s.server_id == lease_to and not fenced else 0.0))
                for s in replicas), return_exceptions=True)
            took = []
            for server, result in zip(replicas, results):
                if isinstance(result, BaseException):
                    log.warning("chunk %d: replica on %s missed version %d: %s", handle, server.address, version,
                                result)
                    self.cluster.discard_replica(handle, server.server_id)
                else:
                    took.append(server.server_id)
            if not took:
                raise Unavailable(f"chunk {handle}: no replica accepted version {version}")
            if len(took) == len(replicas):
                return version, took
        raise Unavailable(f"chunk {handle}: replicas kept missing new versions")

    async def _version_without(self, handle: int, dropped_at: int) -> None:
        """Move a chunk past the version a corrupt replica was dropped at, so that replica is stale
        should its server come back with it (restarted before deleting it); repair copies a good one."""
        try:
            async with self.locks.hold(handle):
                if (await self.store.versions([handle])).get(handle) != dropped_at:
                    return  # a lease or a copy since has moved it on without the replica
                version, _ = await self.bump_version(handle)
                log.info("chunk %d: at version %d without its corrupt replica", handle, version)
        except HerculesError as exc:
            log.warning("chunk %d: no new version after a corrupt replica: %s", handle, exc)

    def _check_fence(self, handle: int) -> None:
        """No mutation before every dropped replica's read permission has run out: it would go on
        serving the old bytes to a client that holds its location."""
        now = time.monotonic()
        end, who = self.cluster.fence(handle, now)
        if end > now:
            raise Unavailable(f"chunk {handle}: dropped replica on {who} may still serve reads for "
                              f"{end - now:.1f}s; writes resume then")

    async def _grant_lease(self, handle: int, prefer: str) -> Lease:
        """A new version on the live replicas, and a lease on it for ``prefer`` (or, should it miss
        the version, for another replica). The lease's clocks: ``renew_by`` starts before the grant
        is sent (the primary's clock starts later), ``expires`` once it is acknowledged."""
        self._check_fence(handle)
        started = time.monotonic()
        version, took = await self.bump_version(handle, lease_to=prefer)
        self._check_fence(handle)
        primary = prefer
        if primary not in took:
            primary = took[0]
            started = time.monotonic()
            await self.call(self.cluster.servers[primary].address,
                            self.set_version(handle, version, self.config.lease_seconds))
        lease = Lease(primary, version, time.monotonic() + self.config.lease_seconds, frozenset(took),
                      started + self.config.lease_seconds)
        self.cluster.leases[handle] = lease
        if self._renew_due(lease):  # a slow replica held the grant up: the primary's clock ran meanwhile
            await self._renew(handle, lease)
        return lease

    def _renew_due(self, lease: Lease) -> bool:
        return lease.renew_by - time.monotonic() < min(RENEW_WITHIN, self.config.lease_seconds / 2)

    async def _renew(self, handle: int, lease: Lease) -> None:
        """Restart the primary's lease clock (a SetVersion at the same version) before it runs out."""
        started = time.monotonic()
        await self.call(self.cluster.servers[lease.primary].address,
                        self.set_version(handle, lease.version, self.config.lease_seconds))
        lease.renew_by = started + self.config.lease_seconds
        lease.expires = max(lease.expires, time.monotonic() + self.config.lease_seconds)

    # -- allocation, leases, copy-on-write ----------------------------------------------------

    async def allocate(self, file_id: int, index: int) -> tuple[ChunkRef, Lease]:
        async with self.locks.hold(("alloc", file_id, index)):
            ref = await self.store.chunk(file_id, index)
            if ref is None or ref.version == 0:
                await self._refuse_while_snapshotted(file_id, ref)
                return await self._allocate_new(file_id, index, ref)
        return await self.writable(file_id, ref)

    async def _refuse_while_snapshotted(self, file_id: int, ref: ChunkRef | None) -> None:
        """A new chunk's lease starts with it: none in a tree a snapshot is taking, whose chunk list
        was read at its start, or the snapshot would share a chunk with a live lease."""
        if ref is not None and ref.handle in self._frozen:
            raise Unavailable(f"chunk {ref.handle} is being snapshotted; retry")
        if self._snapshot_sources:
            path = (await self.store.stat_id(file_id)).path
            for source in self._snapshot_sources:
                if source == "/" or path == source or path.startswith(source + "/"):
                    raise Unavailable(f"{path} is being snapshotted (of {source}); retry")

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
        version = 1 if ref is None else time.time_ns() // 1_000_000  # one per attempt
        ref = ref or await self.store.add_chunk(file_id, index)
        ref = ChunkRef(ref.handle, ref.index, version, ref.refs)
        lease_seconds = self.config.lease_seconds
        async with self.locks.hold(ref.handle):  # lease requests for the new handle wait for its creation
            # The first replica takes the lease with the chunk. Should the version below never be
            # recorded, that lease is at a version no client learns of, and the retry moves on.
            started = time.monotonic()
            self.cluster.versions.changing(ref.handle)  # reports of it checked meanwhile are not judged
            results = await asyncio.gather(*(
                self.call(str(s.address), m.CreateChunk(ref.handle, ref.version, lease_seconds if n == 0 else 0.0,
                                                        self.tokens.token(ref.handle, ref.version) if n == 0 else ""))
                for n, s in enumerate(chosen)), return_exceptions=True)
            created = []
            for server, result in zip(chosen, results):
                if isinstance(result, BaseException):
                    log.warning("create chunk %d on %s failed: %s", ref.handle, server.address, result)
                    # It may still be created there late: never at a version this chunk keeps.
                    self.cluster.pending_delete.setdefault(server.server_id, set()).add(ref.handle)
                else:
                    created.append(server.server_id)
            if not created:
                raise Unavailable(f"no chunkserver created chunk {ref.handle}: {results[0]}")
            # Recorded before any location, so no replica is ever listed at an unrecorded version.
            await self.cluster.versions.write(ref.handle, self.store.set_version(ref.handle, ref.version))
            for server_id in created:
                self.cluster.add_location(ref.handle, server_id)
            if len(created) == len(chosen):
                lease = Lease(chosen[0].server_id, ref.version, time.monotonic() + lease_seconds,
                              frozenset(created), started + lease_seconds)
                self.cluster.leases[ref.handle] = lease
            else:  # born under-replicated (re-replication takes it from here), on a version only they hold
                self.cluster.suspect.add(ref.handle)
                lease = await self._grant_lease(ref.handle, created[0])
        return ChunkRef(ref.handle, ref.index, lease.version, ref.refs), lease

    async def writable(self, file_id: int, ref: ChunkRef) -> tuple[ChunkRef, Lease]:
        if ref.version == 0:
            return await self.allocate(file_id, ref.index)
        if ref.refs > 1:
            ref = await self._copy_on_write(file_id, ref)
        lease = await self._ensure_lease(ref)
        return ChunkRef(ref.handle, ref.index, lease.version), lease

    async def _ensure_lease(self, ref: ChunkRef) -> Lease:
        """The current lease, or a new one with a bumped version on the live replicas."""
        if ref.handle in self._frozen:
            raise Unavailable(f"chunk {ref.handle} is being snapshotted; retry")
        async with self.locks.hold(ref.handle):
            now = time.monotonic()
            lease = self.cluster.leases.get(ref.handle)
            live = {s.server_id for s in self.cluster.live_replicas(ref.handle)}
            prefer = None
            if lease is not None and lease.live(now) and self.cluster.alive(lease.primary, now):
                if lease.replicas <= live:
                    if self._renew_due(lease):  # the primary's clock may be about to end it
                        await self._renew(ref.handle, lease)
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
            return await self._grant_lease(ref.handle, prefer or replicas[0].server_id)

    async def _copy_on_write(self, file_id: int, ref: ChunkRef) -> ChunkRef:
        """First write to a chunk a snapshot shares: each replica copies it locally first."""
        async with self.locks.hold(("cow", file_id, ref.index)):
            current = await self.store.chunk(file_id, ref.index)
            if current is None or current.refs <= 1:
                return current or ref
            if current.handle in self._frozen:  # the copy would take the file's chunk out of the snapshot
                raise Unavailable(f"chunk {current.handle} is being snapshotted; retry")
            lease = self.cluster.leases.get(current.handle)
            if lease is not None and lease.live(time.monotonic()):
                await self.revoke(current.handle)  # a write through it must not land after the copy
            async with self.locks.hold(current.handle):
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

    async def revoke(self, handle: int) -> None:
        """End a chunk's lease before a snapshot: ask the primary, or wait the lease out."""
        async with self.locks.hold(handle):
            lease = self.cluster.leases.pop(handle, None)
            if lease is None and time.monotonic() < self.grace_until:
                await self._end_leases_from_before_restart(handle)
                return
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

    async def _end_leases_from_before_restart(self, handle: int) -> None:
        """In the restart grace a replica may hold a lease this master never granted (none is
        adopted at registration). A new version ends it on every live replica; a primary that
        missed it is stale, and its secondaries refuse its mutations. With no replica to take
        the version, wait until every lease from before the restart has run out. Call with the
        chunk's lock held."""
        try:
            await self.bump_version(handle)
        except NotFound:
            return
        except Unavailable as exc:
            if not (await self.store.versions([handle])).get(handle):
                return  # never created: nobody was told where to write it
            wait = self.grace_until - time.monotonic()
            log.info("chunk %d: could not end leases from before the restart (%s); waiting %.1fs",
                     handle, exc, wait)
            await asyncio.sleep(max(0.0, wait))

    # -- snapshots, heartbeats, corrupt replicas ------------------------------------------------

    def freeze(self, handles: Iterable[int]) -> list[int]:
        frozen = list(handles)
        self._frozen.update(frozen)
        return frozen

    def thaw(self, handles: list[int]) -> None:
        for handle in handles:
            self._frozen[handle] -= 1
            if self._frozen[handle] <= 0:
                del self._frozen[handle]

    def extend_leases(self, server_id: str, handles: list[int]) -> list[m.LeaseExtension]:
        now = time.monotonic()
        extended = []
        for handle in handles:
            lease = self.cluster.leases.get(handle)
            if lease is not None and lease.primary == server_id and lease.live(now) and handle not in self._frozen:
                # The primary counts from its heartbeat's sending: at most this, at least a margin less.
                lease.expires = now + self.config.lease_seconds
                lease.renew_by = max(lease.renew_by, lease.expires - CLOCK_MARGIN)
                extended.append(m.LeaseExtension(handle, lease.version, self.config.lease_seconds))
        return extended

    @contextmanager
    def snapshotting(self, source: str) -> Iterator[None]:
        """While a snapshot of ``source`` runs, no new chunk starts in its tree (its chunk list
        was read at the start): see ``_refuse_while_snapshotted``."""
        self._snapshot_sources[source] += 1
        try:
            yield
        finally:
            self._snapshot_sources[source] -= 1
            if self._snapshot_sources[source] <= 0:
                del self._snapshot_sources[source]

    async def drop_corrupt(self, handle: int, server_id: str) -> None:
        """Drop a replica reported corrupt, then (in the background: the reporter may be inside a
        mutation) move the chunk to a version without it."""
        self.cluster.discard_replica(handle, server_id)
        version = (await self.store.versions([handle])).get(handle)
        if version is not None:
            task = asyncio.ensure_future(self._version_without(handle, version))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)


class AuthorityPart:
    """A part of the master built on the chunk authority (handler sets, maintenance), with
    shortcuts to what it holds."""

    def __init__(self, authority: ChunkAuthority) -> None:
        self.authority = authority
        self.config = authority.config
        self.store = authority.store
        self.cluster = authority.cluster
        self.leases = authority.leases
