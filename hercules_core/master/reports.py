"""What chunkservers tell the master: registrations (full reports), heartbeats (changes, lease
extensions, now and then a full report) and corrupt replicas. Chunk locations are soft state
rebuilt from these; a version older than the metadata's is stale.

Nothing reported is taken on trust (``validation``): handles out of range are refused one by one
(the rest of the report still counts), a version newer than the metadata's is adopted only where
one can be real (``_may_adopt``), a replica being deleted is not listed again, an address must
parse, a live server's id cannot be
taken over from another address or host (heartbeats too must come from the host it registered
from), and a bad-replica report is verified by the replica's own server and never removes a
chunk's last replica."""

from __future__ import annotations

import asyncio
import logging
import time

from hercules_core import messages as m
from hercules_core.errors import AlreadyExists, ChecksumMismatch, HerculesError, NotPrimary
from hercules_core.master.authority import AuthorityPart, ChunkAuthority
from hercules_core.master.validation import check_address, valid_handle, valid_version
from hercules_core.rpc import CallContext, Handler

log = logging.getLogger(__name__)
VERIFY_TIMEOUT = 120.0  # a server re-reads a whole chunk (64 MiB) to verify it
RESTORED_MARKER = "restored"  # left in ROOT_DIR by ``hercules restore``, removed after the next grace
CLOCK_SLACK_MS = 600_000  # a creation version from the clock of the master that died (ms), ahead of this one


def _in_range(server_id: str, reports: list[m.ChunkReport]) -> list[m.ChunkReport]:
    """The reports whose handle and version the store can hold; the others are logged and ignored."""
    kept = [r for r in reports if valid_handle(r.handle) and valid_version(r.version)]
    if len(kept) < len(reports):
        bad = [(r.handle, r.version) for r in reports if not (valid_handle(r.handle) and valid_version(r.version))]
        log.warning("chunkserver %s reported %d chunks with a handle or version out of range (ignored): %s",
                    server_id, len(bad), bad[:5])
    return kept


def _host(peer: str) -> str:
    """The host of a connection's ``host:port`` peer name."""
    return peer.rpartition(":")[0] or peer


