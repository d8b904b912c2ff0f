"""Chunk store ``fs``: one plain data file per chunk plus a sidecar of CRC32C block checksums.

Layout under ``root_dir``::

    FORMAT                                    store name, format and block size (checked on open)
    chunks/<handle % 256 as hex>/<handle as 16 hex>.chunk   chunk bytes, as is
    chunks/<handle % 256 as hex>/<handle as 16 hex>.meta    version, length, CRC32C per 64 KiB block

Writes go in place: touched bytes are ``pwrite``-n and fdatasync'ed, then a sidecar record
with their checksums is committed (``chunkstore.sidecar``). A crash in between leaves old checksums over new bytes, which reads
report as ``ChecksumMismatch`` (never as good data); appends cut short are simply invisible.
A write of up to 64 KiB (a packed small file, a record append) to a chunk that holds at least
as much is journalled instead: its bytes
go into the sidecar record as well, so it costs one fdatasync, not two, and the start-up scan
writes them into the data file again.
Everything else (layout, sidecars, locks, the start-up scan, usage) is the chunk-store kit,
``hercules_core.chunkstore``: this module is the whole of what makes ``fs`` itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from hercules_core.chunkstore import (
    STORE_SETTINGS,
    BlockFileStore,
    ChunkMeta,
    datasync,
    pread_upto,
    pwrite_all,
    verify_blocks,
)
from hercules_core.errors import ChecksumMismatch
from hercules_core.plugins import hookimpl
from hercules_core.plugins.types import ChunkStoreSpec


class FsChunkStore(BlockFileStore[ChunkMeta]):
    """Chunk bytes stored uncompressed at their own offsets: reads are one ``pread``."""

    NAME: ClassVar[str] = "fs"
    DATA_SUFFIX: ClassVar[str] = ".chunk"
    MAGIC: ClassVar[bytes] = b"HFS1"
    META: ClassVar[type[ChunkMeta]] = ChunkMeta
    JOURNAL_LIMIT: ClassVar[int] = 64 << 10

    def _read_blocks(self, fd: int, handle: int, meta: ChunkMeta, first: int, last: int) -> bytes:
        bs = self.block_size
        start, end = first * bs, min((last + 1) * bs, meta.length)
        data = pread_upto(fd, end - start, start)
        if len(data) != end - start:
            raise ChecksumMismatch(f"chunk {handle}: block {first + len(data) // bs} "
                                   "is cut short in the data file")
        verify_blocks(data, meta.crcs, first_block=first, block_size=bs, what=f"chunk {handle}")
        return data

    def _put_blocks(self, fd: int, handle: int, meta: ChunkMeta, first: int, buf: bytearray,
                    dirty: tuple[int, int]) -> Path | None:
        start, end = dirty
        base = first * self.block_size
        pwrite_all(fd, memoryview(buf)[start - base:end - base], start)  # only what changed
        datasync(fd)
        return None

    def _expected_size(self, meta: ChunkMeta) -> int:
        return meta.length


open_fs_store = FsChunkStore.open


@hookimpl
def hercules_chunk_stores() -> Iterator[ChunkStoreSpec]:
    yield ChunkStoreSpec(name="fs", open=open_fs_store,
                         description="one file per chunk, CRC32C per 64 KiB block in a sidecar",
                         settings=STORE_SETTINGS)


__all__ = ["FsChunkStore", "hercules_chunk_stores", "open_fs_store"]
