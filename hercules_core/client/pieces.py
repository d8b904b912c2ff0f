"""Upload sources regrouped into the pieces the data path moves (one write mutation each)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import IO, Any

from hercules_core.plugins.types import Buffer

UploadSource = bytes | bytearray | memoryview | AsyncIterable[Buffer] | Iterable[Buffer] | IO[bytes]


async def rechunk(source: UploadSource, next_size: Any) -> AsyncIterator[bytes]:
    """Regroup any byte source into pieces of exactly ``next_size()`` bytes (the last may be short)."""
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
    buf = bytearray()
    if hasattr(source, "__aiter__"):
        async for part in source:
            buf += part
            while len(buf) >= next_size():
                size = next_size()
                yield bytes(buf[:size])
                del buf[:size]
    else:
        for part in source:
            buf += part
            while len(buf) >= next_size():
                size = next_size()
                yield bytes(buf[:size])
                del buf[:size]
    if buf:
        yield bytes(buf)
