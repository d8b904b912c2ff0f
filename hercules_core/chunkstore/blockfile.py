"""``BlockFileStore``: the base of a chunk store keeping one data file and one sidecar per chunk.

A store subclass decides only how block bytes sit in its data file: it implements
``_read_blocks`` (verified bytes of whole blocks), ``_put_blocks`` (make new block bytes
durable) and ``_expected_size``, and names its ``ChunkMeta`` subclass for any per-block columns
of its own. This class does the rest: argument checks, the per-handle lock, one thread hop per
operation, read-modify-write of boundary blocks, CRC32C per block, sidecar commits, the
start-up scan (``recovery``), the sidecars and open files kept in memory and the running usage
total (``memory``).

Crash safety rests on one ordering: block bytes are made durable first, then the sidecar
record that covers them. A crash in between leaves the old record, whose CRCs either still
match (the old chunk, intact) or expose the torn block as ``ChecksumMismatch``. A new chunk has
no old sidecar to keep: its files are created in place and one directory fsync makes them
durable before the creation is acknowledged (``_create_sync``).
"""

from __future__ import annotations

import abc
import asyncio
import errno
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from hercules_core.chunkstore.checksums import block_crcs
from hercules_core.chunkstore.commits import SidecarLogs
from hercules_core.chunkstore.fileio import (TMP_SUFFIX, WouldBlock, as_byte_view, fsync_dir,
                                            page_cache_only, pwrite_all, run_in_thread, unlink_quiet)
from hercules_core.chunkstore.layout import ChunkLayout
from hercules_core.chunkstore.memory import (
    DEFAULT_OPEN_FILES,
    DEFAULT_SIDECAR_CACHE_BYTES,
    OpenFiles,
    OpenLogs,
    SidecarCache,
    UsedBytes,
    option,
)
from hercules_core.chunkstore.recovery import list_chunks, startup_scan
from hercules_core.chunkstore.sidecar import ChunkMeta, create_sidecar, seal
from hercules_core.errors import ChecksumMismatch, ConfigError, InvalidArgument, NoSpace, Unavailable
from hercules_core.keyed_locks import KeyedLocks
from hercules_core.plugins.types import Buffer, ChunkInfo, StoreContext, StoreUsage

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=ChunkMeta)

DEFAULT_MAX_CHUNK_BYTES = 1 << 30  # bounds the zero-fill buffer a bogus offset could ask for
LOOP_READ_BYTES = 256 << 10  # reads up to this size are tried on the event loop first (``_read_on_loop``)


def _check_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArgument(f"{name} must be a non-negative integer, got {value!r}")
    return value


