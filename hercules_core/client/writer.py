"""The one windowed writer behind ``write``, ``write_stream`` and ``upload``.

A source of any kind is cut into pieces (each within one chunk, at most ``PIECE`` bytes) and up
to ``window`` of them are in flight at once; the source is read only as the window frees, so an
upload holds at most ``window`` pieces in memory. When one piece fails, the others are cancelled
*and awaited* before the error is raised: no piece of a failed write can still land after the
caller's next write (the nemesis found that a failed write's bytes could otherwise overwrite an
acknowledged one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import attrs

from hercules_core.client.pieces import UploadSource, piece_size, rechunk
from hercules_core.config import check_file_end
from hercules_core.plugins.types import Buffer

WritePiece = Callable[[int, Buffer], Awaitable[None]]  # (file offset, data): one mutation, retried


@attrs.frozen
class WindowedWriter:
    write_piece: WritePiece
    chunk_size: int
    window: int

    async def write(self, source: UploadSource, start: int = 0, total: int | None = None) -> int:
        """Write ``source`` from file offset ``start``; return the end offset. ``total``, the
        source's length if known, only sizes the buffers of a small upload."""
        offset = start
        window = asyncio.Semaphore(self.window)

        async def one(at: int, piece: Buffer) -> None:
            try:
                await self.write_piece(at, piece)
            finally:
                window.release()

        # A task group: when a piece fails, the feeding loop and the other pieces are cancelled
        # and awaited before the group raises.
        try:
            async with asyncio.TaskGroup() as group:
                async for piece in rechunk(source, lambda: piece_size(offset, self.chunk_size), total):
                    check_file_end(offset + len(piece), f"data at offset {offset}")
                    await window.acquire()
                    group.create_task(one(offset, piece))
                    offset += len(piece)
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0]  # noqa: B904 - the piece's own error is the write's error
        return offset
