"""A chunkserver's replicas: their versions, leases and serial numbers, the changes the next
heartbeat reports, and the checks every handler makes before touching one (the right version,
a live lease, contact with the master). The handlers live in ``datapath`` and ``admin``."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import attrs

from hercules_core import messages as m
from hercules_core.chunkserver.appends import PendingAppend
from hercules_core.chunkstore.fileio import write_atomic
from hercules_core.client.retry import RetryPolicy
from hercules_core.config import Config
from hercules_core.errors import ChecksumMismatch, HerculesError, NotFound, NotPrimary, StaleVersion, Unavailable
from hercules_core.master.lease_tokens import digest
from hercules_core.plugins.types import ChunkStore
from hercules_core.rpc import ConnectionPool

log = logging.getLogger(__name__)
COPY_PIECE = 4 << 20  # re-replication, copy-on-write and the scrubber move chunks in pieces of this size
REPORT_TIMEOUT = 3.0  # a corrupt replica's report to the master; the error that found it waits for it
# How long a secondary keeps asking an unreachable master about a lease token, and how long one
# question may take: a master restart (a second or two) then fails no mutation, and the answer
# still reaches the primary within its peer timeout (at least 5 s).
LEASE_CHECK_FOR, LEASE_CHECK_TIMEOUT = 3.0, 1.5
T = TypeVar("T")
LEASE_CHECK = RetryPolicy(LEASE_CHECK_FOR, first_delay=0.05, max_delay=0.5)

@attrs.define
class ChunkState:
    version: int
    lease_expires: float = 0.0  # monotonic; > now while this server is primary
    serial: int = 0  # last serial assigned (primary) or applied (secondary) at ``version``
    # False when loaded at start-up: serials from before the restart are lost, so the first
    # mutation that arrives is the one to continue from (the ones before it died with the process).
    serial_known: bool = True
    lock: asyncio.Lock = attrs.field(factory=asyncio.Lock)
    applied: asyncio.Condition = attrs.field(factory=asyncio.Condition)
    last_mutation: float = 0.0
    token: str = ""  # the lease token the master gave this server as primary at ``version``
    trusted: str = ""  # the digest of the primary's token the master confirmed at ``version``
    appends: list[PendingAppend] = attrs.field(factory=list)  # waiting for the lock (``appends``)


class Replicas:
    def __init__(self, config: Config, store: ChunkStore, pool: ConnectionPool, address: str) -> None:
        self.config = config
        self.store = store
        self.pool = pool
        self.address = address
        self.server_id = _server_id(config.data_dir())
        self.chunks: dict[int, ChunkState] = {}
        self.added: list[m.ChunkReport] = []  # since the last heartbeat
        self.removed: list[int] = []
        # Monotonic time the last heartbeat acknowledged by the master was sent: reads are served for
        # a lease time from it (the master drops no replica from a version before then).
        self.last_master_contact = -1e9
        self.metrics_url = ""  # told to the master at registration; set once the listener serves
        # The cluster's chunk size, which bounds every write: the master's, told at registration
        # (the local setting only until then).
        self.chunk_size = config.chunk_size
        # Replicas this server found corrupt (handle -> why), until deleted or replaced: the
        # master's ``VerifyChunk`` after this server's own report is answered from here at once
        # (the report may be sent while the chunk's lock is held).
        self.corrupt: dict[int, str] = {}
        # Records appended here as primary, and the mutations that carried them (group commit).
        self.appended_records = 0
        self.append_mutations = 0

    async def load(self) -> list[m.ChunkReport]:
        infos = await self.store.list()
        previous = self.chunks
        self.chunks = {}
        for info in infos:
            state = previous.get(info.handle)
            self.chunks[info.handle] = state if state is not None and state.version == info.version \
                else ChunkState(info.version, serial_known=False)
        return [m.ChunkReport(i.handle, i.version, i.length) for i in infos]

    # -- heartbeat bookkeeping ---------------------------------------------------------------

    def take_changes(self) -> tuple[list[m.ChunkReport], list[int]]:
        added, removed = self.added, self.removed
        self.added, self.removed = [], []
        return added, removed

    def held_leases(self) -> list[m.LeaseExtension]:
        now = time.monotonic()
        return [m.LeaseExtension(h, s.version, s.lease_expires - now) for h, s in self.chunks.items()
                if s.lease_expires > now]

    def full_report(self) -> list[m.ChunkReport]:
        return [m.ChunkReport(h, s.version) for h, s in self.chunks.items() if s.version > 0]

    def leases_to_extend(self) -> list[int]:
        """Chunks this server leads that saw mutations recently and whose lease is half gone."""
        now = time.monotonic()
        half = self.config.lease_seconds / 2
        return [h for h, s in self.chunks.items()
                if now < s.lease_expires < now + half and now - s.last_mutation < half]

    def apply_extensions(self, extensions: list[m.LeaseExtension], sent: float) -> None:
        """Leases extended by the reply to a heartbeat sent at ``sent``: counted from then, so never
        past the master's own end (which counts from the heartbeat's arrival)."""
        for ext in extensions:
            state = self.chunks.get(ext.handle)
            if state is not None and state.version == ext.version:
                state.lease_expires = max(state.lease_expires, sent + ext.seconds)

    async def delete_chunks(self, handles: list[int]) -> None:
        for handle in handles:
            self.corrupt.pop(handle, None)
            state = self.chunks.pop(handle, None)
            if state is not None:
                async with state.lock:
                    await self.store.delete(handle)
            else:
                await self.store.delete(handle)
            self.removed.append(handle)

    def check_serving(self) -> None:
        """Reads go on for a lease time after the last acknowledged heartbeat was sent, so they
        outlive a master restart; the master commits no mutation that leaves this replica out
        before that time has passed (docs/consistency.md), so what is served here is never stale.
        Past it the server may hold stale chunks: refuse until a heartbeat gets through."""
        if time.monotonic() - self.last_master_contact > self.config.lease_seconds:
            raise Unavailable(f"{self.address} has lost contact with the master for longer than a lease")

    # -- checks and corrupt replicas ----------------------------------------------------------

    def state(self, handle: int, version: int, at_least: bool = False) -> ChunkState:
        """The chunk at ``version`` (``at_least``: or a later one, for bytes that never change)."""
        state = self.chunks.get(handle)
        if state is None:
            raise NotFound(f"chunk {handle} is not on {self.address}")
        if state.version != version and not (at_least and state.version > version):
            raise StaleVersion(f"chunk {handle} on {self.address} is at version {state.version}, not {version}")
        return state

    def secondary(self, handle: int, version: int) -> ChunkState:
        """The state a mutation ordered by another server applies to: the version the master last
        granted (never version 0, an incomplete copy), on a server that is not itself the chunk's
        primary (a primary orders its own mutations) and still in contact with the master."""
        state = self.state(handle, version)
        if version == 0:
            raise StaleVersion(f"chunk {handle} on {self.address} is an incomplete copy")
        if state.lease_expires > time.monotonic():
            raise NotPrimary(f"{self.address} is the primary of chunk {handle}: it takes no mutations from peers")
        self.check_serving()
        return state

    async def check_lease(self, state: ChunkState, handle: int, version: int, token: str) -> None:
        """A mutation from a peer carries the token of the lease the master granted the chunk's
        primary at this version (``master/lease_tokens``): asked of the master once per version."""
        if not token:
            raise NotPrimary(f"a mutation of chunk {handle} came to {self.address} without a lease")
        seen = digest(token)
        if state.trusted == seen:
            return

        async def ask() -> None:
            await self.pool.call(self.config.master_addr, m.CheckLease(handle, version, token),
                                 timeout=LEASE_CHECK_TIMEOUT)

        def give_up(exc: Exception) -> Exception:
            return Unavailable(f"cannot confirm the lease on chunk {handle} at version {version} "
                               f"with the master: {exc}")

        try:  # the primary applied the mutation already: a failure here leaves replicas apart
            await LEASE_CHECK.run(ask, give_up=give_up)
        except NotPrimary:
            raise NotPrimary(f"a mutation of chunk {handle} came to {self.address} without the lease "
                             f"the master granted at version {version}") from None
        if state.version == version:
            state.trusted = seen

    def primary(self, handle: int, version: int) -> ChunkState:
        state = self.state(handle, version)
        if state.lease_expires <= time.monotonic():
            raise NotPrimary(f"{self.address} holds no lease on chunk {handle}")
        return state

    async def report_bad(self, handle: int, reason: str) -> None:
        """Tell the master this server's replica of ``handle`` is corrupt, so it drops the replica,
        moves the chunk to a version without it and copies a good one. Awaited before the error
        that found the corruption is answered: the caller's retry then gets locations without it."""
        log.error("chunk %d on %s is corrupt: %s", handle, self.address, reason)
        self.corrupt[handle] = reason
        try:
            await self.pool.call(self.config.master_addr, m.ReportBadReplica(handle, self.address, reason),
                                 timeout=REPORT_TIMEOUT)
        except HerculesError as exc:
            log.warning("could not report corrupt chunk %d to the master: %s", handle, exc)

    async def verify(self, handle: int, rate: float = 0.0) -> None:
        """Read the whole local replica (every block's checksum checked), ``rate`` bytes a second
        at most (0: as fast as the disk goes); ``ChecksumMismatch`` if it is corrupt, which is
        remembered. One piece at a time under the chunk's lock, so no write is seen half done."""
        if handle in self.corrupt:
            raise ChecksumMismatch(self.corrupt[handle])
        forget = getattr(self.store, "forget", None)  # a store keeping sidecars in memory: check the disk's
        if forget is not None:
            forget(handle)
        offset = 0
        while True:
            state = self.chunks.get(handle)
            if state is None:
                raise NotFound(f"chunk {handle} is not on {self.address}")
            try:
                async with state.lock:
                    piece = await self.store.read(handle, offset, COPY_PIECE)
            except ChecksumMismatch as exc:
                self.corrupt[handle] = exc.message
                raise
            offset += len(piece)
            await asyncio.sleep(len(piece) / rate if rate else 0)  # the event loop stays free
            if len(piece) < COPY_PIECE:
                return

    async def reporting(self, handle: int, operation: Awaitable[T]) -> T:
        """``operation`` on the local replica of ``handle``; a checksum failure is reported, then raised."""
        try:
            return await operation
        except ChecksumMismatch as exc:
            await self.report_bad(handle, exc.message)
            raise


def _server_id(root: Path) -> str:
    """A stable identity, kept beside the chunks, so a restarted server is recognised."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "server-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        server_id = uuid.uuid4().hex[:12]
        write_atomic(path, server_id.encode())
        return server_id
