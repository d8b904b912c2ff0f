"""Packed small files, client side (docs/consistency.md, "Packed small files").

A small whole-file upload becomes one record appended to the open pack (``PackAppender``: the
record-append path, with the pack's write location cached between files) and one master call
that publishes the entry with its extent. A read of a packed file is the extent read from one
replica, checked against the record's CRC32C. The master's compaction appends live records
through the same ``PackAppender``.
"""

from __future__ import annotations

import collections
import itertools
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import attrs

from hercules_core import messages as m
from hercules_core.chunkstore.checksums import crc
from hercules_core.client.appends import append_record
from hercules_core.client.namespace import request_id
from hercules_core.client.pieces import UploadSource, rechunk
from hercules_core.client.publishing import PublishQueue
from hercules_core.client.retry import RetryPolicy
from hercules_core.errors import ChecksumMismatch, ChunkFull, HerculesError, NotFound, StaleVersion, Unavailable
from hercules_core.plugins.types import Buffer
from hercules_core.rpc import ConnectionPool

if TYPE_CHECKING:
    from hercules_core.client.client import Client
    from hercules_core.client.entry_cache import EntryCache

READ_TIMEOUT = 10.0
LEASE_LEFT = 2.0  # seconds of lease a cached pack location must have left, else it is asked again
PUBLISH_TRIES = 3
EXTENTS_KEPT = 4096  # extents learnt by ``open`` (by file id): the least recently used are forgotten



class PackGone(NotFound):
    """The pack a record was read from no longer exists (compacted away): asking again where the
    file's bytes are, not retrying the pack, is what can help."""


# (full pack handle or 0, lane) -> that lane's open pack
OpenPack = Callable[[int, int], Awaitable[m.ChunkLocation]]


class PackAppender:
    """Appends records to the open pack: push along its chain, then AppendChunk at the primary;
    a full pack is reported (``open_pack(handle, lane)`` seals it and names the next one). Each
    append takes the next of ``lanes`` open packs (the master's ``pack_lanes``)."""

    def __init__(self, pool: ConnectionPool, open_pack: OpenPack, chunk_size: int, lanes: int,
                 policy: RetryPolicy) -> None:
        self.pool = pool
        self.open_pack = open_pack
        self.chunk_size = chunk_size
        self.lanes = max(1, lanes)
        self.policy = policy
        self._locations: dict[int, m.ChunkLocation] = {}
        self._next_lane = itertools.count(random.randrange(self.lanes))

    def forget(self) -> None:
        self._locations.clear()

    async def _target(self, lane: int, full: int = 0) -> m.ChunkLocation:
        loc = self._locations.get(lane)
        if loc is None or full or loc.lease_expires - time.time() < LEASE_LEFT:
            loc = await self.open_pack(full, lane)
            self._locations[lane] = loc
        return loc

    async def append(self, data: Buffer) -> m.PackedExtent:
        """Store ``data`` as one record; its extent (the try that succeeded; an earlier failed try
        may have left a copy nobody names: garbage)."""
        return (await self.append_at(data))[0]

    async def append_at(self, data: Buffer) -> tuple[m.PackedExtent, m.ChunkLocation]:
        """``append``, and the location of the pack the record went to."""
        record_crc = crc(data)
        lane = next(self._next_lane) % self.lanes

        async def attempt() -> tuple[m.PackedExtent, m.ChunkLocation]:
            full = 0
            while True:
                loc = await self._target(lane, full)
                try:
                    offset = await append_record(self.pool, loc, data, self.chunk_size)
                except ChunkFull:
                    full = loc.handle
                    continue
                return m.PackedExtent(loc.handle, offset, len(data), record_crc), loc

        def failed(exc: Exception) -> None:
            self._locations.pop(lane, None)  # the lease moved or a replica went: ask again

        def give_up(exc: Exception) -> Exception:
            return Unavailable(f"append to a pack: giving up after retries: {exc}")

        return await self.policy.run(attempt, give_up=give_up, on_error=failed)


