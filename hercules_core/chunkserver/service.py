"""The chunkserver's handlers: chunk creation, versions, the data push chain, ordered mutations."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs

from hercules_core import messages as m
from hercules_core.config import Config
from hercules_core.errors import ChunkFull, InvalidArgument, NotFound, NotPrimary, StaleVersion, Unavailable
from hercules_core.plugins.types import Buffer, ChunkStore
from hercules_core.rpc import CallContext, ConnectionPool, Dispatcher

log = logging.getLogger(__name__)
PUSH_TTL = 120.0  # pushed data not used by a mutation within this time is dropped
ORDER_WAIT = 5.0  # how long a secondary waits for an earlier serial before applying anyway
COPY_PIECE = 4 << 20  # re-replication and copy-on-write move chunks in pieces of this size


@attrs.define
class ChunkState:
    version: int
    lease_expires: float = 0.0  # monotonic; > now while this server is primary
    serial: int = 0  # last serial assigned (primary) or applied (secondary) at ``version``
    lock: asyncio.Lock = attrs.field(factory=asyncio.Lock)
    applied: asyncio.Condition = attrs.field(factory=asyncio.Condition)
    last_mutation: float = 0.0


class ChunkserverService:
    def __init__(self, config: Config, store: ChunkStore, pool: ConnectionPool, address: str) -> None:
        self.config = config
        self.store = store
        self.pool = pool
        self.address = address
        self.server_id = _server_id(config.data_dir())
        self.dispatcher = Dispatcher("chunkserver")
        self.chunks: dict[int, ChunkState] = {}
        self._pushed: dict[str, tuple[Buffer, float]] = {}
        self._added: list[m.ChunkReport] = []
        self._removed: list[int] = []
        self.last_master_contact = -1e9  # monotonic; reads are refused while out of touch
        # A peer in the write chain that cannot answer within this time is treated as failed: the
        # client retries, and the master, having declared it dead, leaves it out (its copy goes stale).
        self.peer_timeout = max(5.0, 2 * config.dead_after)
        self._register_handlers()

    async def load(self) -> list[m.ChunkReport]:
        infos = await self.store.list()
        previous = self.chunks
        self.chunks = {}
        for info in infos:
            state = previous.get(info.handle)
            self.chunks[info.handle] = state if state is not None and state.version == info.version \
                else ChunkState(info.version)
        return [m.ChunkReport(i.handle, i.version, i.length) for i in infos]

    # -- heartbeat bookkeeping ---------------------------------------------------------------

    def take_changes(self) -> tuple[list[m.ChunkReport], list[int]]:
        added, removed = self._added, self._removed
        self._added, self._removed = [], []
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

    def apply_extensions(self, extensions: list[m.LeaseExtension]) -> None:
        now = time.monotonic()
        for ext in extensions:
            state = self.chunks.get(ext.handle)
            if state is not None and state.version == ext.version:
                state.lease_expires = now + ext.seconds

    async def delete_chunks(self, handles: list[int]) -> None:
        for handle in handles:
            state = self.chunks.pop(handle, None)
            if state is not None:
                async with state.lock:
                    await self.store.delete(handle)
            else:
                await self.store.delete(handle)
            self._removed.append(handle)

    def expire_pushed(self) -> None:
        cutoff = time.monotonic() - PUSH_TTL
        for data_id in [k for k, (_, t) in self._pushed.items() if t < cutoff]:
            del self._pushed[data_id]

    async def _fill_from(self, handle: int, version: int, read_piece) -> int:  # noqa: ANN001
        """Build a local replica piece by piece; it only counts (gets ``version``) once complete,
        so a crash halfway leaves a version-0 chunk the master deletes as stale."""
        old = self.chunks.pop(handle, None)
        if old is not None:
            async with old.lock:
                await self.store.delete(handle)
        await self.store.create(handle, 0)
        offset = 0
        try:
            while True:
                piece = await read_piece(offset)
                if piece:
                    await self.store.write(handle, offset, piece)
                    offset += len(piece)
                if len(piece) < COPY_PIECE:
                    break
            await self.store.set_version(handle, version)
        except BaseException:
            await self.store.delete(handle)
            raise
        self.chunks[handle] = ChunkState(version)
        self._added.append(m.ChunkReport(handle, version, offset))
        return offset

    def _check_serving(self) -> None:
        """A server cut off from the master (paused, partitioned) may hold stale chunks: refuse reads
        until a heartbeat gets through and the master has had its say."""
        if time.monotonic() - self.last_master_contact > self.config.dead_after:
            raise Unavailable(f"{self.address} has lost contact with the master")

    # -- helpers -------------------------------------------------------------------------------

    def _state(self, handle: int, version: int) -> ChunkState:
        state = self.chunks.get(handle)
        if state is None:
            raise NotFound(f"chunk {handle} is not on {self.address}")
        if state.version != version:
            raise StaleVersion(f"chunk {handle} on {self.address} is at version {state.version}, not {version}")
        return state

    def _take_pushed(self, data_id: str) -> Buffer:
        entry = self._pushed.pop(data_id, None)
        if entry is None:
            raise NotFound(f"no data pushed under id {data_id} to {self.address}")
        return entry[0]

    async def _to_secondaries(self, secondaries: list[str], msg: m.ApplyMutation) -> None:
        results = await asyncio.gather(*(self.pool.call(a, msg, timeout=self.peer_timeout) for a in secondaries),
                                       return_exceptions=True)
        failed = [f"{a}: {r}" for a, r in zip(secondaries, results) if isinstance(r, BaseException)]
        if failed:
            raise Unavailable(f"chunk {msg.handle}: mutation {msg.serial} failed on " + "; ".join(failed))

    def _next_serial(self, state: ChunkState, handle: int, version: int) -> int:
        """Under the chunk's lock: re-check the lease, then take the next serial number."""
        self._primary(handle, version)
        state.serial += 1
        state.last_mutation = time.monotonic()
        return state.serial

    async def _mutate(self, secondaries: list[str], mutation: m.ApplyMutation, payload: Buffer) -> None:
        """Apply here and on every secondary at once; success only when all of them applied."""
        results = await asyncio.gather(
            self._apply(mutation.handle, mutation.offset, payload, mutation.pad_to),
            self._to_secondaries(secondaries, mutation), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _take_version(self, state: ChunkState, handle: int, version: int, lease_seconds: float,
                            record: Callable[[int, int], Awaitable[None]]) -> None:
        """Move a chunk to ``version`` (``record`` makes it durable) and make this server its
        primary for ``lease_seconds``, or end any lease it held (``lease_seconds`` 0)."""
        async with state.lock:  # waits for a mutation in flight
            if state.version != version:
                await record(handle, version)
                state.version, state.serial = version, 0
            state.lease_expires = time.monotonic() + lease_seconds if lease_seconds else 0.0

    async def _apply(self, handle: int, offset: int, data: Buffer, pad_to: int) -> None:
        if pad_to:
            info = await self.store.info(handle)
            if info.length < pad_to:
                await self.store.write(handle, info.length, bytes(pad_to - info.length))
        else:
            await self.store.write(handle, offset, data)

    # -- handlers --------------------------------------------------------------------------------

    def _register_handlers(self) -> None:  # noqa: C901 - a flat table of small handlers
        on = self.dispatcher.on

        @on(m.Ping)
        async def ping(msg: m.Ping, data: memoryview, ctx: CallContext) -> m.Pong:
            usage = await self.store.usage()
            return m.Pong("chunkserver", {"server_id": self.server_id, "chunks": len(self.chunks),
                                          "used_bytes": usage.used_bytes})

        @on(m.CreateChunk)
        async def create(msg: m.CreateChunk, data: memoryview, ctx: CallContext) -> m.Ok:
            state = self.chunks.get(msg.handle)
            if state is None:
                await self.store.create(msg.handle, msg.version)
                state = self.chunks.setdefault(msg.handle, ChunkState(msg.version))
            await self._take_version(state, msg.handle, msg.version, msg.lease_seconds, self.store.create)
            self._added.append(m.ChunkReport(msg.handle, msg.version, 0))
            return m.Ok()

        @on(m.SetVersion)
        async def set_version(msg: m.SetVersion, data: memoryview, ctx: CallContext) -> m.Ok:
            state = self.chunks.get(msg.handle)
            if state is None:
                raise NotFound(f"chunk {msg.handle} is not on {self.address}")
            await self._take_version(state, msg.handle, msg.version, msg.lease_seconds, self.store.set_version)
            return m.Ok()

        @on(m.DeleteChunks)
        async def delete(msg: m.DeleteChunks, data: memoryview, ctx: CallContext) -> m.Ok:
            await self.delete_chunks(msg.handles)
            return m.Ok()

        @on(m.PushData)
        async def push(msg: m.PushData, data: memoryview, ctx: CallContext) -> m.Ok:
            self._pushed[msg.data_id] = (data, time.monotonic())
            if msg.chain:
                try:
                    await self.pool.call(msg.chain[0], m.PushData(msg.data_id, msg.chain[1:]), data,
                                         timeout=self.peer_timeout)
                except Exception:
                    self._pushed.pop(msg.data_id, None)
                    raise
            return m.Ok()

        @on(m.WriteChunk)
        async def write(msg: m.WriteChunk, data: memoryview, ctx: CallContext) -> m.Written:
            if msg.offset < 0:
                raise InvalidArgument("offset must not be negative")
            state = self._primary(msg.handle, msg.version)
            payload = self._take_pushed(msg.data_id)
            async with state.lock:
                serial = self._next_serial(state, msg.handle, msg.version)
                await self._mutate(msg.secondaries, m.ApplyMutation(
                    msg.handle, msg.version, serial, msg.offset, msg.data_id), payload)
            return m.Written(msg.offset, len(payload))

        @on(m.AppendChunk)
        async def append(msg: m.AppendChunk, data: memoryview, ctx: CallContext) -> m.Written:
            state = self._primary(msg.handle, msg.version)
            payload = self._take_pushed(msg.data_id)
            if len(payload) > msg.chunk_size // 4:
                raise InvalidArgument(f"a record may be at most a quarter chunk ({msg.chunk_size // 4} bytes)")
            async with state.lock:
                serial = self._next_serial(state, msg.handle, msg.version)
                offset = (await self.store.info(msg.handle)).length
                if offset + len(payload) > msg.chunk_size:
                    await self._mutate(msg.secondaries, m.ApplyMutation(
                        msg.handle, msg.version, serial, 0, "", msg.chunk_size), b"")
                    raise ChunkFull(f"chunk {msg.handle} is full; append to the next chunk")
                await self._mutate(msg.secondaries, m.ApplyMutation(
                    msg.handle, msg.version, serial, offset, msg.data_id), payload)
            return m.Written(offset, len(payload))

        @on(m.ApplyMutation)
        async def apply(msg: m.ApplyMutation, data: memoryview, ctx: CallContext) -> m.Ok:
            state = self._state(msg.handle, msg.version)
            payload = self._take_pushed(msg.data_id) if msg.data_id else b""
            async with state.applied:
                try:  # apply in the primary's serial order
                    await asyncio.wait_for(state.applied.wait_for(lambda: state.serial >= msg.serial - 1),
                                           ORDER_WAIT)
                except TimeoutError:
                    log.warning("chunk %d: serial %d arrived without %d", msg.handle, msg.serial, state.serial + 1)
                async with state.lock:
                    await self._apply(msg.handle, msg.offset, payload, msg.pad_to)
                state.serial = max(state.serial, msg.serial)
                state.applied.notify_all()
            return m.Ok()

        @on(m.CopyChunk)
        async def copy(msg: m.CopyChunk, data: memoryview, ctx: CallContext) -> m.Written:
            async def read_piece(offset: int) -> Buffer:
                _, piece = await self.pool.call(msg.source, m.ReadChunk(msg.handle, msg.version, offset, COPY_PIECE),
                                                timeout=60.0)
                return piece

            length = await self._fill_from(msg.handle, msg.version, read_piece)
            return m.Written(0, length)

        @on(m.CloneChunk)
        async def clone(msg: m.CloneChunk, data: memoryview, ctx: CallContext) -> m.Written:
            source = self._state(msg.source_handle, msg.version)

            async def read_piece(offset: int) -> Buffer:
                async with source.lock:
                    return await self.store.read(msg.source_handle, offset, COPY_PIECE)

            length = await self._fill_from(msg.handle, msg.version, read_piece)
            return m.Written(0, length)

        @on(m.RevokeLease)
        async def revoke(msg: m.RevokeLease, data: memoryview, ctx: CallContext) -> m.Ok:
            state = self.chunks.get(msg.handle)
            if state is not None:
                async with state.lock:  # waits for a mutation in flight
                    state.lease_expires = 0.0
            return m.Ok()

        @on(m.ReadChunk)
        async def read(msg: m.ReadChunk, data: memoryview, ctx: CallContext) -> tuple[m.ReadReply, bytes]:
            if msg.offset < 0 or msg.length < 0:
                raise InvalidArgument("offset and length must not be negative")
            if msg.length > self.config.max_frame_data:
                raise InvalidArgument(f"read of {msg.length} bytes exceeds the frame limit")
            self._check_serving()
            self._state(msg.handle, msg.version)
            payload = await self.store.read(msg.handle, msg.offset, msg.length)
            return m.ReadReply(len(payload)), payload

    def _primary(self, handle: int, version: int) -> ChunkState:
        state = self._state(handle, version)
        if state.lease_expires <= time.monotonic():
            raise NotPrimary(f"{self.address} holds no lease on chunk {handle}")
        return state


def _server_id(root: Path) -> str:
    """A stable identity, kept beside the chunks, so a restarted server is recognised."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "server-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        server_id = uuid.uuid4().hex[:12]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(server_id)
        tmp.replace(path)
        return server_id
