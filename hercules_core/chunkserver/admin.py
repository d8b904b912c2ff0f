"""What the master asks of a chunkserver: create and delete chunks, move them to a new version
(granting or ending this server's lease), revoke a lease, and build replicas by copying one from
another server (re-replication) or cloning a local one (copy-on-write after a snapshot).
Each request's handles, versions, lease and source address are checked first (``checks``)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from hercules_core import messages as m
from hercules_core.chunkserver import checks
from hercules_core.chunkserver.replicas import COPY_PIECE, ChunkState, Replicas
from hercules_core.errors import ChecksumMismatch, NotFound, StaleVersion
from hercules_core.plugins.types import Buffer
from hercules_core.rpc import CallContext, Handler


class ChunkAdmin:
    def __init__(self, replicas: Replicas) -> None:
        self.replicas = replicas
        self.store = replicas.store
        self.pool = replicas.pool

    def handlers(self) -> dict[type, Handler]:
        return {m.Ping: self.ping, m.CreateChunk: self.create, m.SetVersion: self.set_version,
                m.DeleteChunks: self.delete, m.CopyChunk: self.copy, m.CloneChunk: self.clone,
                m.RevokeLease: self.revoke, m.VerifyChunk: self.verify}

    async def _take_version(self, state: ChunkState, handle: int, version: int, lease_seconds: float,
                            token: str, record: Callable[[int, int], Awaitable[None]]) -> None:
        """Move a chunk to ``version`` (``record`` makes it durable) and make this server its
        primary for ``lease_seconds`` (its mutations carry ``token``), or end any lease it held
        (``lease_seconds`` 0)."""
        if version == state.version and lease_seconds:  # a renewal: no need to wait for a mutation
            state.lease_expires = time.monotonic() + lease_seconds
            state.token = token
            return
        async with state.lock:  # waits for a mutation in flight
            if version < state.version:  # a grant delayed past a newer one: never go back
                raise StaleVersion(f"chunk {handle} on {self.replicas.address} is at version {state.version}, "
                                   f"past {version}")
            if state.version != version:
                await record(handle, version)
                state.version, state.serial, state.serial_known, state.trusted = version, 0, True, ""
            state.lease_expires = time.monotonic() + lease_seconds if lease_seconds else 0.0
            state.token = token if lease_seconds else ""

    async def _fill_from(self, handle: int, version: int, read_piece: Callable[[int], Awaitable[Buffer]]) -> int:
        """Build a local replica piece by piece; it only counts (gets ``version``) once complete,
        so a crash halfway leaves a version-0 chunk the master deletes as stale."""
        old = self.replicas.chunks.get(handle)
        if old is not None and old.version > version and handle not in self.replicas.corrupt:
            # a copy sent before the chunk moved on (and this replica with it): never go back
            raise StaleVersion(f"chunk {handle} on {self.replicas.address} is at version {old.version}, "
                               f"past {version}")
        self.replicas.chunks.pop(handle, None)
        self.replicas.corrupt.pop(handle, None)
        if old is not None:
            async with old.lock:
                await self.store.delete(handle)
        await self.store.create(handle, 0)
        offset = 0
        try:
            while True:
                piece = await read_piece(offset)
                checks.extent(offset, len(piece), self.replicas.chunk_size)  # a source that never ends
                if piece:
                    await self.store.write(handle, offset, piece)
                    offset += len(piece)
                if len(piece) < COPY_PIECE:
                    break
            await self.store.set_version(handle, version)
        except BaseException:
            await self.store.delete(handle)
            raise
        self.replicas.chunks[handle] = ChunkState(version)  # not cached above: ``load`` replaces the dict
        self.replicas.added.append(m.ChunkReport(handle, version, offset))
        return offset

    # -- handlers --------------------------------------------------------------------------------

    async def ping(self, msg: m.Ping, data: memoryview, ctx: CallContext) -> m.Pong:
        usage = await self.store.usage()
        return m.Pong("chunkserver", {"server_id": self.replicas.server_id, "chunks": len(self.replicas.chunks),
                                      "used_bytes": usage.used_bytes})

    async def create(self, msg: m.CreateChunk, data: memoryview, ctx: CallContext) -> m.Ok:
        checks.chunk(msg.handle, msg.version)
        checks.lease(msg.lease_seconds)
        state = self.replicas.chunks.get(msg.handle)
        if state is None:
            self.replicas.corrupt.pop(msg.handle, None)
            await self.store.create(msg.handle, msg.version)
            state = self.replicas.chunks.setdefault(msg.handle, ChunkState(msg.version))
        await self._take_version(state, msg.handle, msg.version, msg.lease_seconds, msg.token, self.store.create)
        self.replicas.added.append(m.ChunkReport(msg.handle, msg.version, 0))
        return m.Ok()

    async def set_version(self, msg: m.SetVersion, data: memoryview, ctx: CallContext) -> m.Ok:
        checks.chunk(msg.handle, msg.version)
        checks.lease(msg.lease_seconds)
        state = self.replicas.chunks.get(msg.handle)
        if state is None:
            raise NotFound(f"chunk {msg.handle} is not on {self.replicas.address}")
        if msg.handle in self.replicas.corrupt:  # a corrupt replica never becomes current again
            raise ChecksumMismatch(self.replicas.corrupt[msg.handle])
        await self._take_version(state, msg.handle, msg.version, msg.lease_seconds, msg.token,
                                 self.store.set_version)
        return m.Ok()

    async def delete(self, msg: m.DeleteChunks, data: memoryview, ctx: CallContext) -> m.Ok:
        await self.replicas.delete_chunks(checks.handles(msg.handles))
        return m.Ok()

    async def copy(self, msg: m.CopyChunk, data: memoryview, ctx: CallContext) -> m.Written:
        checks.chunk(msg.handle, msg.version)
        checks.addresses([msg.source])
        async def read_piece(offset: int) -> Buffer:
            _, piece = await self.pool.call(msg.source, m.ReadChunk(msg.handle, msg.version, offset, COPY_PIECE),
                                            timeout=60.0)
            return piece

        length = await self._fill_from(msg.handle, msg.version, read_piece)
        return m.Written(0, length)

    async def clone(self, msg: m.CloneChunk, data: memoryview, ctx: CallContext) -> m.Written:
        checks.chunk(msg.handle, msg.version)
        checks.handle(msg.source_handle)
        source = self.replicas.state(msg.source_handle, msg.version)

        async def read_piece(offset: int) -> Buffer:
            async with source.lock:
                return await self.replicas.reporting(msg.source_handle,
                                                     self.store.read(msg.source_handle, offset, COPY_PIECE))

        length = await self._fill_from(msg.handle, msg.version, read_piece)
        return m.Written(0, length)

    async def revoke(self, msg: m.RevokeLease, data: memoryview, ctx: CallContext) -> m.Ok:
        checks.handle(msg.handle)
        state = self.replicas.chunks.get(msg.handle)
        if state is not None:
            async with state.lock:  # waits for a mutation in flight
                state.lease_expires = 0.0
        return m.Ok()

    async def verify(self, msg: m.VerifyChunk, data: memoryview, ctx: CallContext) -> m.Ok:
        await self.replicas.verify(checks.handle(msg.handle))
        return m.Ok()