class Reports(AuthorityPart):
    # Their handlers filter reports item by item: one bad chunk must not refuse a whole report.
    filters_itself = frozenset({m.Register, m.Heartbeat})

    def __init__(self, authority: ChunkAuthority) -> None:
        super().__init__(authority)
        self.origins: dict[str, str] = {}  # server id -> the host its registration came from
        self._verifying: dict[tuple[int, str], asyncio.Future[bool]] = {}  # bad-replica reports being checked
        # Started on metadata ``hercules restore`` installed: replicas may be newer (``_may_adopt``).
        self.restored = (self.config.data_dir() / RESTORED_MARKER).exists()

    metrics_url = ""  # the master's own /metrics, set by the role once it serves

    def handlers(self) -> dict[type, Handler]:
        return {m.Register: self.register, m.Heartbeat: self.heartbeat, m.ReportBadReplica: self.bad_replica,
                m.ClusterStatus: self.cluster_status, m.CheckLease: self.check_lease}

    async def register(self, msg: m.Register, data: memoryview, ctx: CallContext) -> m.Registered:
        check_address(msg.address)
        known = self.cluster.servers.get(msg.server_id)
        origin = _host(ctx.peer)
        if known is not None and self.cluster.alive(msg.server_id) and \
                (known.address != msg.address or self.origins.get(msg.server_id, origin) != origin):
            log.warning("refused a registration of live chunkserver %s at %s from %s (it is at %s, from %s)",
                        msg.server_id, msg.address, origin, known.address, self.origins.get(msg.server_id))
            raise AlreadyExists(f"chunkserver {msg.server_id} is live at {known.address}; "
                                f"it can register again from elsewhere once it is found dead")
        chunks = _in_range(msg.server_id, msg.chunks)
        server = self.cluster.join(msg.server_id, msg.address, msg.capacity_bytes, msg.used_bytes, len(chunks))
        server.metrics_url = msg.metrics_url
        self.origins[msg.server_id] = origin
        self._forget_leases_lost_by(msg.server_id, {lease.handle for lease in msg.leases})
        # Leases the server still holds (msg.leases) are not adopted: the replica set they were
        # granted with is unknown here, and a replica missing from it would keep the current
        # version while missing mutations. The start-up grace outlasts them instead, and a
        # snapshot within it ends them with a new version (_end_leases_from_before_restart).
        delete = await self._accept_full_report(msg.server_id, chunks, stale_too=True)
        log.info("chunkserver %s registered at %s with %d chunks (%d to delete)", msg.server_id,
                 msg.address, len(chunks), len(delete))
        return m.Registered(delete + self.cluster.take_deletions(msg.server_id), self.config.heartbeat_interval,
                            self.config.chunk_size)

    async def heartbeat(self, msg: m.Heartbeat, data: memoryview, ctx: CallContext) -> m.HeartbeatReply:
        server = self.cluster.servers.get(msg.server_id)
        if server is None or server.dead:
            return m.HeartbeatReply(known=False)  # re-register with a full report
        if self.origins.get(msg.server_id) != _host(ctx.peer):
            log.warning("ignored a heartbeat for chunkserver %s from %s (it registered from %s)", msg.server_id,
                        ctx.peer, self.origins.get(msg.server_id))
            return m.HeartbeatReply(known=False)
        server.detector.heartbeat()
        server.capacity_bytes, server.used_bytes = msg.capacity_bytes, msg.used_bytes
        server.chunk_count = msg.chunk_count
        removed = [handle for handle in msg.removed if valid_handle(handle)]
        for handle in removed:
            self.cluster.drop_location(handle, msg.server_id)
        self.cluster.confirm_removed(msg.server_id, removed)
        await self._accept_new_replicas(msg.server_id, _in_range(msg.server_id, msg.added))
        orphans = await self._accept_full_report(msg.server_id, _in_range(msg.server_id, msg.full), stale_too=False) \
            if msg.full is not None else []
        extensions = [handle for handle in msg.lease_extensions if valid_handle(handle)]
        return m.HeartbeatReply(True, orphans + self.cluster.take_deletions(msg.server_id),
                                self.authority.extend_leases(msg.server_id, extensions))

    async def bad_replica(self, msg: m.ReportBadReplica, data: memoryview, ctx: CallContext) -> m.Ok:
        """A report is a claim, whoever sent it (the server itself, a client whose read failed, or
        anyone): the replica is dropped only when its own server, asked at its registered
        address, finds it corrupt, and never when it is the chunk's last live replica."""
        server = self.cluster.by_address(msg.address)
        if server is None or msg.handle not in server.held:
            return m.Ok()
        if not any(s.server_id != server.server_id for s in self.cluster.live_replicas(msg.handle)):
            log.warning("chunk %d on %s reported bad (%s), kept: it is the last live replica", msg.handle,
                        msg.address, msg.reason)
            return m.Ok()
        key = (msg.handle, server.server_id)
        check = self._verifying.get(key)
        if check is None:  # one verification at a time, however many reports arrive
            check = self._verifying[key] = asyncio.ensure_future(self._verify(msg.handle, server.address))
            check.add_done_callback(lambda _: self._verifying.pop(key, None))
        if await asyncio.shield(check) and msg.handle in server.held:
            log.warning("chunk %d on %s is corrupt (reported: %s)", msg.handle, msg.address, msg.reason)
            await self.authority.drop_corrupt(msg.handle, server.server_id)
        return m.Ok()

    async def _verify(self, handle: int, address: str) -> bool:
        """Whether the server at ``address`` finds its replica of ``handle`` corrupt."""
        try:
            await self.authority.call(address, m.VerifyChunk(handle), timeout=VERIFY_TIMEOUT)
        except ChecksumMismatch:
            return True
        except HerculesError as exc:
            log.warning("chunk %d on %s reported bad, kept: its server could not verify it (%s)", handle,
                        address, exc)
            return False
        log.warning("chunk %d on %s reported bad, kept: its server verified it intact", handle, address)
        return False

    async def check_lease(self, msg: m.CheckLease, data: memoryview, ctx: CallContext) -> m.Ok:
        """A secondary asks whether a mutation's token is the lease this master granted (``lease_tokens``)."""
        if not self.authority.tokens.valid(msg.handle, msg.version, msg.token):
            raise NotPrimary(f"chunk {msg.handle}: no lease was granted with that token at version {msg.version}")
        return m.Ok()

    async def cluster_status(self, msg: m.ClusterStatus, data: memoryview, ctx: CallContext) -> m.ClusterInfo:
        return self.cluster_info()

    def _forget_leases_lost_by(self, server_id: str, held: set[int]) -> None:
        """A registering server (restarted, or back after losing the master) that no longer holds a
        lease this master recorded for it would answer every write "holds no lease" until the
        record ran out: forget the record, so the next write gets a new grant. Safe: a new grant
        bumps the version, so a lease the server might still act on can commit nothing."""
        for handle, lease in list(self.cluster.leases.items()):
            if lease.primary == server_id and handle not in held:
                del self.cluster.leases[handle]

    async def _accept_full_report(self, server_id: str, reports: list[m.ChunkReport], stale_too: bool) -> list[int]:
        """Record replicas at the current version; return the ones to delete.

        A replica this master is having the server delete is not listed again, whatever its
        version. Unknown handles are orphans (deleted files, a restored older namespace). An older
        version is a stale replica, but only a registration proves it: a heartbeat's report
        may have been taken just before a version bump reached the server.
        """
        watch = self.cluster.versions
        start = watch.since()
        try:
            known = await self.store.versions([r.handle for r in reports])
            delete: list[int] = []
            leaving = self.cluster.pending_delete.get(server_id, set()) | self.cluster.deleting.get(server_id, set())
            for report in reports:
                if report.handle in leaving:
                    continue  # being deleted there (stale, corrupt or moved): the report predates it
                if not watch.unchanged(report.handle, start):
                    continue  # its version moved on since it was read: judged by the next report
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
                    if report.version > version:
                        if not self._may_adopt(version, report.version):
                            log.warning("chunk %d: %s claims version %d, never granted (recorded %d): ignored",
                                        report.handle, server_id, report.version, version)
                            continue
                        adopted = await watch.write(report.handle,
                                                    self.store.set_version(report.handle, report.version))
                        if not watch.unchanged(report.handle, adopted):
                            continue  # bumped again meanwhile, without this replica
                    self.cluster.add_location(report.handle, server_id)
                    self.cluster.suspect.add(report.handle)  # repair counts it: one replica too many is trimmed
            return delete
        finally:
            watch.done(start)

    def _may_adopt(self, recorded: int, claimed: int) -> bool:
        """Whether a replica's version above the recorded one can be real. The master records a
        version before any replica takes it, so only two can: a chunk recorded at version 0 was
        being created when the master died, under version 1 or one taken from the clock in ms
        (``ChunkAuthority._allocate_new``), never one from the future; and in the start-up grace
        after ``hercules restore`` the metadata may be older than the replicas (the newest wins).
        Any other claim, however early after a restart, is refused: it must never make the
        replicas at the recorded version stale (docs/security.md, "Peers")."""
        if recorded == 0:
            return claimed <= time.time_ns() // 1_000_000 + CLOCK_SLACK_MS
        return self.restored and not self._recovered()

    async def end_restore_grace(self) -> None:
        """Once the first grace after a restore is over, start-ups are ordinary again."""
        if self.restored:
            await asyncio.sleep(max(0.0, self.authority.grace_until - time.monotonic()))
            (self.config.data_dir() / RESTORED_MARKER).unlink(missing_ok=True)
            self.restored = False

    def _recovered(self) -> bool:
        """Past the start-up grace: every replica that survived the restart has reported since."""
        return time.monotonic() >= self.authority.grace_until

    async def _accept_new_replicas(self, server_id: str, reports: list[m.ChunkReport]) -> None:
        """Chunks created since the last heartbeat, recorded when their version is current."""
        if not reports:
            return
        watch = self.cluster.versions
        start = watch.since()
        try:
            known = await self.store.versions([r.handle for r in reports])
            # A replica dropped since it was created (found corrupt, or stale) is being deleted there.
            leaving = self.cluster.pending_delete.get(server_id, set()) | self.cluster.deleting.get(server_id, set())
            for report in reports:
                if known.get(report.handle) == report.version and watch.unchanged(report.handle, start) \
                        and report.handle not in leaving:
                    self.cluster.add_location(report.handle, server_id)
        finally:
            watch.done(start)

    def cluster_info(self) -> m.ClusterInfo:
        now = time.monotonic()
        rows = []
        for s in sorted(self.cluster.servers.values(), key=lambda s: s.address):
            phi = s.detector.phi(now)
            rows.append(m.ChunkserverStatus(s.server_id, s.address, "alive" if self.cluster.alive(s.server_id, now)
                                            else "dead", s.capacity_bytes, s.used_bytes, len(s.held),
                                            round(now - (s.detector.last or now), 3), round(phi, 3),
                                            s.metrics_url))
        pending = sum(len(v) for v in self.cluster.pending_delete.values())
        return m.ClusterInfo(rows, self.config.chunk_size, self.config.replication,
                             self.cluster.under_replicated, pending, self.cluster.missing, self.metrics_url)
