"""Async client: namespace calls to the master; reads, writes and appends to chunkservers.

Chunk locations are cached (leases until they expire, read locations briefly); a write
pushes data along the replica chain, then asks the primary to commit it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

from hercules_core import messages as m
from hercules_core.client.pieces import UploadSource, rechunk
from hercules_core.errors import (
    ChecksumMismatch,
    ChunkFull,
    HerculesError,
    InvalidArgument,
    IsADirectory,
    NotFound,
    NoSpace,
    NotPrimary,
    StaleVersion,
    TooFewChunkservers,
    Unavailable,
)
from hercules_core.framing import FrameLimits
from hercules_core.paths import normalize
from hercules_core.plugins.manager import PluginManager, make_plugin_manager
from hercules_core.plugins.types import Buffer, TransportSpec
from hercules_core.rpc import ConnectionPool

log = logging.getLogger(__name__)
PIECE = 4 << 20  # unit of data movement: a write mutation or a read request
READ_CACHE_TTL = 30.0
LOCATE_AHEAD = 8  # chunk locations fetched with the file entry when a read starts
RETRY_FOR = 45.0  # seconds a data operation keeps retrying through failures
DATA_TIMEOUT = 20.0  # one push or mutation; a hung chunkserver fails it, and the retry goes elsewhere
READ_TIMEOUT = 10.0
AVOID_FOR = 15.0  # a replica that just failed is tried last for this long
RETRYABLE = (Unavailable, NotPrimary, StaleVersion, NotFound, ChecksumMismatch)


class Client:
    def __init__(self, master: str, transport: TransportSpec, limits: FrameLimits | None = None,
                 window: int = 4, read_ahead: int = 8, master_retry_for: float = 30.0) -> None:
        self.master = master
        self.master_retry_for = master_retry_for
        self.read_ahead = read_ahead
        self.pool = ConnectionPool(transport, limits or FrameLimits())
        self.window = window
        self.chunk_size = 0
        self._write_locs: dict[tuple[int, int], m.ChunkLocation] = {}
        self._read_locs: dict[tuple[int, int], tuple[m.ChunkLocation, float]] = {}
        self._append_at: dict[int, int] = {}
        self._avoid: dict[str, float] = {}  # replica address -> monotonic time until which it is tried last

    async def start(self) -> "Client":
        pong = await self._master(m.Ping())
        self.chunk_size = int(pong.info["chunk_size"])
        return self

    async def close(self) -> None:
        await self.pool.close()

    async def __aenter__(self) -> "Client":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _master(self, msg: Any, timeout: float = 30.0) -> Any:
        """One master call, retried with backoff while the master is unreachable or restarting.

        Only idempotent requests, or ones carrying a request id the master answers once,
        are sent here, so a retry after a lost reply never applies anything twice.
        """
        deadline = time.monotonic() + self.master_retry_for
        delay = 0.05
        while True:
            try:
                reply, _ = await self.pool.call(self.master, msg, timeout=timeout)
                return reply
            except (TooFewChunkservers, NoSpace):
                raise
            except Unavailable as exc:
                if time.monotonic() + delay > deadline:
                    raise Unavailable(f"master {self.master} did not answer for {self.master_retry_for:.0f}s: "
                                      f"{exc.message}") from None
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)

    # -- namespace ---------------------------------------------------------------------------

    async def ping(self) -> m.Pong:
        return await self._master(m.Ping())

    async def mkdir(self, path: str) -> m.FileInfo:
        return await self._master(m.Mkdir(normalize(path)))

    async def create(self, path: str, replication: int | None = None, exclusive: bool = True) -> m.FileInfo:
        return await self._master(m.Create(normalize(path), replication, exclusive, _request_id()))

    async def stat(self, path: str) -> m.FileInfo:
        return await self._master(m.Stat(normalize(path)))

    async def list(self, path: str, recursive: bool = False, limit: int = 0, cursor: str = "") -> m.Listing:
        return await self._master(m.ListDir(normalize(path), recursive, limit, cursor))

    async def rename(self, source: str, target: str, overwrite: bool = False) -> None:
        await self._master(m.Rename(normalize(source, what="source"), normalize(target, what="target"), overwrite,
                                    _request_id()))

    async def delete(self, path: str, recursive: bool = False) -> None:
        await self._master(m.Delete(normalize(path), recursive, _request_id()))

    async def snapshot(self, source: str, target: str) -> m.FileInfo:
        """Copy-on-write snapshot of a file or directory tree."""
        return await self._master(m.Snapshot(normalize(source, what="source"), normalize(target, what="target"),
                                             _request_id()))

    async def undelete(self, path: str) -> m.FileInfo:
        """Restore the most recently deleted entry at ``path`` from the trash."""
        return await self._master(m.Undelete(normalize(path), _request_id()))

    async def trash(self) -> m.TrashList:
        return await self._master(m.ListTrash())

    async def cluster(self) -> m.ClusterInfo:
        return await self._master(m.ClusterStatus())

    async def chunk_handle(self, path: str, index: int) -> m.ChunkLocation:
        info = await self._file(path)
        return await self._master(m.GetChunk(info.file_id, index))

    async def chunk_servers(self, handle: int) -> m.ChunkLocation:
        return await self._master(m.FindChunk(handle))

    async def _ready(self) -> None:
        if not self.chunk_size:  # the gateway starts before the master may be up
            await self.start()

    async def _file(self, path: str) -> m.FileInfo:
        await self._ready()
        info = await self.stat(path)
        if info.is_dir:
            raise IsADirectory(f"{info.path}: is a directory")
        return info

    async def open(self, path: str, offset: int = 0, length: int = -1) -> m.FileInfo:
        """The entry at ``path`` (like ``stat``); for a file, where the chunks from ``offset`` are
        is learnt in the same master call, so a ``download`` that follows starts at the replicas."""
        await self._ready()
        first = max(0, offset) // self.chunk_size
        wanted = (length + self.chunk_size - 1) // self.chunk_size + 1 if length >= 0 else LOCATE_AHEAD
        located: m.Located = await self._master(m.Locate(normalize(path), first, min(wanted, LOCATE_AHEAD)))
        now = time.monotonic()
        for loc in located.chunks:
            if loc.exists:
                self._read_locs[(located.info.file_id, loc.index)] = (loc, now)
        return located.info

    # -- locations ----------------------------------------------------------------------------

    async def _write_location(self, file_id: int, index: int) -> m.ChunkLocation:
        key = (file_id, index)
        loc = self._write_locs.get(key)
        if loc is None or loc.lease_expires - time.time() < 2.0 or not loc.primary:
            loc = await self._master(m.GetChunk(file_id, index, for_write=True))
            self._write_locs[key] = loc
        return loc

    async def _read_location(self, file_id: int, index: int) -> m.ChunkLocation:
        key = (file_id, index)
        cached = self._read_locs.get(key)
        if cached is not None and time.monotonic() - cached[1] < READ_CACHE_TTL:
            return cached[0]
        loc = await self._master(m.GetChunk(file_id, index))
        if loc.exists:
            self._read_locs[key] = (loc, time.monotonic())
        return loc

    def _forget(self, file_id: int, index: int) -> None:
        self._write_locs.pop((file_id, index), None)
        self._read_locs.pop((file_id, index), None)

    # -- data path ------------------------------------------------------------------------------

    async def _push(self, loc: m.ChunkLocation, data: Buffer) -> str:
        data_id = uuid.uuid4().hex
        chain = list(loc.replicas)
        await self.pool.call(chain[0], m.PushData(data_id, chain[1:]), data, timeout=DATA_TIMEOUT)
        return data_id

    async def _retrying(self, file_id: int, index: int, attempt: Any) -> Any:
        deadline = time.monotonic() + RETRY_FOR
        delay = 0.05
        while True:
            try:
                return await attempt()
            except (TooFewChunkservers, NoSpace):
                raise
            except RETRYABLE as exc:
                self._forget(file_id, index)
                if time.monotonic() + delay > deadline:
                    raise Unavailable(f"chunk {index} of file {file_id}: giving up after retries: {exc}") from exc
                log.debug("retrying chunk %d of file %d: %s", index, file_id, exc)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)

    async def _write_piece(self, file_id: int, offset: int, data: Buffer) -> None:
        """One mutation within one chunk: push along the chain, then commit at the primary."""
        index, within = divmod(offset, self.chunk_size)

        async def attempt() -> None:
            loc = await self._write_location(file_id, index)
            data_id = await self._push(loc, data)
            secondaries = [r for r in loc.replicas if r != loc.primary]
            await self.pool.call(loc.primary, m.WriteChunk(loc.handle, loc.version, within, data_id, secondaries),
                                 timeout=DATA_TIMEOUT)

        await self._retrying(file_id, index, attempt)

    def _pieces(self, offset: int, length: int) -> Iterable[tuple[int, int]]:
        """(offset, length) pieces that never cross a chunk boundary nor exceed ``PIECE``."""
        end = offset + length
        while offset < end:
            boundary = (offset // self.chunk_size + 1) * self.chunk_size
            step = min(end, boundary, offset + PIECE) - offset
            yield offset, step
            offset += step

    async def write(self, path: str, offset: int, data: Buffer) -> int:
        """Write ``data`` at ``offset`` of an existing file; returns the bytes written."""
        if offset < 0:
            raise InvalidArgument("offset must not be negative")
        info = await self._file(path)
        view = memoryview(data)
        await self._write_all(info.file_id, offset, view)
        return len(view)

    async def _write_all(self, file_id: int, offset: int, view: memoryview) -> None:
        sem = asyncio.Semaphore(self.window)

        async def one(off: int, size: int) -> None:
            async with sem:
                await self._write_piece(file_id, off, view[off - offset: off - offset + size])

        await asyncio.gather(*(one(o, n) for o, n in self._pieces(offset, len(view))))
        if len(view):
            await self._master(m.ExtendSize(file_id, offset + len(view)))

    async def append(self, path: str, data: Buffer) -> int:
        """Record append: atomic, at least once; returns the file offset of the record."""
        info = await self._file(path)
        if len(data) == 0:
            raise InvalidArgument("an appended record must not be empty")
        if len(data) > self.chunk_size // 4:
            raise InvalidArgument(f"a record may be at most a quarter chunk ({self.chunk_size // 4} bytes)")
        deadline = time.monotonic() + RETRY_FOR
        index = self._append_at.get(info.file_id, -1)  # the chunk this client appended to last
        while True:
            try:
                loc = await self._master(m.LastChunk(info.file_id)) if index < 0 else \
                    await self._write_location(info.file_id, index)
                index = loc.index
                self._write_locs[(info.file_id, index)] = loc
                data_id = await self._push(loc, data)
                secondaries = [r for r in loc.replicas if r != loc.primary]
                written, _ = await self.pool.call(loc.primary, m.AppendChunk(
                    loc.handle, loc.version, data_id, secondaries, self.chunk_size), timeout=DATA_TIMEOUT)
            except ChunkFull:
                index += 1
                continue
            except (TooFewChunkservers, NoSpace):
                raise
            except RETRYABLE as exc:
                self._append_at.pop(info.file_id, None)
                if index >= 0:
                    self._forget(info.file_id, index)
                if time.monotonic() > deadline:
                    raise Unavailable(f"append to {path}: giving up after retries: {exc}") from exc
                await asyncio.sleep(0.05 + random.random() * 0.2)
                index = -1
                continue
            offset = index * self.chunk_size + written.offset
            self._append_at[info.file_id] = index
            await self._master(m.ExtendSize(info.file_id, offset + len(data)))
            return offset

    async def _read_piece(self, file_id: int, offset: int, length: int) -> Buffer:
        """``length`` bytes at ``offset`` from one replica; the received frame's data is passed on
        as is (it is owned, never reused by the transport), so a read copies nothing here."""
        index, within = divmod(offset, self.chunk_size)

        async def attempt() -> Buffer:
            loc = await self._read_location(file_id, index)
            if not loc.exists:
                return bytes(length)
            if not loc.replicas:
                raise Unavailable(f"chunk {loc.handle} has no live replica")
            errors = []
            now = time.monotonic()
            order = sorted(random.sample(loc.replicas, len(loc.replicas)), key=lambda r: self._avoid.get(r, 0) > now)
            for replica in order:
                try:
                    _, data = await self.pool.call(replica, m.ReadChunk(loc.handle, loc.version, within, length),
                                                   timeout=READ_TIMEOUT)
                except ChecksumMismatch as exc:
                    errors.append(exc)
                    await self._report_bad(loc.handle, replica, str(exc))
                    continue
                except (Unavailable, StaleVersion, NotFound) as exc:
                    errors.append(exc)
                    self._avoid[replica] = time.monotonic() + AVOID_FOR
                    continue
                if len(data) < length:  # beyond what the chunk holds reads as zeros
                    padded = bytearray(length)
                    padded[:len(data)] = data
                    return padded
                return data
            raise errors[-1]

        return await self._retrying(file_id, index, attempt)

    async def _report_bad(self, handle: int, replica: str, reason: str) -> None:
        try:
            await self._master(m.ReportBadReplica(handle, replica, reason))
        except HerculesError as exc:
            log.warning("could not report bad replica of chunk %d: %s", handle, exc)

    async def read(self, path: str, offset: int = 0, length: int = -1) -> bytes:
        """Up to ``length`` bytes from ``offset`` (all of the rest if negative); short at the end."""
        return b"".join([piece async for piece in self.download(path, offset, length)])

    async def download(self, path: str, offset: int = 0, length: int = -1, *,
                       info: m.FileInfo | None = None) -> AsyncIterator[Buffer]:
        """Stream a file's bytes in order, fetching up to ``read_ahead`` pieces ahead; ``info``
        from a just-made ``open`` saves the master call."""
        if offset < 0:
            raise InvalidArgument("offset must not be negative")
        info = info or await self.open(path, offset, length)
        if info.is_dir:
            raise IsADirectory(f"{info.path}: is a directory")
        end = info.size if length < 0 else min(info.size, offset + length)
        ahead: collections.deque[asyncio.Task[Buffer]] = collections.deque()
        pieces = iter(self._pieces(offset, max(0, end - offset)))
        try:
            while True:
                while len(ahead) < self.read_ahead:
                    nxt = next(pieces, None)
                    if nxt is None:
                        break
                    ahead.append(asyncio.ensure_future(self._read_piece(info.file_id, *nxt)))
                if not ahead:
                    return
                yield await ahead.popleft()
        finally:
            for task in ahead:
                task.cancel()

    async def upload(self, path: str, source: UploadSource, *, overwrite: bool = False,
                     replication: int | None = None, size: int | None = None) -> m.FileInfo:
        """Stream ``source`` into a new file, published atomically under ``path`` when complete.

        Two master calls besides the data: one that checks the path and makes the hidden file
        the data goes into (and, when ``size`` is known and not 0, allocates its first chunk),
        one that sizes it, makes the parents and renames it into place.
        """
        path = normalize(path)
        await self._ready()
        if size is None and isinstance(source, (bytes, bytearray, memoryview)):
            size = memoryview(source).nbytes
        started: m.UploadStarted = await self._master(
            m.BeginUpload(path, replication, overwrite, _request_id(), size_hint=size or 0))
        info = started.temp
        if started.first_chunk is not None:
            self._write_locs[(info.file_id, 0)] = started.first_chunk
        try:
            size = await self._upload_into(info.file_id, source, total=size)
            return await self._master(m.PublishUpload(info.path, path, size, overwrite, _request_id()))
        except BaseException:
            try:
                await asyncio.shield(self.delete(info.path))
            except HerculesError:
                pass
            raise

    async def write_stream(self, path: str, offset: int, source: UploadSource) -> int:
        """Write a stream of any length at ``offset`` of an existing file; returns bytes written."""
        if offset < 0:
            raise InvalidArgument("offset must not be negative")
        info = await self._file(path)
        end = await self._upload_into(info.file_id, source, offset)
        if end > offset:
            await self._master(m.ExtendSize(info.file_id, end))
        return end - offset

    async def _upload_into(self, file_id: int, source: UploadSource, start: int = 0,
                           total: int | None = None) -> int:
        """Write ``source`` from ``start`` with up to ``window`` pieces in flight; return the end offset."""
        sem = asyncio.Semaphore(self.window)
        tasks: set[asyncio.Task[None]] = set()
        failures: list[BaseException] = []
        offset = start

        async def one(off: int, piece: Buffer) -> None:
            try:
                await self._write_piece(file_id, off, piece)
            except BaseException as exc:
                failures.append(exc)
            finally:
                sem.release()

        try:
            def next_size() -> int:
                return min(PIECE, self.chunk_size - offset % self.chunk_size)

            async for piece in rechunk(source, next_size, total):
                if failures:
                    break
                await sem.acquire()
                task = asyncio.ensure_future(one(offset, piece))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                offset += len(piece)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        if failures:
            raise failures[0]
        return offset


def _request_id() -> str:
    """Unique, and ascending in time: the master's indexes of request ids and upload names
    then grow at their right edge, so one commit touches a few pages instead of one per id."""
    return f"{time.time_ns():016x}{uuid.uuid4().hex[:16]}"


async def connect(master: str, transport: str = "tcp", plugins: PluginManager | None = None,
                  limits: FrameLimits | None = None) -> Client:
    """A started client for the master at ``master``, using the named transport plugin."""
    plugins = plugins or make_plugin_manager()
    client = Client(master, plugins.transport(transport), limits)
    return await client.start()
