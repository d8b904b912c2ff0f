"""Async client: namespace calls to the master; reads, writes and appends to chunkservers.

Where chunks are is kept in one ``LocationCache``; every call retries through one
``RetryPolicy``; ``write``, ``write_stream`` and ``upload`` all go through one
``WindowedWriter``, which pushes each piece along the replica chain, then asks the primary to
commit it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from hercules_core import messages as m
from hercules_core.client.appends import DATA_TIMEOUT, append_record, push
from hercules_core.client.entry_cache import EntryCache
from hercules_core.client.locations import LocationCache
from hercules_core.client.namespace import NamespaceCalls, request_id
from hercules_core.client.packed import PackedFiles, gather_small
from hercules_core.client.pieces import UploadSource, split
from hercules_core.client.retry import DATA_RETRYABLE, RetryPolicy
from hercules_core.client.writer import WindowedWriter
from hercules_core.config import check_file_end
from hercules_core.errors import (
    ChecksumMismatch,
    ChunkFull,
    HerculesError,
    InvalidArgument,
    IsADirectory,
    NotFound,
    StaleVersion,
    Unavailable,
)
from hercules_core.framing import FrameLimits
from hercules_core.paths import normalize
from hercules_core.plugins.manager import PluginManager, make_plugin_manager
from hercules_core.plugins.types import Buffer, TransportSpec
from hercules_core.rpc import ConnectionPool

log = logging.getLogger(__name__)
LOCATE_AHEAD = 8  # chunk locations fetched with the file entry when a read starts
RETRY_FOR = 45.0  # seconds a data operation keeps retrying through failures, at the least
# Beyond the lease time: a write to a chunk whose replica went silent waits until that replica's
# read permission (a lease time after its last heartbeat) is over, and must not give up first.
RETRY_PAST_LEASE = 15.0
READ_TIMEOUT = 10.0
MASTER_TIMEOUT = 30.0
MASTER_PROBE = 1.5  # seconds a health probe of the master may take in all, dial included
REPORT_FOR = 2.0  # seconds a client tries to report a corrupt replica (its server reports it too)


class Client(NamespaceCalls, PackedFiles):
    # Told (once per master call that has to wait) what it is waiting for, so a command line
    # tool can say so instead of hanging silently through the retries.
    on_master_wait: Callable[[str], None] | None = None

    def __init__(self, master: str, transport: TransportSpec, limits: FrameLimits | None = None,
                 window: int = 4, read_ahead: int = 8, master_retry_for: float = 30.0,
                 entry_cache: int = 0) -> None:
        self.master = master
        self.read_ahead = read_ahead
        self.pool = ConnectionPool(transport, limits or FrameLimits())
        self.window = window
        self.chunk_size = 0
        self.locations = LocationCache()
        # Master calls wait out a master restart; data calls outlast the lease time once the
        # master has said it (``start``), and retry what a fresh location may cure.
        self.master_policy = RetryPolicy(master_retry_for, max_delay=1.0)
        self.data_policy = RetryPolicy(RETRY_FOR, max_delay=2.0, retryable=DATA_RETRYABLE)
        # up to ``entry_cache`` packed files' entries, leased: their reads skip the master
        self.entries = EntryCache(self.pool, master, entry_cache) if entry_cache > 0 else None
        self._entries_task: asyncio.Task[None] | None = None

    async def start(self) -> "Client":
        pong = await self._master(m.Ping())
        self.chunk_size = int(pong.info["chunk_size"])
        self.replication = int(pong.info.get("replication", 0))
        self.pack_threshold = min(int(pong.info.get("pack_threshold", 0)), self.chunk_size // 4)
        self.pack_lanes = int(pong.info.get("pack_lanes", 1))
        lease = float(pong.info.get("lease_seconds", 0.0))
        self.data_policy = self.data_policy.lasting(max(RETRY_FOR, lease + RETRY_PAST_LEASE))
        if self.entries is not None and self._entries_task is None:
            self._entries_task = asyncio.ensure_future(self.entries.run())
        return self

    async def close(self) -> None:
        if self.entries is not None:
            await self.entries.close(self._entries_task)
        await self.pool.close()

    async def __aenter__(self) -> "Client":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _master(self, msg: Any, timeout: float = MASTER_TIMEOUT, retry_for: float | None = None) -> Any:
        """One master call, retried with backoff while the master is unreachable or restarting
        (for ``retry_for`` seconds, by default the master policy's).

        Only idempotent requests, or ones carrying a request id the master answers once,
        are sent here, so a retry after a lost reply never applies anything twice.
        """
        policy = self.master_policy if retry_for is None else self.master_policy.lasting(retry_for)

        async def attempt() -> Any:
            reply, _ = await self.pool.call(self.master, msg, timeout=timeout)
            return reply

        def give_up(exc: Exception) -> Exception:
            return Unavailable(f"master {self.master} did not answer for {policy.retry_for:.0f}s: {_message(exc)}")

        def waiting(exc: Exception) -> None:
            if self.on_master_wait is not None:
                self.on_master_wait(f"waiting for the master at {self.master} (up to {policy.retry_for:.0f}s): "
                                    f"{_message(exc)}")

        return await policy.run(attempt, give_up=give_up, on_wait=waiting)

    # -- namespace ---------------------------------------------------------------------------

    async def ping(self) -> m.Pong:
        return await self._master(m.Ping())

    async def probe_master(self, timeout: float = MASTER_PROBE) -> m.Pong:
        """One ping, never retried, bounded by ``timeout`` in all: a health check must answer at
        once, master or no master, not after the retries other calls make."""
        try:
            reply, _ = await asyncio.wait_for(self.pool.call(self.master, m.Ping(), timeout=timeout), timeout)
        except TimeoutError:
            raise Unavailable(f"master {self.master} did not answer a ping within {timeout}s") from None
        except Unavailable as exc:
            raise Unavailable(f"master {self.master} is unreachable: {exc.message}") from None
        return reply

    async def chunk_handle(self, path: str, index: int) -> m.ChunkLocation:
        info = await self._file(path)
        return await self._master(m.GetChunk(info.file_id, index))

    def _cached(self, path: str) -> m.Located | None:
        return self.entries.get(path) if self.entries is not None else None

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
        path = normalize(path)
        cached = self._cached(path)
        if cached is not None:
            self._learn_extent(cached)
            return cached.info
        first = max(0, offset) // self.chunk_size
        wanted = (length + self.chunk_size - 1) // self.chunk_size + 1 if length >= 0 else LOCATE_AHEAD
        located = await self._locate(path, first, min(wanted, LOCATE_AHEAD))
        if located.extent is not None:
            self._learn_extent(located)
        else:
            self.locations.opened(located.info.file_id, located.chunks)
        return located.info

    # -- locations ----------------------------------------------------------------------------

    async def _write_location(self, file_id: int, index: int) -> m.ChunkLocation:
        loc = self.locations.lease(file_id, index)
        if loc is None:
            loc = await self._master(m.GetChunk(file_id, index, for_write=True))
            self.locations.leased(file_id, loc)
        return loc

    async def _read_location(self, file_id: int, index: int) -> m.ChunkLocation:
        loc = self.locations.readable(file_id, index)
        if loc is None:
            loc = await self._master(m.GetChunk(file_id, index))
            self.locations.learnt(file_id, loc)
        return loc

    # -- data path ------------------------------------------------------------------------------

    async def _push(self, loc: m.ChunkLocation, data: Buffer) -> str:
        return await push(self.pool, loc, data)

    async def _on_chunk(self, file_id: int, index: int, attempt: Callable[[], Awaitable[Any]]) -> Any:
        """``attempt`` at one chunk under the data policy; a failed try forgets the chunk's locations."""
        def failed(exc: Exception) -> None:
            self.locations.forget(file_id, index)
            log.debug("retrying chunk %d of file %d: %s", index, file_id, exc)

        def give_up(exc: Exception) -> Exception:
            return Unavailable(f"chunk {index} of file {file_id}: giving up after retries: {exc}")

        return await self.data_policy.run(attempt, give_up=give_up, on_error=failed)

    async def _write_piece(self, file_id: int, offset: int, data: Buffer) -> None:
        """One mutation within one chunk: push along the chain, then commit at the primary."""
        index, within = divmod(offset, self.chunk_size)

        async def attempt() -> None:
            loc = await self._write_location(file_id, index)
            data_id = await self._push(loc, data)
            secondaries = [r for r in loc.replicas if r != loc.primary]
            await self.pool.call(loc.primary, m.WriteChunk(loc.handle, loc.version, within, data_id, secondaries),
                                 timeout=DATA_TIMEOUT)
            self.locations.written(file_id, loc)

        await self._on_chunk(file_id, index, attempt)

    async def _write_into(self, file_id: int, source: UploadSource, start: int = 0,
                          total: int | None = None) -> int:
        """Write ``source`` from ``start`` through the windowed writer; return the end offset.
        (``_write_piece`` is looked up per piece, so a test may wrap it.)"""
        writer = WindowedWriter(lambda at, piece: self._write_piece(file_id, at, piece), self.chunk_size,
                                self.window)
        return await writer.write(source, start, total)

    async def write(self, path: str, offset: int, data: Buffer) -> int:
        """Write ``data`` at ``offset`` of an existing file; returns the bytes written."""
        if offset < 0:
            raise InvalidArgument("offset must not be negative")
        view = memoryview(data)
        check_file_end(offset + len(view), f"{len(view)} bytes at offset {offset}")
        info = await self._writable(path)
        await self._write_into(info.file_id, view, offset, len(view))
        if len(view):
            await self._master(m.ExtendSize(info.file_id, offset + len(view)))
        return len(view)

    async def append(self, path: str, data: Buffer) -> int:
        """Record append: atomic, at least once; returns the file offset of the record."""
        info = await self._writable(path)
        if len(data) == 0:
            raise InvalidArgument("an appended record must not be empty")
        if len(data) > self.chunk_size // 4:
            raise InvalidArgument(f"a record may be at most a quarter chunk ({self.chunk_size // 4} bytes)")
        file_id = info.file_id
        index = self.locations.append_chunk(file_id)  # the chunk this client appended to last

        async def attempt() -> tuple[m.ChunkLocation, int]:
            nonlocal index
            while True:  # a full chunk sends the record on to the next one, at once
                loc = await self._master(m.LastChunk(file_id)) if index < 0 else \
                    await self._write_location(file_id, index)
                index = loc.index
                self.locations.leased(file_id, loc)
                try:
                    within = await append_record(self.pool, loc, data, self.chunk_size)
                except ChunkFull:
                    index += 1
                    continue
                return loc, within

        def failed(exc: Exception) -> None:
            nonlocal index
            self.locations.append_failed(file_id, index)
            index = -1

        def give_up(exc: Exception) -> Exception:
            return Unavailable(f"append to {path}: giving up after retries: {exc}")

        loc, within = await self.data_policy.run(attempt, give_up=give_up, on_error=failed)
        offset = loc.index * self.chunk_size + within
        self.locations.appended(file_id, loc.index)
        self.locations.written(file_id, loc)
        await self._master(m.ExtendSize(file_id, offset + len(data)))
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
            errors: list[Exception] = []
            for replica in self.locations.read_order(list(loc.replicas)):
                try:
                    _, data = await self.pool.call(replica, m.ReadChunk(loc.handle, loc.version, within, length),
                                                   timeout=READ_TIMEOUT)
                except ChecksumMismatch as exc:
                    errors.append(exc)
                    self.locations.avoid(replica)
                    await self._report_bad(loc.handle, replica, str(exc))
                    continue
                except (Unavailable, StaleVersion, NotFound) as exc:
                    errors.append(exc)
                    self.locations.avoid(replica)
                    continue
                if len(data) < length:  # beyond what the chunk holds reads as zeros
                    padded = bytearray(length)
                    padded[:len(data)] = data
                    return padded
                return data
            raise errors[-1]

        return await self._on_chunk(file_id, index, attempt)

    async def _report_bad(self, handle: int, replica: str, reason: str) -> None:
        try:
            await self._master(m.ReportBadReplica(handle, replica, reason), timeout=REPORT_FOR, retry_for=REPORT_FOR)
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
        packed = await self._extent_of(info)
        if packed is not None:  # a packed file: one read of its extent
            if end > offset:
                yield memoryview(await self._read_extent(info, packed))[offset:end]
            return
        ahead: collections.deque[asyncio.Task[Buffer]] = collections.deque()
        pieces = iter(split(offset, max(0, end - offset), self.chunk_size))
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
                     replication: int | None = None, size: int | None = None, pack: bool = True) -> m.FileInfo:
        """Stream ``source`` into a new file, published atomically under ``path`` when complete.

        Two master calls besides the data: one that checks the path and makes the hidden file
        the data goes into (and, when ``size`` is known and not 0, allocates its first chunk),
        one that sizes it, makes the parents and renames it into place. A small one (at most the
        master's ``pack_threshold``, ``pack`` not false) is one record in a pack and one master call.
        """
        path = normalize(path)
        await self._ready()
        if size is None and isinstance(source, (bytes, bytearray, memoryview)):
            size = memoryview(source).nbytes
        if pack and size is not None and self._packable(size, replication):
            data, source = await gather_small(source, size)  # a buffer of its size, not the threshold's
            if data is not None and len(data) == size:
                return await self._upload_packed(path, data, overwrite)
        started: m.UploadStarted = await self._master(
            m.BeginUpload(path, replication, overwrite, request_id(), size_hint=size or 0))
        info = started.temp
        if started.first_chunk is not None:
            self.locations.leased(info.file_id, started.first_chunk)
        try:
            size = await self._write_into(info.file_id, source, total=size)
            return await self._master(m.PublishUpload(info.path, path, size, overwrite, request_id()))
        except BaseException:
            try:
                await asyncio.shield(self._master(m.AbortUpload(info.path)))
            except HerculesError:
                pass
            raise

    async def write_stream(self, path: str, offset: int, source: UploadSource) -> int:
        """Write a stream of any length at ``offset`` of an existing file; returns bytes written."""
        if offset < 0:
            raise InvalidArgument("offset must not be negative")
        info = await self._writable(path)
        end = await self._write_into(info.file_id, source, offset)
        if end > offset:
            await self._master(m.ExtendSize(info.file_id, end))
        return end - offset


def _message(exc: Exception) -> str:
    return exc.message if isinstance(exc, HerculesError) else str(exc)


async def connect(master: str, transport: str = "tcp", plugins: PluginManager | None = None,
                  limits: FrameLimits | None = None) -> Client:
    """A started client for the master at ``master``, using the named transport plugin (with no
    ``plugins`` given, only the entry point that provides it is loaded)."""
    if plugins is None:
        plugins = make_plugin_manager(load_entrypoints=False)
        plugins.load_providing("transport", transport)
    client = Client(master, plugins.transport(transport), limits)
    return await client.start()
