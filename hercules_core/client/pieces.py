"""Upload sources regrouped into the pieces the data path moves (one write mutation each)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import IO

from hercules_core.plugins.types import Buffer

UploadSource = bytes | bytearray | memoryview | AsyncIterable[Buffer] | Iterable[Buffer] | IO[bytes]
PIECE = 4 << 20  # unit of data movement: a write mutation or a read request


def piece_size(offset: int, chunk_size: int) -> int:
    """The size of the piece that starts at ``offset``: up to ``PIECE``, never across a chunk boundary."""
    return min(PIECE, chunk_size - offset % chunk_size)


def split(offset: int, length: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """(offset, length) pieces of a range, each within one chunk and at most ``PIECE`` long."""
    end = offset + length
    while offset < end:
        step = min(end - offset, piece_size(offset, chunk_size))
        yield offset, step
        offset += step


class PieceAssembler:
    """Packs parts of any size into pieces of exactly ``next_size()`` bytes, copying each byte at most once.

    A yielded piece is never touched again (its write may still be in flight): each piece gets a
    fresh buffer, except that a ``bytes`` part (immutable) covering a whole piece is passed on as a
    view. ``next_size()`` is asked when a piece is begun, after the previous one was taken.
    """

    def __init__(self, next_size: Callable[[], int], total: int | None = None) -> None:
        self._next_size = next_size
        self._left = total  # bytes still expected, when the source said how many: a small upload's
        self._buf: bytearray | None = None  # buffer is its size, not a whole piece's
        self._filled = 0

    def add(self, part: Buffer) -> Iterator[Buffer]:
        """The pieces that ``part`` completes, in order."""
        view = memoryview(part).cast("B")
        immutable = isinstance(view.obj, bytes)
        pos, end = 0, len(view)
        while pos < end:
            if self._buf is None:
                size = self._next_size()
                if self._left is not None and self._left > 0:
                    size = min(size, self._left)
                if immutable and end - pos >= size:
                    self._took(size)
                    yield view[pos:pos + size]
                    pos += size
                    continue
                self._buf = bytearray(size)
            take = min(len(self._buf) - self._filled, end - pos)
            self._buf[self._filled:self._filled + take] = view[pos:pos + take]
            self._filled += take
            pos += take
            if self._filled == len(self._buf):
                piece, self._buf, self._filled = self._buf, None, 0
                self._took(len(piece))
                yield piece

    def _took(self, size: int) -> None:
        if self._left is not None:
            self._left -= size

    def rest(self) -> Buffer:
        """The short last piece (empty if none); the assembler is empty afterwards."""
        piece = memoryview(self._buf)[:self._filled] if self._buf is not None else memoryview(b"")
        self._buf, self._filled = None, 0
        return piece


async def rechunk(source: UploadSource, next_size: Callable[[], int], total: int | None = None
                  ) -> AsyncIterator[Buffer]:
    """Regroup any byte source into pieces of exactly ``next_size()`` bytes (the last may be short);
    ``total``, the source's length if known, only sizes the buffers."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source)
        pos = 0
        while pos < len(view):
            size = next_size()
            yield view[pos:pos + size]
            pos += size
        return
    if hasattr(source, "read"):
        loop = asyncio.get_running_loop()
        while True:
            piece = await loop.run_in_executor(None, source.read, next_size())
            if not piece:
                return
            yield piece
    assembler = PieceAssembler(next_size, total)
    if hasattr(source, "__aiter__"):
        async for part in source:
            for piece in assembler.add(part):
                yield piece
    else:
        for part in source:
            for piece in assembler.add(part):
                yield piece
    last = assembler.rest()
    if len(last):
        yield last