async def read_record(pool: ConnectionPool, loc: m.ChunkLocation, extent: m.PackedExtent,
                      order: Callable[[list[str]], list[str]] = list,
                      bad: Callable[[str, Exception], Awaitable[None]] | None = None) -> Buffer:
    """The record's bytes from the first replica (in ``order``) that has them whole and intact:
    the answer's own buffer (a 1 MiB record is not copied again)."""
    errors: list[Exception] = []
    for replica in order(list(loc.replicas)):
        try:
            _, data = await pool.call(replica, m.ReadChunk(extent.handle, loc.version, extent.offset,
                                                           extent.length, at_least=True), timeout=READ_TIMEOUT)
        except ChecksumMismatch as exc:
            errors.append(exc)
            if bad is not None:
                await bad(replica, exc)
            continue
        except (Unavailable, StaleVersion, NotFound) as exc:
            errors.append(exc)
            continue
        if len(data) != extent.length or crc(data) != extent.crc:
            exc = ChecksumMismatch(f"record at {extent.offset} of pack {extent.handle} on {replica} "
                                   f"does not match its checksum")
            errors.append(exc)
            if bad is not None:
                await bad(replica, exc)
            continue
        return data
    raise errors[-1] if errors else Unavailable(f"pack {extent.handle} has no live replica")


