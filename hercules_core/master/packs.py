"""Packed small files, master side (docs/consistency.md, "Packed small files"): which pack is
open for appends, publishing a file as a record of one, and compaction of packs whose records
are mostly garbage.

Compaction is the one place the master itself moves file bytes: it reads each live record of
a pack from a replica and appends it to the open pack through the client's ``PackAppender``,
then repoints the entries in one commit and frees the old chunk. It is rare (a pack is a chunk
of records, compacted once) and bounded by ``pack_garbage``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from hercules_core import messages as m
from hercules_core.client.packed import PackAppender, read_record
from hercules_core.client.retry import DATA_RETRYABLE, RetryPolicy
from hercules_core.errors import HerculesError, InvalidArgument, NotFound
from hercules_core.master.authority import AuthorityPart, ChunkAuthority
from hercules_core.master.validation import check_handle
from hercules_core.paths import normalize, public
from hercules_core.rpc import CallContext, Handler

log = logging.getLogger(__name__)
COMPACT_EVERY = 60.0  # seconds between automatic compaction rounds


class Packs(AuthorityPart):
    def __init__(self, authority: ChunkAuthority) -> None:
        super().__init__(authority)
        self._open: dict[int, tuple[int, int]] = {}  # lane -> (hidden file id, handle) of its open pack
        self._opening = asyncio.Lock()
        self._compacting = asyncio.Lock()
        self._appender = PackAppender(authority.pool, self.target, self.config.chunk_size, self.config.pack_lanes,
                                      RetryPolicy(45.0, max_delay=2.0, retryable=DATA_RETRYABLE))

    def handlers(self) -> dict[type, Handler]:
        return {m.OpenPack: self.open_pack, m.PublishPacked: self.publish,
                m.PublishPackedBatch: self.publish_batch, m.CompactPacks: self.compact_packs}

    async def target(self, full: int = 0, lane: int = 0) -> m.ChunkLocation:
        """The location of ``lane``'s open pack with a live lease; ``full`` (a pack an append found
        full) is sealed first and the lane's next pack opened (made on chunkservers if new)."""
        lane %= self.config.pack_lanes
        async with self._opening:
            if full or lane not in self._open:
                file_id, ref = await self.store.open_pack(self.config.replication, full, lane)
                self._open[lane] = (file_id, ref.handle)
            file_id, handle = self._open[lane]
            ref = await self.store.chunk(file_id, 0)
            if ref is None or ref.handle != handle:  # compacted or dropped meanwhile: open another
                file_id, ref = await self.store.open_pack(self.config.replication, handle, lane)
                self._open[lane] = (file_id, ref.handle)
            ref, lease = await (self.authority.allocate(file_id, 0) if ref.version == 0
                                else self.authority.writable(file_id, ref))
        return self.authority.location(ref, lease)

    async def open_pack(self, msg: m.OpenPack, data: memoryview, ctx: CallContext) -> m.PackTarget:
        if msg.full:
            check_handle(msg.full)
        current = self._open.get(msg.lane % self.config.pack_lanes)
        if msg.full and current is not None and msg.full != current[1]:
            return m.PackTarget(await self.target(0, msg.lane))  # sealed already by another writer's report
        return m.PackTarget(await self.target(msg.full, msg.lane))

    async def publish(self, msg: m.PublishPacked, data: memoryview, ctx: CallContext) -> m.FileInfo:
        return (await self._publish(msg))[0]

    async def _publish(self, msg: m.PublishPacked) -> tuple[m.FileInfo, bool]:
        """The published file, and whether it is leased to the publisher (``msg.holder``)."""
        path = public(normalize(msg.path), "upload into")
        check_handle(msg.handle)
        if not 0 < msg.length <= self.config.chunk_size // 4 or msg.offset < 0 \
                or msg.offset + msg.length > self.config.chunk_size:
            raise InvalidArgument(f"a record of {msg.length} bytes at {msg.offset} does not fit a pack")
        extent = m.PackedExtent(msg.handle, msg.offset, msg.length, msg.crc & 0xFFFFFFFF)
        async with self.leases.mutating([path], fresh=not msg.overwrite) as mutation:
            info, freed = await self.store.publish_packed(path, extent, self.config.replication, msg.overwrite,
                                                          request_id=msg.request_id)
            leased = mutation.grant(msg.holder, path)
        self.cluster.forget(freed.handles)
        return info, leased

    async def publish_batch(self, msg: m.PublishPackedBatch, data: memoryview, ctx: CallContext) -> m.PackedPublished:
        """Every item published as by ``publish``, all at once: the store's group commit runs them
        in one transaction, each in its own savepoint, so one item's error is its own."""
        if not 0 < len(msg.items) <= m.PUBLISH_BATCH_MAX:
            raise InvalidArgument(f"a batch publishes 1 to {m.PUBLISH_BATCH_MAX} files, not {len(msg.items)}")
        outcomes = await asyncio.gather(*(self._publish(item) for item in msg.items), return_exceptions=True)
        files: list[m.FileInfo | None] = []
        errors: list[m.ErrorReply | None] = []
        leased: list[bool] = []
        for outcome in outcomes:
            if isinstance(outcome, HerculesError):
                files.append(None)
                errors.append(m.ErrorReply(outcome.code, outcome.message))
                leased.append(False)
            elif isinstance(outcome, BaseException):
                raise outcome  # not a refusal of one item: the call fails as a whole
            else:
                files.append(outcome[0])
                errors.append(None)
                leased.append(outcome[1])
        return m.PackedPublished(files, errors, leased)

    # -- compaction ------------------------------------------------------------------------------

    async def compact_packs(self, msg: m.CompactPacks, data: memoryview, ctx: CallContext) -> m.PacksCompacted:
        if not 0 <= msg.garbage <= 1:
            raise InvalidArgument("garbage must be a fraction between 0 and 1")
        return await self.compact(msg.garbage or self.config.pack_garbage, seal=True)

    async def compact(self, garbage: float, seal: bool = False) -> m.PacksCompacted:
        """Compact every sealed pack (``seal``: the open one too, sealed first) whose garbage is at
        least ``garbage`` of the bytes its records take."""
        async with self._compacting:
            if seal:
                async with self._opening:
                    for lane, (_, handle) in list(self._open.items()):
                        await self.store.open_pack(self.config.replication, handle, lane)
                        del self._open[lane]
            packs = moved = freed_bytes = 0
            for usage in await self.store.pack_usage():
                if usage.used and (usage.used - usage.live) / usage.used < garbage:
                    continue
                records = await self.store.live_records(usage.handle)
                versions = await self.store.versions([usage.handle])
                source = m.ChunkLocation(usage.handle, 0, versions.get(usage.handle, 0),
                                         [s.address for s in self.cluster.live_replicas(usage.handle)])
                # the copies go to the packs open now: a location kept from before may name a pack
                # sealed since, even this one or one this round has already freed
                self._appender.forget()
                moves = []
                for record in records:
                    payload = await read_record(self.authority.pool, source, record)
                    moves.append((record.offset, await self._appender.append(payload)))
                try:
                    freed = await self.store.repoint_records(usage.handle, moves)
                except NotFound as exc:  # a copy landed in a pack gone meanwhile: the next round retries
                    log.warning("pack %d not compacted: %s", usage.handle, exc)
                    continue
                self.cluster.forget(freed.handles)
                if freed.handles:
                    packs += 1
                    moved += len(moves)
                    freed_bytes += usage.used - usage.live
                    log.info("pack %d compacted: %d live records moved, %d bytes of garbage freed",
                             usage.handle, len(moves), usage.used - usage.live)
            return m.PacksCompacted(packs, moved, freed_bytes)

    async def run(self) -> None:
        """Compact, every ``COMPACT_EVERY`` seconds, the sealed packs past ``pack_garbage``."""
        while True:
            await asyncio.sleep(COMPACT_EVERY)
            if time.monotonic() < self.authority.registering_until:
                continue
            try:
                await self.compact(self.config.pack_garbage)
            except HerculesError as exc:
                log.warning("pack compaction: %s", exc)
            except Exception:  # noqa: BLE001 - keep the loop alive, but say what broke
                log.exception("pack compaction failed")
