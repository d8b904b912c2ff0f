"""A streaming upload fed from blocking code: one ``Client.upload`` whose source is a queue.

The blocking writer hands blocks over one at a time (at most one waits in the queue, a few
pieces are in flight), so memory stays bounded however large the file; ``close`` publishes it
atomically, ``abort`` makes the upload fail so that nothing is published and its hidden file
is dropped.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from hercules_core.errors import HerculesError
from hercules_core.messages import FileInfo
from hercules_core.plugins.types import Buffer

Upload = Callable[[AsyncIterator[Buffer]], Coroutine[Any, Any, FileInfo]]
_END = object()  # the last block was written: publish
_ABORT = object()  # the writer gave up: the upload must not be published


class UploadStream:
    def __init__(self, loop: asyncio.AbstractEventLoop, upload: Upload, path: str) -> None:
        self.path = path
        self._loop = loop
        self._queue: asyncio.Queue[Any] = asyncio.run_coroutine_threadsafe(_new_queue(), loop).result()
        self._upload: Future[FileInfo] = asyncio.run_coroutine_threadsafe(upload(self._blocks()), loop)
        self.closed = False

    async def _blocks(self) -> AsyncIterator[Buffer]:
        while True:
            block = await self._queue.get()
            if block is _END:
                return
            if block is _ABORT:
                raise OSError(errno.ECANCELED, f"{self.path}: write abandoned; nothing was published")
            yield block

    def _put(self, item: Any) -> None:
        """Hand an item to the upload, waiting while one is already queued; fail with its error."""
        put = asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop)
        wait([put, self._upload], return_when=FIRST_COMPLETED)
        if not put.done():  # the upload ended (it failed) before taking the item
            put.cancel()
            self._upload.result()
            raise OSError(errno.EIO, f"{self.path}: the upload ended before its data did")
        put.result()

    def write(self, data: Buffer) -> int:
        """Queue ``data`` (copied if mutable: the caller may reuse its buffer at once)."""
        if self.closed:
            raise ValueError(f"{self.path}: write to a closed upload")
        block = data if isinstance(data, bytes) else bytes(data)
        if block:
            self._put(block)
        return len(block)

    def close(self) -> FileInfo:
        """Publish the file; raises the upload's error if it failed."""
        if not self.closed:
            self.closed = True
            self._put(_END)
        return self._upload.result()

    def abort(self) -> None:
        """Give up: nothing is published (an upload that already ended is left as it is)."""
        self.closed = True
        if self._upload.done():
            return
        try:
            self._put(_ABORT)
            self._upload.result()
        except (OSError, HerculesError):
            pass

    def __enter__(self) -> UploadStream:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()


async def _new_queue() -> asyncio.Queue[Any]:
    return asyncio.Queue(maxsize=1)  # made on the loop it is used on
