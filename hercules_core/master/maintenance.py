"""The master's background work: failure detection, re-replication, rebalancing, trash collection.

Re-replication and rebalancing copy a chunk under its lock and under a fresh version, so
the copy and the originals agree, any lease ends, and a replica that was away during the
copy comes back stale (and is deleted) rather than silently behind.
"""

from __future__ import annotations

import asyncio
import logging
import time

from hercules_core import messages as m
from hercules_core.errors import ChecksumMismatch, HerculesError, NotFound
from hercules_core.master.cluster import Chunkserver
from hercules_core.master.service import MasterService
from hercules_core.paths import UPLOADS

log = logging.getLogger(__name__)
TICK = 0.25
MISSING_CHECK_EVERY = 300.0
MOVES_PER_ROUND = 8


class Maintenance:
    def __init__(self, service: MasterService) -> None:
        self.service = service
        self.cluster = service.cluster
        self.config = service.config
        self._copies = asyncio.Semaphore(self.config.max_concurrent_copies)
        self._lost: set[int] = set()
        self._next_rebalance = time.monotonic() + self.config.rebalance_interval
        self._next_purge = 0.0
        # Chunkservers report what they hold once the master is up; after that (and now and
        # then) any chunk the metadata expects but nobody reported is missing.
        self._next_missing_check = time.monotonic() + max(self.config.lease_seconds,
                                                          5 * self.config.heartbeat_interval)

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
            freed = await self.service.store.purge_trash(time.time() - self.config.trash_grace)
            if freed.handles:
                log.info("trash: %d chunks past their grace period are collected", len(freed.handles))
            self.cluster.forget(freed.handles)
            await self.drop_abandoned_uploads()
        if now >= self.service.grace_until and self.cluster.behind:
            await self.settle_behind()
        await self.repair()
        if now >= self._next_missing_check:
            self._next_missing_check = now + MISSING_CHECK_EVERY
            await self.find_missing()
        if now >= self._next_rebalance:
            self._next_rebalance = now + self.config.rebalance_interval
            await self.rebalance()

    async def drop_abandoned_uploads(self) -> None:
        """Uploads are written under a hidden name and renamed when complete; one whose client
        vanished (or that a restored backup caught half-way) is removed after ``upload_timeout``."""
        try:
            entries, _ = await self.service.store.list(UPLOADS, False, 1000, "")
        except NotFound:
            return
        cutoff = time.time() - self.config.upload_timeout
        for entry in entries:
            if entry.mtime < cutoff:
                freed = await self.service.store.delete(entry.path, True)
                self.cluster.forget(freed.handles)
                log.info("removed abandoned upload %s", entry.path)

    async def settle_behind(self) -> None:
        """After the start-up grace period: replicas reported at an older version are stale if a
        current replica exists; otherwise no mutation can have happened at the newer version
        (no replica ever took it), so the newest reported version is adopted."""
        behind, self.cluster.behind = self.cluster.behind, {}
        for handle, reports in behind.items():
            async with self.service.lock(handle):
                known = (await self.service.store.versions([handle])).get(handle)
                if known is None:  # deleted meanwhile: orphans
                    for server_id in reports:
                        self.cluster.pending_delete.setdefault(server_id, set()).add(handle)
                    continue
                if not self.cluster.locations.get(handle):
                    best = max(reports.values())
                    log.warning("chunk %d: no replica has version %d; adopting version %d", handle, known, best)
                    await self.service.store.set_version(handle, best)
                    known = best
                for server_id, version in reports.items():
                    if version == known and server_id in self.cluster.servers:
                        self.cluster.add_location(handle, server_id)
                    else:
                        self.cluster.discard_replica(handle, server_id)
                self.cluster.suspect.add(handle)

    async def find_missing(self) -> None:
        """Chunks in the metadata that no chunkserver holds (e.g. after restoring a backup)."""
        unheld = [h for h in await self.service.store.all_handles() if not self.cluster.locations.get(h)]
        versions = await self.service.store.versions(unheld)
        missing = [h for h in unheld if versions.get(h, 0) > 0]  # version 0: never created
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
        targets = await self.service.store.replication_of(sorted(suspects))
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

    async def _replicate(self, handle: int, target: int) -> bool:
        async with self._copies, self.service.lock(handle):
            live = self.cluster.live_replicas(handle)
            missing = target - len(live)
            if missing <= 0 or not live:
                return missing <= 0
            holders = frozenset(self.cluster.locations.get(handle, ())) | self.cluster.deleting_on(handle)
            servers = [s.view() for s in self.cluster.live_servers()]
            chosen = self.service.placement.choose(servers, missing, exclude=holders)
            if not chosen:
                return False
            version, took = await self.service.bump_version(handle)
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
                except HerculesError as exc:
                    log.warning("copy of chunk %d to %s failed: %s", handle, dest.address, exc)
            log.info("chunk %d re-replicated to %d new server(s) (version %d)", handle, done, version)
            return done == missing

    async def _copy(self, handle: int, version: int, source: str, dest_id: str) -> int:
        dest = self.cluster.servers[dest_id]
        written = await self.service.call(dest.address, m.CopyChunk(handle, version, source), timeout=120.0)
        self.cluster.add_location(handle, dest_id)
        dest.used_bytes += written.length
        return written.length

    # -- rebalancing -------------------------------------------------------------------------

    async def rebalance(self) -> None:
        """Move replicas from the fullest to the emptiest server until usage is within the spread."""
        servers = [s for s in self.cluster.live_servers() if s.capacity_bytes > 0]
        if len(servers) < 2:
            return
        for _ in range(MOVES_PER_ROUND):
            full = max(servers, key=lambda s: s.usage)
            empty = min(servers, key=lambda s: s.usage)
            if full.usage - empty.usage <= self.config.rebalance_spread:
                return
            candidates = sorted(h for h in full.held - empty.held if empty.server_id not in self.cluster.deleting_on(h))
            if not candidates:
                return
            if not await self._move(candidates[0], full, empty):
                return

    async def _move(self, handle: int, source: Chunkserver, dest: Chunkserver) -> bool:
        async with self._copies, self.service.lock(handle):
            if handle not in source.held or handle in dest.held:
                return True
            try:
                version, took = await self.service.bump_version(handle)
                if source.server_id not in took:
                    return True
                length = await self._copy(handle, version, source.address, dest.server_id)
            except HerculesError as exc:
                log.warning("moving chunk %d from %s to %s failed: %s", handle, source.address, dest.address, exc)
                return False
            self.cluster.discard_replica(handle, source.server_id)
            self.cluster.suspect.discard(handle)
            source.used_bytes = max(0, source.used_bytes - length)
            log.info("rebalance: chunk %d moved from %s to %s", handle, source.address, dest.address)
            return True
