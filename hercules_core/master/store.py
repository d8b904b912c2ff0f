"""The interface of the master's durable metadata, implemented by metadata-store plugins.

Chunk *locations* are not here: they are soft state rebuilt from chunkserver reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import attrs

from hercules_core.messages import FileInfo


@attrs.frozen
class ChunkRef:
    handle: int
    index: int
    version: int
    refs: int = 1  # > 1 while a snapshot shares the chunk: the next write copies it first


@attrs.frozen
class FreedChunks:
    """Handles no file references any more: their replicas are to be deleted."""

    handles: list[int]


class MetadataStore(Protocol):
    """Namespace and chunk metadata; every mutation is durable when its coroutine returns."""

    async def mkdir(self, path: str) -> FileInfo: ...

    async def create(self, path: str, replication: int, exclusive: bool = True) -> FileInfo: ...

    async def stat(self, path: str) -> FileInfo: ...

    async def stat_id(self, file_id: int) -> FileInfo: ...

    async def list(self, path: str, recursive: bool, limit: int, cursor: str) -> tuple[list[FileInfo], str]: ...

    async def rename(self, source: str, target: str, overwrite: bool) -> FreedChunks: ...

    async def delete(self, path: str, recursive: bool) -> FreedChunks:
        """Move ``path`` to the trash (nothing is freed until ``purge_trash``)."""

    async def undelete(self, path: str) -> FileInfo: ...

    async def trash(self) -> list[tuple[str, float, FileInfo]]:
        """(original path, deletion time, entry) for everything in the trash."""

    async def purge_trash(self, deleted_before: float) -> FreedChunks: ...

    async def handles_under(self, path: str) -> list[int]: ...

    async def snapshot(self, source: str, target: str) -> FileInfo: ...

    async def new_handle(self, version: int) -> int: ...

    async def repoint(self, file_id: int, index: int, old: int, new: int) -> FreedChunks: ...

    async def replication_of(self, handles: Sequence[int]) -> dict[int, int]: ...

    async def chunk(self, file_id: int, index: int) -> ChunkRef | None: ...

    async def last_chunk(self, file_id: int) -> ChunkRef | None: ...

    async def add_chunk(self, file_id: int, index: int) -> ChunkRef:
        """Allocate a new handle (never reused, also across restarts) at version 1."""

    async def set_version(self, handle: int, version: int) -> None: ...

    async def versions(self, handles: Sequence[int]) -> dict[int, int]:
        """Current versions of the given handles; unknown handles are absent."""

    async def extend_size(self, file_id: int, size: int) -> None: ...

    async def chunk_total(self) -> int: ...