async def gather_small(source: UploadSource, limit: int) -> tuple[bytes | None, UploadSource]:
    """The whole of ``source`` if it holds at most ``limit`` bytes (else ``None``), and a source
    that yields the same bytes again for a normal upload."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source)
        return (bytes(view) if view.nbytes <= limit else None), source
    if hasattr(source, "read"):
        return None, source
    iterator = rechunk(source, lambda: limit + 1, None).__aiter__()
    first = b""
    try:
        first = bytes(await iterator.__anext__())
    except StopAsyncIteration:
        pass
    if len(first) <= limit:
        return first, first

    async def again() -> AsyncIterator[Buffer]:
        yield first
        async for piece in iterator:
            yield piece

    return None, again()


class PackedFiles:
    """``Client`` methods for packed files: publishing a small upload as a record, reading one,
    turning one into a normal file before a range write or an append."""

    pack_threshold = 0  # the master's setting, learnt from its Ping (0: packing off)
    pack_lanes = 1  # the master's too: open packs appends spread over
    replication = 0  # the master's default: packs have it, so only such files are packed
    _appender: PackAppender | None = None
    _publisher: PublishQueue | None = None
    _extents: collections.OrderedDict[int, tuple[m.PackedExtent, m.ChunkLocation]]
    entries: EntryCache | None = None

    def _packs(self: Client) -> PackAppender:
        if self._appender is None:
            async def open_pack(full: int, lane: int) -> m.ChunkLocation:
                return (await self._master(m.OpenPack(full, lane))).location

            self._appender = PackAppender(self.pool, open_pack, self.chunk_size, self.pack_lanes, self.data_policy)
        return self._appender

    def _publishes(self: Client) -> PublishQueue:
        if self._publisher is None:
            self._publisher = PublishQueue(self._master)
        return self._publisher

    def _packable(self: Client, size: int | None, replication: int | None) -> bool:
        return (0 < (size or 0) <= self.pack_threshold
                and replication in (None, 0, self.replication))

    async def _upload_packed(self: Client, path: str, data: bytes, overwrite: bool) -> m.FileInfo:
        entries = self.entries
        for _ in range(PUBLISH_TRIES):
            extent, loc = await self._packs().append_at(data)
            seen = entries.revocations if entries is not None else 0
            try:
                info, leased = await self._publishes().publish(m.PublishPacked(
                    path, extent.handle, extent.offset, extent.length, extent.crc, overwrite, request_id(),
                    holder=entries.holder if entries is not None else ""))
            except NotFound:  # the pack was compacted away between the append and the publish
                self._packs().forget()
                continue
            if leased and entries is not None:  # read-after-write through this client: no Locate
                entries.put(info.path, m.Located(info, [loc], extent, leased=True), seen)
            return info
        raise Unavailable(f"{path}: the pack went away {PUBLISH_TRIES} times in a row")

    # -- leased entries (client/entry_cache.py) --------------------------------------------------

    async def _locate(self: Client, path: str, index: int = 0, count: int = 1) -> m.Located:
        """``Locate`` at the master; a packed file's entry, leased to us, is kept for later reads."""
        entries = self.entries
        if entries is None:
            located: m.Located = await self._master(m.Locate(path, index, count))
            return located
        seen = entries.revocations
        located = await self._master(m.Locate(path, index, count, holder=entries.holder))
        if located.leased:
            entries.put(located.info.path, located, seen)
        return located

    async def _extent_of(self: Client, info: m.FileInfo) -> tuple[m.PackedExtent, m.ChunkLocation] | None:
        """Where a packed file's bytes are: as the ``open`` before learnt, or asked again (a file
        of that shape, with size but no chunks, is packed or sparse)."""
        extents = getattr(self, "_extents", None)
        known = extents.get(info.file_id) if extents else None
        if known is not None or info.is_dir or info.chunk_count or not info.size:
            return known
        located = await self._locate(info.path)
        if located.extent is None or located.info.file_id != info.file_id:
            return None
        self._learn_extent(located)
        return located.extent, located.chunks[0]

    async def _read_extent(self: Client, info: m.FileInfo,
                           packed: tuple[m.PackedExtent, m.ChunkLocation]) -> Buffer:
        """The record's bytes; when a cached entry led nowhere, or the pack is gone (compacted
        away since the entry was learnt), the master is asked once where they are now."""
        try:
            return await self._read_packed(*packed)
        except HerculesError as exc:
            dropped = self.entries is not None and self.entries.drop(info.path)
            if not dropped and not isinstance(exc, PackGone):
                raise
        located = await self._locate(info.path)
        if located.extent is None or located.info.file_id != info.file_id:
            raise NotFound(f"{info.path}: replaced or removed while it was being read")
        self._learn_extent(located)
        return await self._read_packed(located.extent, located.chunks[0])

    def _learn_extent(self: Client, located: m.Located) -> None:
        if located.extent is None:
            return
        if not hasattr(self, "_extents"):
            self._extents = collections.OrderedDict()
        self._extents[located.info.file_id] = (located.extent, located.chunks[0])
        self._extents.move_to_end(located.info.file_id)
        while len(self._extents) > EXTENTS_KEPT:
            self._extents.popitem(last=False)

    async def _read_packed(self: Client, extent: m.PackedExtent, loc: m.ChunkLocation) -> Buffer:
        async def bad(replica: str, exc: Exception) -> None:
            self.locations.avoid(replica)
            await self._report_bad(extent.handle, replica, str(exc))

        where: list[m.ChunkLocation] = [loc]

        async def attempt() -> Buffer:
            if not where:  # the last try proved the locations wrong (a replica dropped, a new version)
                try:
                    where.append(await self.chunk_servers(extent.handle))
                except NotFound as exc:
                    raise PackGone(f"pack {extent.handle} is gone: {exc.message}") from exc
            return await read_record(self.pool, where[0], extent, self.locations.read_order, bad)

        def give_up(exc: Exception) -> Exception:
            return Unavailable(f"pack {extent.handle}: reading the record at {extent.offset} gave up after "
                               f"retries: {exc}")

        policy = attrs.evolve(self.data_policy, fatal=(*self.data_policy.fatal, PackGone))
        return await policy.run(attempt, give_up=give_up, on_error=lambda exc: where.clear())

    async def compact_packs(self: Client, garbage: float = 0.0) -> m.PacksCompacted:
        """Seal the open pack and compact every pack whose garbage reaches ``garbage`` (0: the
        master's ``pack_garbage``) now, as the master does on its own every minute."""
        return await self._master(m.CompactPacks(garbage))

    async def _writable(self: Client, path: str) -> m.FileInfo:
        """The file at ``path`` for a range write or an append: a packed one is first made a normal
        file (its bytes uploaded again, unpacked, over it: one publish)."""
        info = await self._file(path)
        if info.chunk_count or not info.size:
            return info
        located: m.Located = await self._master(m.Locate(info.path, 0, 1))
        if located.extent is None:
            return info
        data = await self._read_packed(located.extent, located.chunks[0])
        await self.upload(info.path, data, overwrite=True, replication=info.replication, pack=False)
        return await self._file(path)
