"""Where a file's chunks are: read locations (clients cache them), and write locations, for
which the chunk authority allocates a chunk, copies it on write or grants a lease first."""

from __future__ import annotations

import time

from hercules_core import messages as m
from hercules_core.config import MAX_FILE_SIZE, check_file_end
from hercules_core.errors import InvalidArgument, NotFound
from hercules_core.master.authority import AuthorityPart
from hercules_core.master.store import ChunkRef
from hercules_core.master.validation import check_handle
from hercules_core.paths import normalize, public
from hercules_core.rpc import CallContext, Handler

MAX_LOCATE = 64  # chunk locations one Locate may ask for


def _check_chunk_index(index: int, chunk_size: int) -> None:
    """Refuse an index no file can have: negative, or starting past ``MAX_FILE_SIZE``."""
    if index < 0:
        raise InvalidArgument("chunk index must not be negative")
    if index * chunk_size >= MAX_FILE_SIZE:
        raise InvalidArgument(f"chunk {index} starts past the maximum file size ({MAX_FILE_SIZE} bytes)")


class ChunkLocations(AuthorityPart):
    def handlers(self) -> dict[type, Handler]:
        return {m.GetChunk: self.get_chunk, m.Locate: self.locate, m.LastChunk: self.last_chunk,
                m.FindChunk: self.find_chunk, m.ExtendSize: self.extend, m.WatchEntries: self.watch_entries}

    async def get_chunk(self, msg: m.GetChunk, data: memoryview, ctx: CallContext) -> m.ChunkLocation:
        _check_chunk_index(msg.index, self.config.chunk_size)
        authority = self.authority
        ref = await self.store.chunk(msg.file_id, msg.index)
        if ref is None:
            if not msg.for_write:
                return authority.read_location(None, msg.index)
            await self._refuse_packed(msg.file_id)
            ref, lease = await authority.allocate(msg.file_id, msg.index)
            return authority.location(ref, lease)
        if msg.for_write:
            ref, lease = await authority.writable(msg.file_id, ref)
            return authority.location(ref, lease)
        return authority.read_location(ref, msg.index)

    async def locate(self, msg: m.Locate, data: memoryview, ctx: CallContext) -> m.Located:
        _check_chunk_index(msg.index, self.config.chunk_size)
        if not 0 <= msg.count <= MAX_LOCATE:
            raise InvalidArgument(f"count must be between 0 and {MAX_LOCATE}")
        path = public(normalize(msg.path), "read")
        leased = self.leases.register(msg.holder, path)  # before the read: a mutation after it finds the lease
        try:
            info = await self.store.stat(path)
            packed = await self.store.extent(info.file_id) \
                if not info.is_dir and info.size and not info.chunk_count else None  # packed, or sparse
        except BaseException:
            if leased:
                self.leases.release(msg.holder, path)
            raise
        if packed is not None:
            return m.Located(info, [self.authority.read_location(packed[1], 0)], packed[0], leased)
        if leased:
            self.leases.release(msg.holder, path)  # only packed files are cached: their bytes never change
        chunks = []
        if not info.is_dir and info.size:
            last = min(msg.index + msg.count, (info.size - 1) // self.config.chunk_size + 1)
            for index in range(msg.index, last):
                chunks.append(self.authority.read_location(await self.store.chunk(info.file_id, index), index))
        return m.Located(info, chunks)

    async def last_chunk(self, msg: m.LastChunk, data: memoryview, ctx: CallContext) -> m.ChunkLocation:
        ref = await self.store.last_chunk(msg.file_id)
        if ref is None:
            await self._refuse_packed(msg.file_id)
            ref, lease = await self.authority.allocate(msg.file_id, 0)
        else:
            ref, lease = await self.authority.writable(msg.file_id, ref)
        return self.authority.location(ref, lease)

    async def _refuse_packed(self, file_id: int) -> None:
        """A packed file's bytes are in its extent: a chunk of its own would hide them from reads."""
        if await self.store.extent(file_id) is not None:
            raise InvalidArgument(f"file {file_id} is packed (docs/consistency.md): upload it whole again, "
                                  f"unpacked, before writing into it")

    async def find_chunk(self, msg: m.FindChunk, data: memoryview, ctx: CallContext) -> m.ChunkLocation:
        check_handle(msg.handle)
        versions = await self.store.versions([msg.handle])
        if msg.handle not in versions:
            raise NotFound(f"chunk handle {msg.handle} does not exist")
        lease = self.authority.cluster.leases.get(msg.handle)
        live = lease if lease is not None and lease.live(time.monotonic()) else None
        return self.authority.location(ChunkRef(msg.handle, -1, versions[msg.handle]), live)

    async def extend(self, msg: m.ExtendSize, data: memoryview, ctx: CallContext) -> m.Ok:
        if msg.size < 0:
            raise InvalidArgument("size must not be negative")
        check_file_end(msg.size, "the file")
        await self._refuse_packed(msg.file_id)  # its size is its record's: a cached entry relies on it
        await self.store.extend_size(msg.file_id, msg.size)
        return m.Ok()

    async def watch_entries(self, msg: m.WatchEntries, data: memoryview, ctx: CallContext) -> m.EntriesRevoked:
        if not msg.holder or len(msg.holder) > 64:
            raise InvalidArgument("a holder names itself in 1 to 64 characters")
        if not self.leases.enabled:
            raise InvalidArgument("this master leases no entries (entry_lease is 0)")
        return await self.leases.watch(msg)