class BlockFileStore(SidecarLogs[M], abc.ABC):
    """A ``ChunkStore`` keeping one data file and one sidecar per chunk (see ``layout``).

    Each public operation takes the handle's lock and makes exactly one thread hop into a
    plain synchronous ``_*_sync`` method doing all of its file work. The store is the only
    writer of its files, so it keeps the decoded sidecars and open data files of recently used
    chunks in memory (``memory``): each change it makes updates that copy as it commits the
    change on disk, so the copy cannot go stale, and a read is one ``pread`` of the data plus
    its CRC check. Data is never trusted from memory; the sidecar on disk is read again at
    start-up, by a full ``list`` and after ``forget`` (the scrubber's way to re-check it).
    """

    NAME: ClassVar[str]
    DATA_SUFFIX: ClassVar[str]
    MAGIC: ClassVar[bytes]
    META: ClassVar[type[ChunkMeta]]
    JOURNAL_LIMIT: ClassVar[int] = 0
    """Writes changing up to this many bytes of a chunk that holds at least as many are
    journalled: their bytes go into the sidecar record too, one fdatasync instead of two
    (``_put_unsynced``). A smaller chunk is not, since the copy would double its disk use. 0:
    never. Only for a store whose data file holds chunk bytes as is, at their own offsets, since
    a journal is replayed with ``pwrite``."""

    def __init__(self, ctx: StoreContext) -> None:
        self.root = Path(ctx.root_dir)
        self.block_size = ctx.block_size
        if not isinstance(self.block_size, int) or self.block_size <= 0:
            raise ConfigError(f"block_size must be a positive integer, got {self.block_size!r}")
        options = dict(ctx.options)
        capacity = options.get("capacity_bytes")
        if capacity is not None and (not isinstance(capacity, int) or capacity < 0):
            raise ConfigError(f"capacity_bytes must be a non-negative integer, got {capacity!r}")
        self._capacity: int | None = capacity
        max_chunk = options.get("max_chunk_bytes", DEFAULT_MAX_CHUNK_BYTES)
        if not isinstance(max_chunk, int) or max_chunk <= 0:
            raise ConfigError(f"max_chunk_bytes must be a positive integer, got {max_chunk!r}")
        self._max_chunk: int = max_chunk
        self._sidecars: SidecarCache[M] = SidecarCache(
            option(options, "sidecar_cache_bytes", DEFAULT_SIDECAR_CACHE_BYTES))
        self._files: OpenFiles[int] = OpenFiles(option(options, "open_files", DEFAULT_OPEN_FILES))
        self._logs = OpenLogs(self._files.limit)  # sidecars kept open, as many as data files
        self.layout = ChunkLayout(self.root, self.DATA_SUFFIX)
        self.session = secrets.token_hex(4)  # tags this session's tmp files (see ``write_atomic``)
        self._own_tmp = f".{self.session}{TMP_SUFFIX}"
        self._locks: KeyedLocks[int] = KeyedLocks()
        self._used = UsedBytes()
        self._rewrite: set[int] = set()  # sidecars whose log ended in a torn record
        self._journaled: set[int] = set()  # sidecars whose log holds journal records
        self._closed = False
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @classmethod
    @asynccontextmanager
    async def open(cls, ctx: StoreContext) -> AsyncIterator[Self]:
        """Scan the directory (one thread hop), yield the store, wait for in-flight work on exit."""
        store = cls(ctx)
        store._used.add(await run_in_thread(startup_scan, store))
        try:
            yield store
        finally:
            store._closed = True
            while store._active:
                await store._idle.wait()
            store._files.close_all()
            store._logs.close_all()
            store._sidecars.clear()

    # -- store-specific parts -------------------------------------------------------

    @abc.abstractmethod
    def _read_blocks(self, fd: int, handle: int, meta: M, first: int, last: int) -> bytes:
        """Blocks ``first..last`` (the last may be short), every one verified by CRC32C."""

    @abc.abstractmethod
    def _put_blocks(self, fd: int, handle: int, meta: M, first: int, buf: bytearray,
                    dirty: tuple[int, int]) -> Path | None:
        """Make ``buf`` (blocks from ``first`` on; chunk bytes ``dirty`` changed) durable.

        Update the store's own columns in ``meta`` (not ``crcs``/``length``); the sidecar
        is written afterwards by the caller. Return a data file the new sidecar supersedes
        (deleted once it is committed), or ``None``.
        """

    def _put_unsynced(self, fd: int, buf: memoryview, offset: int) -> None:
        """A journalled write (``JOURNAL_LIMIT``): ``buf`` at chunk ``offset``, not synced (its
        sidecar record carries the bytes), so a plain ``pwrite``. Also how a journal is replayed."""
        pwrite_all(fd, buf, offset)

    @abc.abstractmethod
    def _expected_size(self, meta: M) -> int:
        """Data-file bytes the sidecar accounts for; anything past it is a crashed write's."""

    # -- synchronous operations (each runs whole on one executor thread) -------------

    def _create_sync(self, handle: int, version: int) -> None:
        """A new chunk: its empty data file, then its sidecar (one fdatasync), then one fsync of
        the directory, which makes both names durable before the creation is acknowledged.

        A crash before that fsync returned leaves an unacknowledged creation in one of these
        shapes, each removed by the start-up scan (``recovery``): a data file without a sidecar,
        a sidecar with no intact record over an empty data file, or a sidecar of an empty chunk
        without a data file.
        """
        meta_path = self.layout.meta_path(handle)
        if meta_path.exists():  # idempotent: the chunk keeps its bytes, takes the version
            self._set_version_sync(handle, version)
            return
        self.forget(handle)
        directory = self.layout.dir(handle)
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            fsync_dir(self.layout.chunks)
        path = self._data_path(handle, 0)
        self._used.add(-unlink_quiet(path))
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
        try:
            create_sidecar(meta_path, seal(self.MAGIC, self.META(version, 0).encode()))
        except BaseException:
            unlink_quiet(path)
            raise
        try:
            fsync_dir(directory)
        except BaseException:
            unlink_quiet(meta_path)  # not durable, so not created: a retry starts afresh
            unlink_quiet(path)
            raise
        self._forget_torn(handle)
        self._sidecars.put(handle, self.META(version, 0))  # type: ignore[arg-type]

    def _write_sync(self, handle: int, offset: int, data: memoryview) -> int:
        meta = self._meta(handle)
        old_len = meta.length
        end = offset + len(data)
        start = min(offset, old_len)  # a gap [old_len, offset) is written as zeros
        if end <= start:
            return old_len
        bs = self.block_size
        new_len = max(old_len, end)
        first, last = start // bs, (end - 1) // bs
        base = first * bs
        buf = bytearray(min((last + 1) * bs, new_len) - base)
        fd = self._open_data(handle, meta)
        old_size = os.fstat(fd).st_size
        superseded: Path | None = None
        try:
            # Read-modify only the boundary blocks that keep old bytes, verifying them first
            # so a corrupt block is never re-checksummed into a "valid" one.
            if base < old_len and (start > base or end < min(base + bs, old_len)):
                head = self._read_blocks(fd, handle, meta, first, first)
                buf[:len(head)] = head
            tail_base = last * bs
            if last != first and end < min(tail_base + bs, old_len):
                tail = self._read_blocks(fd, handle, meta, last, last)
                buf[tail_base - base:tail_base - base + len(tail)] = tail
            buf[offset - base:end - base] = data
            journal = None
            if end - start <= self.JOURNAL_LIMIT <= old_len:  # a smaller chunk: a copy would double it
                journal = (start, memoryview(buf)[start - base:end - base])
                self._put_unsynced(fd, journal[1], start)
            else:
                superseded = self._put_blocks(fd, handle, meta, first, buf, (start, end))
            new_crcs = block_crcs(buf, bs)
            meta.crcs[first:first + len(new_crcs)] = new_crcs
            meta.length = new_len
            self._save(handle, meta, fd, journal, overwrote=start < old_len)
        except BaseException:
            self._sidecars.drop(handle)  # ``meta`` may be half updated: the disk has the truth
            if superseded is not None:  # a rewritten data file the sidecar never adopted
                unlink_quiet(self._data_path(handle, meta.gen))
            self._used.add(os.fstat(fd).st_size - old_size)
            os.close(fd)
            raise
        if superseded is not None:
            os.close(fd)
            unlink_quiet(superseded)
            self._used.add(self._data_path(handle, meta.gen).stat().st_size - old_size)
        else:
            self._used.add(os.fstat(fd).st_size - old_size)
            self._files.give(handle, meta.gen, fd)
        return new_len

    def _read_sync(self, handle: int, offset: int, length: int) -> bytes:
        meta = self._meta(handle)
        return self._read_at(handle, meta, self._open_data(handle, meta), offset, length)

    def _read_on_loop(self, handle: int, offset: int, length: int) -> bytes | None:
        """The read done on the event loop when all it needs is in memory: the sidecar kept, the
        data file open, its blocks in the page cache. Else ``None``, and the caller takes a
        thread: for a small read the hop costs more CPU than the read itself."""
        meta = None if self._locks.held(handle) else self._sidecars.get(handle)
        fd = None if meta is None else self._files.take(handle, meta.gen)
        if meta is None or fd is None:
            return None
        try:
            with page_cache_only():
                return self._read_at(handle, meta, fd, offset, length)
        except WouldBlock:
            return None

    def _read_at(self, handle: int, meta: M, fd: int, offset: int, length: int) -> bytes:
        """Read with ``fd`` (the caller's, given back here, or closed on an error)."""
        end = min(offset + length, meta.length)
        bs = self.block_size
        first, last = offset // bs, (end - 1) // bs
        try:
            blocks = self._read_blocks(fd, handle, meta, first, last) if end > offset else b""
        except WouldBlock:
            self._files.give(handle, meta.gen, fd)
            raise
        except BaseException:
            os.close(fd)
            raise
        self._files.give(handle, meta.gen, fd)
        if end <= offset:
            return b""
        skip = offset - first * bs
        if skip == 0 and len(blocks) == end - offset:
            return blocks
        return blocks[skip:skip + end - offset]

    def _info_sync(self, handle: int) -> ChunkInfo:
        meta = self._meta(handle)
        return ChunkInfo(handle, meta.version, meta.length)

    def _set_version_sync(self, handle: int, version: int) -> None:
        meta = self._meta(handle)
        meta.version = version
        self._save(handle, meta)

    def _delete_sync(self, handle: int) -> None:
        self.forget(handle)
        directory = self.layout.dir(handle)
        unlink_quiet(self.layout.meta_path(handle))  # first: the chunk is gone the moment its sidecar is
        self._forget_torn(handle)
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return
        freed = 0
        for name in names:  # every generation, even if the sidecar was unreadable
            parsed = self.layout.parse_data(name)
            if parsed is not None and parsed[0] == handle:
                freed += unlink_quiet(directory / name)
        fsync_dir(directory)
        self._used.add(-freed)

    def _usage_sync(self) -> StoreUsage:
        used = self._used.value
        if self._capacity is not None:
            return StoreUsage(used, self._capacity)
        stat = os.statvfs(self.root)
        return StoreUsage(used, stat.f_bavail * stat.f_frsize + used)

    # -- the async ChunkStore surface --------------------------------------------------

    async def _run(self, handle: int | None, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise Unavailable(f"chunk store {self.root} is closed")
        self._active += 1
        self._idle.clear()
        try:
            if handle is None:
                return await run_in_thread(fn, *args)
            async with self._locks.hold(handle):
                return await run_in_thread(fn, *args)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise NoSpace(f"chunk store {self.root}: {exc.strerror}") from exc
            raise
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    async def create(self, handle: int, version: int) -> None:
        """Make an empty chunk; for an existing one only set its version (idempotent)."""
        await self._run(_check_int("handle", handle), self._create_sync, handle, _check_int("version", version))

    async def write(self, handle: int, offset: int, data: Buffer) -> int:
        _check_int("handle", handle)
        _check_int("offset", offset)
        view = as_byte_view(data)
        if offset + len(view) > self._max_chunk:
            raise InvalidArgument(f"write to chunk {handle} ends at {offset + len(view)}, "
                                  f"past the {self._max_chunk}-byte limit")
        return await self._run(handle, self._write_sync, handle, offset, view)

    async def read(self, handle: int, offset: int, length: int) -> bytes:
        _check_int("handle", handle)
        _check_int("offset", offset)
        _check_int("length", length)
        if length <= LOOP_READ_BYTES and not self._closed:
            data = self._read_on_loop(handle, offset, length)
            if data is not None:
                return data
        return await self._run(handle, self._read_sync, handle, offset, length)

    async def info(self, handle: int) -> ChunkInfo:
        meta = None if self._closed or self._locks.held(_check_int("handle", handle)) else self._sidecars.get(handle)
        if meta is not None:  # kept in memory, no change under way: no thread needed
            return ChunkInfo(handle, meta.version, meta.length)
        return await self._run(handle, self._info_sync, handle)

    async def set_version(self, handle: int, version: int) -> None:
        await self._run(_check_int("handle", handle), self._set_version_sync, handle,
                        _check_int("version", version))

    async def delete(self, handle: int) -> None:
        """Remove the chunk's files; a missing chunk is fine."""
        await self._run(_check_int("handle", handle), self._delete_sync, handle)

    async def usage(self) -> StoreUsage:
        return await self._run(None, self._usage_sync)

    async def list(self) -> Sequence[ChunkInfo]:  # last: the name shadows the builtin in this class
        return await self._run(None, list_chunks, self)


__all__ = ["DEFAULT_MAX_CHUNK_BYTES", "BlockFileStore"]
