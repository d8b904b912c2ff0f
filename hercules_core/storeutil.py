"""What the file-backed chunk stores (``fs``, ``zstd``) share, written once.

Both keep, per chunk, one data file plus one metadata sidecar (version, length, data-file
generation, per-block CRC32C and store-specific per-block columns) under
``<root>/chunks/<handle % 256 as hex>/``. They differ only in how block bytes sit in the data
file, so ``BlockFileStore`` owns everything else: layout, atomic sidecars, the per-handle locks,
one thread hop per operation, the start-up scan and the running usage total. A store subclass
implements ``_read_blocks`` (verified bytes of whole blocks) and ``_put_blocks`` (make new
block bytes durable).

Crash safety rests on one ordering: block bytes are made durable first, then the sidecar is
replaced atomically. A crash in between leaves the old sidecar, whose CRCs either still match
(the old chunk, intact) or expose the torn block as ``ChecksumMismatch``. A new chunk has no old
sidecar to keep: its files are created in place and one directory fsync makes them durable
before the creation is acknowledged (``_create_sync``).
"""

from __future__ import annotations

import abc
import asyncio
import errno
import functools
import json
import logging
import os
import secrets
import struct
import sys
import threading
from array import array
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, TypeVar

import attrs

from hercules_core.checksums import block_crcs, crc
from hercules_core.fsync import fsync_dir
from hercules_core.errors import (
    ChecksumMismatch,
    ConfigError,
    InvalidArgument,
    NoSpace,
    NotFound,
    Unavailable,
)
from hercules_core.plugins.types import Buffer, ChunkInfo, StoreContext, StoreUsage

log = logging.getLogger(__name__)

T = TypeVar("T")

CHUNKS_DIR = "chunks"
META_SUFFIX = ".meta"
TMP_SUFFIX = ".tmp"
FORMAT_FILE = "FORMAT"
FORMAT_VERSION = 1
DEFAULT_MAX_CHUNK_BYTES = 1 << 30  # bounds the zero-fill buffer a bogus offset could ask for

# --- small file helpers ------------------------------------------------------------


def datasync(fd: int) -> None:
    """fdatasync where the OS has it: data and size reach the disk, timestamps need not."""
    getattr(os, "fdatasync", os.fsync)(fd)


