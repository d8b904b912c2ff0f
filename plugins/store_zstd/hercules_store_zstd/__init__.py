"""Chunk store ``zstd``: each 64 KiB block is its own zstd frame, so reads at any offset are cheap.

Layout under ``root_dir`` (as ``fs``, but the data file is a log of frames)::

    chunks/<handle % 256 as hex>/<handle as 16 hex>[.<generation>].zst   zstd frames, appended
    chunks/<handle % 256 as hex>/<handle as 16 hex>.meta                 per block: frame offset,
                                                                          frame length, CRC32C of
                                                                          the uncompressed block

A write recompresses only the blocks it touches and appends their frames, then replaces the
sidecar atomically, so a crash in between leaves the previous chunk fully intact. When the
data file holds more than twice the live compressed bytes, the write instead produces the
next generation holding only live frames (copied, not recompressed) and the old file is
deleted once the sidecar names the new one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import attrs
import zstandard

from hercules_core.chunkstore import (
    STORE_SETTINGS,
    BlockFileStore,
    ChunkMeta,
    datasync,
    fsync_dir,
    pread_upto,
    pwrite_all,
    unlink_quiet,
    verify_blocks,
)
from hercules_core.errors import ChecksumMismatch, ConfigError
from hercules_core.plugins import hookimpl
from hercules_core.plugins.types import ChunkStoreSpec, SettingSpec, StoreContext

DEFAULT_LEVEL = 3
SETTINGS = (
    SettingSpec("level", int, DEFAULT_LEVEL, help="compression level: 1 fastest .. 22 smallest (negative: faster still)",
                env_aliases=("HERCULES_ZSTD_LEVEL",)),
    *STORE_SETTINGS,
)
IO_PIECE = 4 << 20  # coalesced reads and compaction copies move at most this much at once


@attrs.define
class ZstdMeta(ChunkMeta):
    """Also, per block, where its frame sits in the data file and how long it is."""

    COLUMNS: ClassVar[tuple[tuple[str, str], ...]] = (("crcs", "I"), ("offsets", "Q"), ("clens", "I"))

    offsets: list[int] = attrs.field(factory=list)
    clens: list[int] = attrs.field(factory=list)


class ZstdChunkStore(BlockFileStore[ZstdMeta]):
    """Compressed, log-structured chunk files with a per-block frame index."""

    NAME: ClassVar[str] = "zstd"
    DATA_SUFFIX: ClassVar[str] = ".zst"
    MAGIC: ClassVar[bytes] = b"HZS1"
    META: ClassVar[type[ChunkMeta]] = ZstdMeta

    def __init__(self, ctx: StoreContext) -> None:
        super().__init__(ctx)
        self.level = ctx.options.get("level", DEFAULT_LEVEL)
        try:
            zstandard.ZstdCompressor(level=self.level)
        except (TypeError, ValueError, zstandard.ZstdError) as exc:
            raise ConfigError(f"zstd level {self.level!r} is not usable: {exc}") from None
        self._local = threading.local()  # zstd contexts are not thread-safe: one pair per thread
        self._compressed = [0, 0]  # block bytes compressed, frame bytes they became (since start)

    @property
    def compression_totals(self) -> tuple[int, int]:
        """(bytes compressed, bytes written for them) since start: the chunkserver's metrics read it."""
        return self._compressed[0], self._compressed[1]

    def _compressor(self) -> zstandard.ZstdCompressor:
        cctx: zstandard.ZstdCompressor | None = getattr(self._local, "cctx", None)
        if cctx is None:
            cctx = self._local.cctx = zstandard.ZstdCompressor(level=self.level)
        return cctx

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        dctx: zstandard.ZstdDecompressor | None = getattr(self._local, "dctx", None)
        if dctx is None:
            dctx = self._local.dctx = zstandard.ZstdDecompressor()
        return dctx

    # -- reading -------------------------------------------------------------------

    def _read_blocks(self, fd: int, handle: int, meta: ZstdMeta, first: int, last: int) -> bytes:
        offsets, clens = meta.offsets, meta.clens
        out: list[bytes] = []
        index = first
        while index <= last:
            # Frames written together sit back to back: fetch such a run with one pread.
            run_start = offsets[index]
            run_end = run_start + clens[index]
            stop = index
            while (stop < last and offsets[stop + 1] == run_end
                   and run_end - run_start + clens[stop + 1] <= IO_PIECE):
                stop += 1
                run_end += clens[stop]
            raw = memoryview(pread_upto(fd, run_end - run_start, run_start))
            pos = 0
            for block in range(index, stop + 1):
                out.append(self._decode_block(handle, meta, block, raw[pos:pos + clens[block]]))
                pos += clens[block]
            index = stop + 1
        return out[0] if len(out) == 1 else b"".join(out)

    def _decode_block(self, handle: int, meta: ZstdMeta, block: int, frame: memoryview) -> bytes:
        """One block's bytes, or ``ChecksumMismatch`` if its frame is short, garbled or wrong."""
        bs = self.block_size
        size = min(bs, meta.length - block * bs)
        what = f"chunk {handle}"
        if len(frame) != meta.clens[block]:
            raise ChecksumMismatch(f"{what}: block {block} is cut short in the data file")
        try:
            # Check the declared size first: a garbled header must not make us allocate it.
            if zstandard.frame_content_size(frame) != size:
                raise ChecksumMismatch(f"{what}: block {block} frame declares the wrong size")
            data = self._decompressor().decompress(frame, max_output_size=size)
        except zstandard.ZstdError as exc:
            raise ChecksumMismatch(f"{what}: block {block} does not decompress ({exc})") from None
        if len(data) != size:
            raise ChecksumMismatch(f"{what}: block {block} decompresses to {len(data)} bytes, not {size}")
        verify_blocks(data, meta.crcs, first_block=block, block_size=bs, what=what)
        return data

    # -- writing -------------------------------------------------------------------

    def _put_blocks(self, fd: int, handle: int, meta: ZstdMeta, first: int, buf: bytearray,
                    dirty: tuple[int, int]) -> Path | None:
        bs = self.block_size
        cctx = self._compressor()
        view = memoryview(buf)
        frames = [cctx.compress(view[pos:pos + bs]) for pos in range(0, len(view), bs)]
        stop = first + len(frames)
        new_bytes = sum(len(frame) for frame in frames)
        self._compressed[0] += len(view)
        self._compressed[1] += new_bytes
        live = sum(meta.clens[:first]) + sum(meta.clens[stop:]) + new_bytes
        size = os.fstat(fd).st_size
        if size + new_bytes > 2 * live:
            return self._compact(fd, handle, meta, first, frames)
        offsets = []
        pos = size
        for frame in frames:
            offsets.append(pos)
            pos += len(frame)
        pwrite_all(fd, b"".join(frames), size)
        datasync(fd)
        meta.offsets[first:stop] = offsets
        meta.clens[first:stop] = [len(frame) for frame in frames]
        return None

    def _compact(self, fd: int, handle: int, meta: ZstdMeta, first: int, frames: list[bytes]) -> Path:
        """Write the next generation: live frames in block order, old ones copied unchanged."""
        stop = first + len(frames)
        count = max(len(meta.offsets), stop)
        new_gen = meta.gen + 1
        new_path = self._data_path(handle, new_gen)
        offsets: list[int] = []
        clens: list[int] = []
        pieces: list[bytes] = []
        pending = 0
        pos = 0
        out = os.open(new_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            block = 0
            while block < count:
                if first <= block < stop:
                    chunk = frames[block - first]
                    lengths = [len(chunk)]
                    block += 1
                else:  # a run of old frames that are adjacent on disk: one pread
                    run_start = meta.offsets[block]
                    lengths = [meta.clens[block]]
                    run_end = run_start + lengths[0]
                    block += 1
                    while (block < count and not first <= block < stop
                           and meta.offsets[block] == run_end and run_end - run_start < IO_PIECE):
                        lengths.append(meta.clens[block])
                        run_end += meta.clens[block]
                        block += 1
                    chunk = pread_upto(fd, run_end - run_start, run_start)
                    if len(chunk) != run_end - run_start:
                        raise ChecksumMismatch(f"chunk {handle}: block {block - 1} is cut short in the data file")
                for length in lengths:
                    offsets.append(pos)
                    clens.append(length)
                    pos += length
                pieces.append(chunk)
                pending += len(chunk)
                if pending >= IO_PIECE:
                    pwrite_all(out, b"".join(pieces), pos - pending)
                    pieces, pending = [], 0
            if pieces:
                pwrite_all(out, b"".join(pieces), pos - pending)
            datasync(out)
            fsync_dir(new_path.parent)  # its name too, before a sidecar record names it
        except BaseException:
            os.close(out)
            unlink_quiet(new_path)
            raise
        os.close(out)
        old_path = self._data_path(handle, meta.gen)
        meta.gen, meta.offsets, meta.clens = new_gen, offsets, clens
        return old_path

    def _expected_size(self, meta: ZstdMeta) -> int:
        return max((o + c for o, c in zip(meta.offsets, meta.clens)), default=0)


open_zstd_store = ZstdChunkStore.open


@hookimpl
def hercules_chunk_stores() -> Iterator[ChunkStoreSpec]:
    yield ChunkStoreSpec(name="zstd", open=open_zstd_store,
                         description="zstd frame per 64 KiB block, log-structured, random reads",
                         settings=SETTINGS)


__all__ = ["ZstdChunkStore", "ZstdMeta", "hercules_chunk_stores", "open_zstd_store"]
