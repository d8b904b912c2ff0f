"""The master's background work: failure detection, re-replication, rebalancing, trash collection.

Re-replication and rebalancing copy a chunk under a fresh version, so the copy and the
originals agree, any lease ends, and a replica that was away during the copy comes back stale
(and is deleted) rather than silently behind. The chunk's lock is held to set that version and
to let the copy join, not while it is made: a slow or hung destination would keep the chunk's
writers waiting for the copy's whole timeout. A copy the chunk's writes moved past meanwhile
is at an old version, and is deleted instead of joining.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence

import attrs

from hercules_core import messages as m
from hercules_core.errors import ChecksumMismatch, HerculesError, NotFound
from hercules_core.master.authority import AuthorityPart, ChunkAuthority
from hercules_core.master.cluster import Chunkserver
from hercules_core.master.store import handle_batches
from hercules_core.paths import UPLOADS
from hercules_core.plugins.types import PlacementPolicy, ServerView

log = logging.getLogger(__name__)
TICK = 0.25
SWEEP_EVERY = 300.0
MOVES_PER_ROUND = 8
MOVE_CANDIDATES = 64  # chunks of the fullest server the policy is asked about, at most, per move


class StaleCopy(Exception):
    """A copy finished after the chunk was written past the version it was made at."""


def held_bytes(server: Chunkserver) -> float:
    """The bytes of the replicas the master counts on ``server``: what it reports, less (at its
    average chunk size) the replicas it was told to delete and has not deleted yet, so a source
    of a move is not seen as full again before its copy is gone."""
    reported = max(server.chunk_count, len(server.held))
    return server.used_bytes * len(server.held) / reported if reported else 0.0


def move_target(policy: PlacementPolicy, source: ServerView, others: Sequence[ServerView],
                takers: Sequence[ServerView], busy: frozenset[str] = frozenset()) -> ServerView | None:
    """Where the placement policy puts the replica on ``source`` of a chunk whose other live
    replicas are on ``others``: one of ``takers`` (servers below their share), or ``None``: stay.

    The policy is asked as re-replication asks it, the other holders shown and excluded, so its
    constraints (distinct hosts, racks) hold for the chunk after the move. ``source`` is offered
    beside the takers: a policy that would put the replica on a taken rack only for want of
    a better server picks the source's free rack instead, and the replica stays. ``busy``:
    servers that must not take it (a replica of the chunk is being deleted there).
    """
    held = {s.server_id for s in others}
    offered = [t for t in takers if t.server_id not in held | busy and t.server_id != source.server_id]
    if not offered:
        return None
    # The source's replica already has its space: a full source is still a choice (to stay).
    staying = attrs.evolve(source, used_bytes=min(source.used_bytes, source.capacity_bytes - 1))
    chosen = policy.choose([*others, staying, *offered], 1, exclude=frozenset(held | busy))
    if not chosen or chosen[0].server_id == source.server_id:
        return None
    return chosen[0]


class Maintenance(AuthorityPart):
    def __init__(self, authority: ChunkAuthority) -> None:
        super().__init__(authority)
        self._copies = asyncio.Semaphore(self.config.max_concurrent_copies)
        self._lost: set[int] = set()
        self._next_rebalance = time.monotonic() + self.config.rebalance_interval
        self._next_purge = 0.0
        # Chunkservers report what they hold in the registration window; after it (and now and
        # then) every chunk is checked against its factor, whoever held it before the restart.
        self._next_sweep = authority.registering_until

    async def run(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                await self.tick()
            except HerculesError as exc:
                log.warning("maintenance: %s", exc)
            except Exception:  # noqa: BLE001 - keep the loop alive, but say what broke
                log.exception("maintenance round failed")

    async def tick(self) -> None:
        for server in self.cluster.newly_dead():
            log.warning("chunkserver %s at %s is dead (phi %.1f); %d chunks to check", server.server_id,
                        server.address, server.detector.phi(), len(server.held))
        now = time.monotonic()
        if now >= self._next_purge:
            self._next_purge = now + 1.0
            freed = await self.store.purge_trash(time.time() - self.config.trash_grace)
            if freed.handles:
                log.info("trash: %d chunks past their grace period are collected", len(freed.handles))
            self.cluster.forget(freed.handles)
            await self.drop_abandoned_uploads()
        if now >= self.authority.grace_until and self.cluster.behind:
            await self.settle_behind()
        if now < self.authority.registering_until:
            return  # a replica not yet reported is not missing: no copies or moves before the reports
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY
            await self.sweep()
        await self.repair()
        if now >= self._next_rebalance:
            self._next_rebalance = now + self.config.rebalance_interval
            await self.rebalance()

    async def drop_abandoned_uploads(self) -> None:
        """Uploads are written under a hidden name and renamed when complete; one whose client
        vanished (or that a restored backup caught half-way) is removed after ``upload_timeout``."""
        try:
            entries, _ = await self.store.list(UPLOADS, False, 1000, "")
        except NotFound:
            return
        cutoff = time.time() - self.config.upload_timeout
        for entry in entries:
            if entry.mtime < cutoff:
                freed = await self.store.delete(entry.path, True)
                self.cluster.forget(freed.handles)
                log.info("removed abandoned upload %s", entry.path)

    async def settle_behind(self) -> None:
        """After the start-up grace period: replicas reported at an older version are stale if a
        current replica exists; otherwise no mutation can have happened at the newer version
        (no replica ever took it), so the newest reported version is adopted."""
        behind, self.cluster.behind = self.cluster.behind, {}
        for handle, reports in behind.items():
            async with self.authority.locks.hold(handle):
                known = (await self.store.versions([handle])).get(handle)
                if known is None:  # deleted meanwhile: orphans
                    for server_id in reports:
                        self.cluster.pending_delete.setdefault(server_id, set()).add(handle)
                    continue
                if not self.cluster.locations.get(handle):
                    best = max(reports.values())
                    log.warning("chunk %d: no replica has version %d; adopting version %d", handle, known, best)
                    await self.cluster.versions.write(handle, self.store.set_version(handle, best))
                    known = best
                for server_id, version in reports.items():
                    if version == known and server_id in self.cluster.servers:
                        self.cluster.add_location(handle, server_id)
                    else:
                        self.cluster.discard_replica(handle, server_id)
                self.cluster.suspect.add(handle)

    async def sweep(self) -> None:
        """Check every chunk in the metadata: each becomes a suspect, so repair counts and copies
        those below their factor even when their lost holders never registered with this master
        process (only failures it saw itself would make suspects otherwise). Chunks no chunkserver
        holds (e.g. after restoring a backup) are counted missing."""
        missing: list[int] = []
        async for handles in handle_batches(self.store):  # never the whole list at once
            unheld = [h for h in handles if not self.cluster.locations.get(h) and h not in self.cluster.behind]
            versions = await self.store.versions(unheld)
            missing += [h for h in unheld if versions.get(h, 0) > 0]  # version 0: never created
            self.cluster.suspect.update(h for h in handles if self.cluster.locations.get(h))
        self.cluster.suspect.update(missing)
        self.cluster.missing = len(missing)
        if missing:
            log.error("%d chunks are missing from every chunkserver (first: %s); files using them "
                      "cannot be read in full", len(missing), ", ".join(map(str, missing[:10])))

    # -- re-replication ----------------------------------------------------------------------

    async def repair(self) -> None:
        """Copy chunks below their replication factor, those that lost the most replicas first."""
        suspects, self.cluster.suspect = self.cluster.suspect, set()
        if not suspects:
            self.cluster.under_replicated = len(self._lost)
            return
        targets = await self.store.replication_of(sorted(suspects))
        work = []
        for handle, target in targets.items():
            live = len(self.cluster.live_replicas(handle))
            if live == 0:
                if handle not in self._lost:
                    log.error("chunk %d has no live replica; waiting for a holder to return", handle)
                    self._lost.add(handle)
                self.cluster.suspect.add(handle)
            elif live < target:
                work.append((live - target, handle, target))
            elif live > target:
                await self._trim(handle, target)
        self._lost &= self.cluster.suspect
        self.cluster.under_replicated = len(work) + len(self._lost)
        work.sort()
        results = await asyncio.gather(*(self._replicate(handle, target) for _, handle, target in work),
                                       return_exceptions=True)
        failed = 0
        for (_, handle, _), result in zip(work, results):
            if isinstance(result, BaseException) or result is False:
                failed += 1
                self.cluster.suspect.add(handle)  # try again next round
                if isinstance(result, BaseException):
                    log.warning("re-replicating chunk %d failed: %s", handle, result)
        self.cluster.under_replicated = failed + len(self._lost)

    async def _trim(self, handle: int, target: int) -> None:
        """Drop replicas beyond the chunk's factor (a move whose source came back, a server that
        returned after its chunks were copied elsewhere), from the servers holding the most bytes;
        never while a lease is out (the primary's writes name their secondaries): next round."""
        async with self.authority.locks.hold(handle):
            lease = self.cluster.leases.get(handle)
            if lease is not None and lease.expires > time.monotonic():
                self.cluster.suspect.add(handle)
                return
            live = self.cluster.live_replicas(handle)
            extra = sorted(live, key=held_bytes, reverse=True)[:max(0, len(live) - target)]
            for server in extra:
                self.cluster.discard_replica(handle, server.server_id)
                log.info("chunk %d: replica on %s dropped, above the factor of %d", handle, server.address, target)

    async def _replicate(self, handle: int, target: int) -> bool:
        async with self._copies:
            async with self.authority.locks.hold(handle):
                live = self.cluster.live_replicas(handle)
                missing = target - len(live)
                if missing <= 0 or not live:
                    return missing <= 0
                holders = frozenset(self.cluster.locations.get(handle, ())) | self.cluster.deleting_on(handle)
                servers = [s.view() for s in self.cluster.live_servers()]
                chosen = self.authority.placement.choose(servers, missing, exclude=holders)
                if not chosen:
                    return False
                version, took = await self.authority.bump_version(handle)
                source = self.cluster.servers[took[0]]
            done = 0
            for dest in chosen:
                try:
                    await self._copy(handle, version, source.address, dest.server_id)
                    done += 1
                except ChecksumMismatch as exc:  # the source itself is bad: drop it, try another next round
                    log.warning("chunk %d: source replica on %s is corrupt: %s", handle, source.address, exc)
                    self.cluster.discard_replica(handle, source.server_id)
                    return False
                except StaleCopy:
                    return False  # written meanwhile: the next round copies the new version
                except HerculesError as exc:
                    log.warning("copy of chunk %d to %s failed: %s", handle, dest.address, exc)
            log.info("chunk %d re-replicated to %d new server(s) (version %d)", handle, done, version)
            return done == missing

    async def _copy(self, handle: int, version: int, source: str, dest_id: str) -> int:
        """Have ``dest_id`` pull the chunk at ``version`` (without the chunk's lock), then, under
        it, list the copy as a replica if the chunk is still at that version."""
        dest = self.cluster.servers[dest_id]
        written = await self.authority.call(dest.address, m.CopyChunk(handle, version, source), timeout=120.0)
        async with self.authority.locks.hold(handle):
            current = (await self.store.versions([handle])).get(handle)
            if current != version:
                self.cluster.pending_delete.setdefault(dest_id, set()).add(handle)
                log.info("copy of chunk %d on %s is stale (version %d, the chunk is at %s now); it is "
                         "deleted there", handle, dest.address, version, current)
                raise StaleCopy(f"chunk {handle} changed during its copy to {dest.address}")
            self.cluster.add_location(handle, dest_id)
        dest.used_bytes += written.length
        dest.chunk_count += 1  # until its next heartbeat says so
        return written.length

    # -- rebalancing -------------------------------------------------------------------------

    async def rebalance(self) -> None:
        """Move replicas from the server furthest above its fair share of bytes to servers below
        it, a few per round, until they are within the spread; the placement policy picks each
        replica's new server (``move_target``), so a move keeps its constraints.

        A server's fair share is the bytes all live servers hold, split in proportion to their
        capacity (equal usage, as HDFS's balancer aims for), and the spread is a fraction of the
        mean share, not of the disk: on a large disk every usage ratio is near zero, yet a new
        empty server must still take its part. A server takes a replica only when the gap to
        the source exceeds a chunk, so every move narrows it and moves never go back and forth.
        """
        servers = [s for s in self.cluster.live_servers() if s.capacity_bytes > 0]
        if len(servers) < 2:
            return
        for _ in range(MOVES_PER_ROUND):
            held = {s.server_id: held_bytes(s) for s in servers}
            total, capacity = sum(held.values()), sum(s.capacity_bytes for s in servers)
            excess = {s.server_id: held[s.server_id] - total * s.capacity_bytes / capacity for s in servers}
            full = max(servers, key=lambda s: excess[s.server_id])
            chunk = held[full.server_id] / len(full.held) if full.held else 0.0
            spread = max(self.config.rebalance_spread * total / len(servers), chunk)
            takers = [s for s in servers if excess[full.server_id] - excess[s.server_id] > spread
                      and s.capacity_bytes - s.used_bytes > chunk]
            move = self._choose_move(full, takers) if takers else None
            if move is None or not await self._move(move[0], full, move[1]):
                return

    def _choose_move(self, source: Chunkserver, takers: list[Chunkserver]) -> tuple[int, Chunkserver] | None:
        """One of ``source``'s chunks the policy would rather have on one of ``takers``, and where."""
        live = {s.server_id: s for s in self.cluster.live_servers()}
        offered = [t.view() for t in takers]
        held = sorted(source.held)
        for handle in random.sample(held, min(len(held), MOVE_CANDIDATES)):  # another few each round
            others = [live[i].view() for i in self.cluster.locations.get(handle, ())
                      if i in live and i != source.server_id]
            busy = self.cluster.deleting_on(handle) | {t.server_id for t in takers if handle in t.held}
            target = move_target(self.authority.placement, source.view(), others, offered, frozenset(busy))
            if target is not None:
                return handle, live[target.server_id]
        return None

    async def _move(self, handle: int, source: Chunkserver, dest: Chunkserver) -> bool:
        async with self._copies:
            async with self.authority.locks.hold(handle):
                if handle not in source.held or handle in dest.held:
                    return True
                try:
                    version, took = await self.authority.bump_version(handle)
                except HerculesError as exc:
                    log.warning("moving chunk %d: no new version to copy at (%s)", handle, exc)
                    return False
                if source.server_id not in took:
                    return True
            try:
                length = await self._copy(handle, version, source.address, dest.server_id)
            except StaleCopy:
                return False
            except HerculesError as exc:
                log.warning("moving chunk %d from %s to %s failed: %s", handle, source.address, dest.address, exc)
                return False
            async with self.authority.locks.hold(handle):
                if dest.server_id not in self.cluster.locations.get(handle, ()):
                    return False  # dropped since it joined: the source stays
                self.cluster.discard_replica(handle, source.server_id)
                try:
                    # The copy needed the source at the new version. Another version without it makes
                    # the replica left there stale: a report of it sent before its deletion is ignored
                    # instead of bringing it back as a fourth current replica.
                    await self.authority.bump_version(handle)
                except HerculesError as exc:
                    log.warning("chunk %d: no new version after its move (%s); re-replication checks it", handle, exc)
                    return False
            self.cluster.suspect.discard(handle)
            log.info("rebalance: chunk %d (%d bytes) moved from %s to %s", handle, length, source.address,
                     dest.address)
            return True