def pwrite_all(fd: int, data: Buffer, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def pread_upto(fd: int, size: int, offset: int) -> bytes:
    """``size`` bytes from ``offset``; shorter only when the file ends first."""
    parts: list[bytes] = []
    while size > 0:
        piece = os.pread(fd, size, offset)
        if not piece:
            break
        parts.append(piece)
        size -= len(piece)
        offset += len(piece)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def unlink_quiet(path: Path) -> int:
    """Remove ``path`` if it exists; return the bytes freed."""
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return 0
    return size


def write_atomic(path: Path, payload: bytes, tag: str) -> None:
    """Write ``path`` so a crash leaves the old or the new content, never a mix.

    tmp file + fsync + ``os.replace`` + directory fsync; ``tag`` names this store session so a
    scan can tell its own in-flight tmp files from leftovers of a previous run.
    """
    tmp = path.with_name(f"{path.name}.{tag}{TMP_SUFFIX}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            pwrite_all(fd, payload, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        unlink_quiet(tmp)
        raise
    fsync_dir(path.parent)


def as_byte_view(data: Buffer) -> memoryview:
    """A flat unsigned-byte view of any buffer (callers may pass views of other formats)."""
    try:
        view = memoryview(data)
    except TypeError:
        raise InvalidArgument(f"chunk data must be bytes-like, not {type(data).__name__}") from None
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
    return view


# --- sidecars ----------------------------------------------------------------------

_SEAL = struct.Struct("<4sI")  # store magic, CRC32C of the body
_META_HEAD = struct.Struct("<QQQI")  # version, length, data-file generation, block count
_BIG_ENDIAN = sys.byteorder == "big"


_RECORD = struct.Struct("<I")  # a sidecar is a log of length-prefixed sealed records
SIDECAR_LOG_LIMIT = 64 << 10  # past this a sidecar is rewritten to its newest record


def commit_sidecar(path: Path, sealed: bytes, tag: str) -> None:
    """Make a new sidecar record durable with one fdatasync: appended to the sidecar's log while
    it is small, else the file is replaced (atomically) by just this record.

    A crash mid-append leaves a torn last record, which ``newest_record`` skips: the chunk then
    reads with its previous metadata, and any block written since fails its CRC (never passes).
    """
    record = _RECORD.pack(len(sealed)) + sealed
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        size = -1
    if size < 0 or size + len(record) > max(SIDECAR_LOG_LIMIT, 4 * len(record)):
        write_atomic(path, record, tag)
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        view = memoryview(record)
        while view:
            view = view[os.write(fd, view):]
        datasync(fd)
    finally:
        os.close(fd)


def create_sidecar(path: Path, sealed: bytes) -> None:
    """Write the first record of a sidecar that does not exist yet: ``O_EXCL`` + one fdatasync.

    No tmp file or rename is needed, since there is no old content to keep: a crash leaves no
    file, an empty one or a torn record, which ``newest_record`` refuses. The caller makes the
    file's directory entry durable (``fsync_dir``) before it reports the chunk as created.
    """
    record = _RECORD.pack(len(sealed)) + sealed
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        pwrite_all(fd, record, 0)
        datasync(fd)
    except BaseException:
        os.close(fd)
        unlink_quiet(path)
        raise
    os.close(fd)


def newest_record(magic: bytes, raw: bytes, what: str) -> tuple[bytes, bool]:
    """The body of a sidecar's last intact record, and whether the log ended cleanly.

    Only a torn *tail* is forgiven; the next commit must then rewrite the file, since an
    append after a torn record could not be found again.
    """
    pos, body = 0, None
    while pos < len(raw):
        if pos + _RECORD.size > len(raw):
            break  # torn length prefix at the tail
        (size,) = _RECORD.unpack_from(raw, pos)
        end = pos + _RECORD.size + size
        if end > len(raw):
            break  # torn record at the tail
        try:
            body = unseal(magic, raw[pos + _RECORD.size:end], what)
        except ChecksumMismatch:
            if end == len(raw) and body is not None:
                break  # the last append was cut short by a crash
            raise
        pos = end
    if body is None:
        raise ChecksumMismatch(f"{what}: metadata sidecar is truncated")
    return body, pos == len(raw)


def seal(magic: bytes, body: bytes) -> bytes:
    """Frame a sidecar body with the store's magic and its own CRC32C (bit rot in metadata shows)."""
    return _SEAL.pack(magic, crc(body)) + body


def unseal(magic: bytes, raw: bytes, what: str) -> bytes:
    if len(raw) < _SEAL.size:
        raise ChecksumMismatch(f"{what}: metadata sidecar is truncated")
    found, expected = _SEAL.unpack_from(raw)
    if found != magic:
        raise ChecksumMismatch(f"{what}: metadata sidecar has magic {found!r}, expected {magic!r}")
    body = raw[_SEAL.size:]
    if crc(body) != expected:
        raise ChecksumMismatch(f"{what}: metadata sidecar fails its CRC32C check")
    return body


@attrs.define
class ChunkMeta:
    """A sidecar's content: version, length, data-file generation and one CRC32C per block.

    Stores add per-block columns by subclassing and extending ``COLUMNS`` (attribute name,
    ``array`` typecode); every column has one entry per block and is stored little-endian.
    """

    COLUMNS: ClassVar[tuple[tuple[str, str], ...]] = (("crcs", "I"),)

    version: int
    length: int
    gen: int = 0
    crcs: list[int] = attrs.field(factory=list)

    def encode(self) -> bytes:
        count = len(self.crcs)
        parts = [_META_HEAD.pack(self.version, self.length, self.gen, count)]
        for name, code in self.COLUMNS:
            column = array(code, getattr(self, name))
            if len(column) != count:
                raise ValueError(f"sidecar column {name} has {len(column)} entries, expected {count}")
            if _BIG_ENDIAN:
                column.byteswap()
            parts.append(column.tobytes())
        return b"".join(parts)

    @classmethod
    def decode(cls, body: bytes, what: str) -> Self:
        try:
            version, length, gen, count = _META_HEAD.unpack_from(body)
            pos = _META_HEAD.size
            columns: dict[str, list[int]] = {}
            for name, code in cls.COLUMNS:
                column = array(code)
                end = pos + count * column.itemsize
                if end > len(body):
                    raise ValueError("short column")
                column.frombytes(body[pos:end])
                if _BIG_ENDIAN:
                    column.byteswap()
                columns[name] = column.tolist()
                pos = end
            if pos != len(body):
                raise ValueError("trailing bytes")
        except (struct.error, ValueError) as exc:
            raise ChecksumMismatch(f"{what}: malformed metadata sidecar ({exc})") from None
        return cls(version, length, gen, **columns)


# --- concurrency ---------------------------------------------------------------------


@attrs.define
class _LockEntry:
    lock: asyncio.Lock = attrs.field(factory=asyncio.Lock)
    users: int = 0


class HandleLocks:
    """One ``asyncio.Lock`` per chunk handle, dropped once nobody holds or awaits it.

    Operations on one handle serialise; different handles proceed concurrently; memory is
    proportional to the handles in use, not to the handles ever seen.
    """

    def __init__(self) -> None:
        self._entries: dict[int, _LockEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def held(self, handle: int) -> bool:
        """Whether someone holds or awaits ``handle``'s lock (a membership test: any thread may ask)."""
        return handle in self._entries

    @asynccontextmanager
    async def hold(self, handle: int) -> AsyncIterator[None]:
        entry = self._entries.get(handle)
        if entry is None:
            entry = self._entries[handle] = _LockEntry()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[handle]


async def run_in_thread(fn: Callable[..., T], /, *args: Any) -> T:
    """Run ``fn`` on the default executor: one thread hop for a whole operation.

    A thread cannot be cancelled, so a cancelled caller still waits for it before
    re-raising: a lock held around this call then really covers all of the file work.
    """
    future = asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            try:
                await asyncio.wait([future])
            except asyncio.CancelledError:
                pass
        if not future.cancelled():
            future.exception()  # retrieved: the caller's cancellation is what propagates
        raise


class UsedBytes:
    """The running total of data-file bytes; updated from executor threads, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    @property
    def value(self) -> int:
        with self._lock:
            return self._value

    def add(self, delta: int) -> None:
        with self._lock:
            self._value += delta


def _check_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArgument(f"{name} must be a non-negative integer, got {value!r}")
    return value


# --- the shared store ------------------------------------------------------------------

M = TypeVar("M", bound=ChunkMeta)


class BlockFileStore(abc.ABC, Generic[M]):
    """A ``ChunkStore`` keeping one data file and one sidecar per chunk.

    Each public operation takes the handle's lock and makes exactly one thread hop into a
    plain synchronous ``_*_sync`` method doing all of its file work. Nothing but a running
    byte total is kept in memory: sidecars are read per operation (they are small and the
    page cache holds them), so the disk is the only truth.
    """

    NAME: ClassVar[str]
    DATA_SUFFIX: ClassVar[str]
    MAGIC: ClassVar[bytes]
    META: ClassVar[type[ChunkMeta]]

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
        self._chunks = self.root / CHUNKS_DIR
        self._session = secrets.token_hex(4)
        self._locks = HandleLocks()
        self._used = UsedBytes()
        self._rewrite: set[int] = set()  # sidecars whose log ended in a torn record
        self._closed = False
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @classmethod
    @asynccontextmanager
    async def open(cls, ctx: StoreContext) -> AsyncIterator[Self]:
        """Scan the directory (one thread hop), yield the store, wait for in-flight work on exit."""
        store = cls(ctx)
        await run_in_thread(store._startup_sync)
        try:
            yield store
        finally:
            store._closed = True
            while store._active:
                await store._idle.wait()

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

    @abc.abstractmethod
    def _expected_size(self, meta: M) -> int:
        """Data-file bytes the sidecar accounts for; anything past it is a crashed write's."""

    # -- layout ---------------------------------------------------------------------

    def _dir(self, handle: int) -> Path:
        return self._chunks / f"{handle & 0xFF:02x}"

    def _meta_path(self, handle: int) -> Path:
        return self._dir(handle) / f"{handle:016x}{META_SUFFIX}"

    def _data_path(self, handle: int, gen: int) -> Path:
        stem = f"{handle:016x}" if gen == 0 else f"{handle:016x}.{gen}"
        return self._dir(handle) / f"{stem}{self.DATA_SUFFIX}"

    def _fan_dirs(self) -> list[Path]:
        try:
            with os.scandir(self._chunks) as entries:
                return sorted(Path(e.path) for e in entries if e.is_dir() and len(e.name) == 2)
        except FileNotFoundError:
            return []

    @staticmethod
    def _parse_stem(stem: str) -> tuple[int, int] | None:
        """``(handle, generation)`` from ``<hex>`` or ``<hex>.<gen>``; ``None`` for strangers."""
        parts = stem.split(".")
        try:
            if len(parts) == 1:
                return int(parts[0], 16), 0
            if len(parts) == 2:
                return int(parts[0], 16), int(parts[1])
        except ValueError:
            pass
        return None

    def _is_stale_tmp(self, name: str) -> bool:
        return name.endswith(TMP_SUFFIX) and not name.endswith(f".{self._session}{TMP_SUFFIX}")

    def _blocks_for(self, length: int) -> int:
        return -(-length // self.block_size)

    # -- sidecars -------------------------------------------------------------------

    def _load(self, handle: int) -> M:
        what = f"chunk {handle}"
        try:
            raw = self._meta_path(handle).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"chunk {handle} is not in this store") from None
        body, clean = newest_record(self.MAGIC, raw, what)
        if not clean:
            self._rewrite.add(handle)
        meta: M = self.META.decode(body, what)  # type: ignore[assignment]
        if len(meta.crcs) != self._blocks_for(meta.length):
            raise ChecksumMismatch(f"{what}: sidecar lists {len(meta.crcs)} blocks for {meta.length} bytes")
        return meta

    def _save(self, handle: int, meta: M) -> None:
        sealed = seal(self.MAGIC, meta.encode())
        if handle in self._rewrite:  # after a torn tail: start a fresh log
            self._rewrite.discard(handle)
            write_atomic(self._meta_path(handle), _RECORD.pack(len(sealed)) + sealed, self._session)
        else:
            commit_sidecar(self._meta_path(handle), sealed, self._session)

    # -- synchronous operations (each runs whole on one executor thread) -------------

    def _startup_sync(self) -> None:
        self._check_format()
        if not self._chunks.is_dir():
            self._chunks.mkdir()
            fsync_dir(self.root)
        used = 0
        for directory in self._fan_dirs():
            used += self._recover_dir(directory)
        self._used.add(used)

    def _check_format(self) -> None:
        """Refuse a directory written by another store or block size: its bytes would misread."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / FORMAT_FILE
        want = {"store": self.NAME, "format": FORMAT_VERSION, "block_size": self.block_size}
        try:
            found = json.loads(path.read_bytes())
        except FileNotFoundError:
            write_atomic(path, json.dumps(want).encode(), self._session)
            return
        except ValueError:
            raise ConfigError(f"{path} is not a Hercules chunk store format file") from None
        if found != want:
            raise ConfigError(f"{self.root} holds a chunk store described as {found}; "
                              f"the {self.NAME!r} store needs {want}")

    def _recover_dir(self, directory: Path) -> int:
        """Clean one fan-out directory after a restart; return the bytes of live data files.

        Removes tmp files, data files without a sidecar (a create or delete cut short), chunks
        a creation cut short left with a sidecar but no bytes (see ``_create_sync``), superseded
        generations (a compaction cut short), and truncates bytes past what the sidecar accounts
        for (an unacknowledged append).
        """
        metas: set[int] = set()
        datas: dict[int, list[tuple[int, Path]]] = {}
        for name in os.listdir(directory):
            path = directory / name
            if name.endswith(TMP_SUFFIX):
                unlink_quiet(path)
            elif name.endswith(META_SUFFIX):
                parsed = self._parse_stem(name[:-len(META_SUFFIX)])
                if parsed is not None:
                    metas.add(parsed[0])
            elif name.endswith(self.DATA_SUFFIX):
                parsed = self._parse_stem(name[:-len(self.DATA_SUFFIX)])
                if parsed is not None:
                    datas.setdefault(parsed[0], []).append((parsed[1], path))
        used = 0
        for handle in metas.difference(datas):
            self._recover_dataless(handle)
        for handle, files in datas.items():
            if handle not in metas:
                for _, path in files:
                    unlink_quiet(path)
                continue
            try:
                meta = self._load(handle)
            except ChecksumMismatch as exc:
                sizes = [path.stat().st_size for _, path in files]
                if not any(sizes):  # no intact record over no bytes: a creation cut short
                    unlink_quiet(self._meta_path(handle))
                    for _, path in files:
                        unlink_quiet(path)
                    continue
                log.warning("chunk store %s: %s", self.root, exc)  # keep the evidence; reads fail loudly
                used += sum(sizes)
                continue
            for gen, path in files:
                if gen != meta.gen:
                    unlink_quiet(path)
                    continue
                size = path.stat().st_size
                expected = self._expected_size(meta)
                if size > expected:
                    os.truncate(path, expected)
                    size = expected
                used += size
        return used

    def _recover_dataless(self, handle: int) -> None:
        """A sidecar without any data file: a creation or deletion cut short when it names no
        bytes (or has no intact record), so it is removed; otherwise the chunk lost its data."""
        try:
            meta = self._load(handle)
        except ChecksumMismatch:
            meta = None
        if meta is None or self._expected_size(meta) == 0:
            unlink_quiet(self._meta_path(handle))
            self._rewrite.discard(handle)
        else:
            log.warning("chunk store %s: chunk %d: data file is missing", self.root, handle)

    def _create_sync(self, handle: int, version: int) -> None:
        """A new chunk: its empty data file, then its sidecar (one fdatasync), then one fsync of
        the directory, which makes both names durable before the creation is acknowledged.

        A crash before that fsync returned leaves an unacknowledged creation in one of these
        shapes, each removed by ``_recover_dir``: a data file without a sidecar, a sidecar with no
        intact record over an empty data file, or a sidecar of an empty chunk without a data file.
        """
        meta_path = self._meta_path(handle)
        if meta_path.exists():  # idempotent: the chunk keeps its bytes, takes the version
            meta = self._load(handle)
            meta.version = version
            self._save(handle, meta)
            return
        directory = self._dir(handle)
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            fsync_dir(self._chunks)
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
        self._rewrite.discard(handle)

    def _open_data(self, handle: int, meta: M, flags: int) -> int:
        try:
            return os.open(self._data_path(handle, meta.gen), flags)
        except FileNotFoundError:
            raise ChecksumMismatch(f"chunk {handle}: data file is missing") from None

    def _write_sync(self, handle: int, offset: int, data: memoryview) -> int:
        meta = self._load(handle)
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
        fd = self._open_data(handle, meta, os.O_RDWR)
        old_path = self._data_path(handle, meta.gen)
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
            superseded = self._put_blocks(fd, handle, meta, first, buf, (start, end))
            new_crcs = block_crcs(buf, bs)
            meta.crcs[first:first + len(new_crcs)] = new_crcs
            meta.length = new_len
            self._save(handle, meta)
        except BaseException:
            if superseded is not None:  # a rewritten data file the sidecar never adopted
                unlink_quiet(self._data_path(handle, meta.gen))
            self._used.add(os.fstat(fd).st_size - old_size)
            raise
        finally:
            os.close(fd)
        if superseded is not None:
            unlink_quiet(superseded)
            self._used.add(self._data_path(handle, meta.gen).stat().st_size - old_size)
        else:
            self._used.add(old_path.stat().st_size - old_size)
        return new_len

    def _read_sync(self, handle: int, offset: int, length: int) -> bytes:
        meta = self._load(handle)
        end = min(offset + length, meta.length)
        if end <= offset:
            return b""
        bs = self.block_size
        first, last = offset // bs, (end - 1) // bs
        fd = self._open_data(handle, meta, os.O_RDONLY)
        try:
            blocks = self._read_blocks(fd, handle, meta, first, last)
        finally:
            os.close(fd)
        skip = offset - first * bs
        if skip == 0 and len(blocks) == end - offset:
            return blocks
        return blocks[skip:skip + end - offset]

    def _info_sync(self, handle: int) -> ChunkInfo:
        meta = self._load(handle)
        return ChunkInfo(handle, meta.version, meta.length)

    def _set_version_sync(self, handle: int, version: int) -> None:
        meta = self._load(handle)
        meta.version = version
        self._save(handle, meta)

    def _delete_sync(self, handle: int) -> None:
        directory = self._dir(handle)
        unlink_quiet(self._meta_path(handle))  # first: the chunk is gone the moment its sidecar is
        prefix = f"{handle:016x}."
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return
        freed = 0
        for name in names:  # every generation, even if the sidecar was unreadable
            if name.startswith(prefix) and name.endswith(self.DATA_SUFFIX):
                freed += unlink_quiet(directory / name)
        fsync_dir(directory)
        self._used.add(-freed)

    def _list_sync(self) -> list[ChunkInfo]:
        found: list[ChunkInfo] = []
        for directory in self._fan_dirs():
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                continue
            for name in names:
                if self._is_stale_tmp(name):
                    unlink_quiet(directory / name)
                    continue
                if not name.endswith(META_SUFFIX):
                    continue
                parsed = self._parse_stem(name[:-len(META_SUFFIX)])
                if parsed is None:
                    continue
                try:
                    meta = self._load(parsed[0])
                except NotFound:  # deleted while we scanned
                    continue
                except ChecksumMismatch as exc:
                    if not self._locks.held(parsed[0]):  # else: a sidecar still being created
                        log.warning("chunk store %s: %s", self.root, exc)
                    continue
                found.append(ChunkInfo(parsed[0], meta.version, meta.length))
        found.sort(key=lambda info: info.handle)
        return found

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
        return await self._run(handle, self._read_sync, handle, offset, length)

    async def info(self, handle: int) -> ChunkInfo:
        return await self._run(_check_int("handle", handle), self._info_sync, handle)

    async def set_version(self, handle: int, version: int) -> None:
        await self._run(_check_int("handle", handle), self._set_version_sync, handle,
                        _check_int("version", version))

    async def delete(self, handle: int) -> None:
        """Remove the chunk's files; a missing chunk is fine."""
        await self._run(_check_int("handle", handle), self._delete_sync, handle)

    async def usage(self) -> StoreUsage:
        return await self._run(None, self._usage_sync)

    async def list(self) -> Sequence[ChunkInfo]:  # last: the name shadows the builtin in this class
        return await self._run(None, self._list_sync)


__all__ = [
    "BlockFileStore",
    "ChunkMeta",
    "HandleLocks",
    "UsedBytes",
    "as_byte_view",
    "datasync",
    "fsync_dir",
    "pread_upto",
    "pwrite_all",
    "run_in_thread",
    "seal",
    "unlink_quiet",
    "unseal",
    "commit_sidecar",
    "create_sidecar",
    "newest_record",
    "write_atomic",
]
