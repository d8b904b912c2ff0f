"""The namespace calls: one master request each, with nothing to do at the chunkservers.

Each mutation carries a request id the master answers once, so the master policy's retries
after a lost reply never apply it twice (docs/consistency.md, "ambiguous outcomes").
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from hercules_core import messages as m
from hercules_core.errors import ProtocolError
from hercules_core.paths import normalize


class NamespaceCalls:
    """Mixed into ``Client``, which supplies ``_master`` (one master call under its retry policy)
    and ``_cached`` (a leased entry, client/entry_cache.py)."""

    async def _master(self, msg: Any, timeout: float = 30.0, retry_for: float | None = None) -> Any:
        raise NotImplementedError

    def _cached(self, path: str) -> m.Located | None:
        raise NotImplementedError

    async def mkdir(self, path: str) -> m.FileInfo:
        return await self._master(m.Mkdir(normalize(path)))

    async def create(self, path: str, replication: int | None = None, exclusive: bool = True) -> m.FileInfo:
        return await self._master(m.Create(normalize(path), replication, exclusive, request_id()))

    async def stat(self, path: str) -> m.FileInfo:
        path = normalize(path)
        cached = self._cached(path)  # a leased entry answers as the master would
        return cached.info if cached is not None else await self._master(m.Stat(path))

    async def list(self, path: str, recursive: bool = False, limit: int = 0, cursor: str = "") -> m.Listing:
        """One page of at most ``limit`` entries after ``cursor``; with ``limit`` 0, every entry
        (the master answers in pages that fit a frame; this follows their cursors)."""
        path = normalize(path)
        if limit:
            return await self._master(m.ListDir(path, recursive, limit, cursor))
        entries: list[m.FileInfo] = []
        async for page in _pages(cursor, lambda after: self._master(m.ListDir(path, recursive, 0, after))):
            entries.extend(page.entries)
        return m.Listing(entries)

    async def rename(self, source: str, target: str, overwrite: bool = False) -> None:
        await self._master(m.Rename(normalize(source, what="source"), normalize(target, what="target"), overwrite,
                                    request_id()))

    async def delete(self, path: str, recursive: bool = False) -> None:
        await self._master(m.Delete(normalize(path), recursive, request_id()))

    async def snapshot(self, source: str, target: str) -> m.FileInfo:
        """Copy-on-write snapshot of a file or directory tree."""
        return await self._master(m.Snapshot(normalize(source, what="source"), normalize(target, what="target"),
                                             request_id()))

    async def compose(self, target: str, sources: list[str], remove_sources: bool = True,
                      overwrite: bool = False) -> m.FileInfo:
        """Make ``target`` of the chunks of ``sources``, in order, shared copy-on-write (no byte is
        copied), and with ``remove_sources`` drop the sources, in one atomic step. Every source but
        the last must be a whole number of chunks long, else ``InvalidArgument`` naming it (copy
        the bytes instead)."""
        return await self._master(m.Compose(normalize(target, what="target"),
                                            [normalize(s, what="source") for s in sources],
                                            remove_sources, overwrite, request_id()))

    async def undelete(self, path: str) -> m.FileInfo:
        """Restore the most recently deleted entry at ``path`` from the trash."""
        return await self._master(m.Undelete(normalize(path), request_id()))

    async def trash(self, limit: int = 0, cursor: str = "") -> m.TrashList:
        """One page of the trash, or with ``limit`` 0 all of it (following the master's cursors)."""
        if limit:
            return await self._master(m.ListTrash(limit, cursor))
        entries: list[m.TrashEntry] = []
        async for page in _pages(cursor, lambda after: self._master(m.ListTrash(0, after))):
            entries.extend(page.entries)
        return m.TrashList(entries)

    async def purge_trash(self) -> int:
        """Empty the trash now (no restore afterwards); return how many chunks were freed."""
        return (await self._master(m.PurgeTrash(request_id()))).chunks

    async def cluster(self) -> m.ClusterInfo:
        return await self._master(m.ClusterStatus())

    async def chunk_servers(self, handle: int) -> m.ChunkLocation:
        return await self._master(m.FindChunk(handle))


async def _pages(cursor: str, fetch: Callable[[str], Awaitable[Any]]) -> AsyncIterator[Any]:
    """Every page from ``cursor`` on; a cursor that does not move on is the master's error."""
    seen = {cursor}
    while True:
        page = await fetch(cursor)
        yield page
        if not page.next_cursor:
            return
        if page.next_cursor in seen:
            raise ProtocolError(f"listing cursor {page.next_cursor!r} came back twice")
        cursor = page.next_cursor
        seen.add(cursor)


def request_id() -> str:
    """Unique, and ascending in time: the master's indexes of request ids and upload names
    then grow at their right edge, so one commit touches a few pages instead of one per id."""
    return f"{time.time_ns():016x}{uuid.uuid4().hex[:16]}"
