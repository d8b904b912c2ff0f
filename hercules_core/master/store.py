"""The interface of the master's durable metadata, implemented by metadata-store plugins.

Chunk *locations* are not here: they are soft state rebuilt from chunkserver reports.

What an implementation must guarantee (the built-in ``sqlite`` store is the reference;
``docs/durability.md`` explains why each matters):

- **Durable on return.** A mutation's coroutine returns (or raises) only after its
  effect is durable (fsynced, or replicated to a quorum): a crash or power loss right
  after cannot undo it. Concurrent mutations may share one commit (group commit).
- **Atomic per call.** Each mutation applies entirely or not at all; one that raises
  leaves nothing behind and does not affect other callers' mutations.
- **Serializable.** Calls behave as if applied one at a time, in an order consistent
  with their start and return. A read issued after a mutation returned sees it.
- **Handles and file ids are never reused,** also across restarts (and restores, where the
  store has one).
- **Request ids.** ``create``, ``rename``, ``publish``, ``delete``, ``undelete`` and ``snapshot``
  take a keyword ``request_id``. When it is non-empty the store remembers (request id,
  result) in the same atomic commit as the mutation, for at least an hour; a second
  call with that id returns the remembered result without applying anything (a
  ``FileInfo`` as first returned; ``FreedChunks([])`` for freed chunks, since the first
  caller received them). A call that failed is not remembered, so its retry runs again.
- **Refuse, never start empty, on damage.** Opening a store whose files are corrupt,
  truncated or missing while signs of an earlier database remain raises a
  ``HerculesError`` naming the file.
- **No blocking of the event loop.** Blocking I/O runs on threads or is truly async.
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

    async def create(self, path: str, replication: int, exclusive: bool = True, *,
                     request_id: str = "", first_chunk: bool = False) -> FileInfo:
        """A new empty file; ``AlreadyExists`` if ``exclusive`` and it exists (not on a replayed id).
        ``first_chunk`` also adds its chunk 0 at version 0 in the same commit, as ``add_chunk`` would."""

    async def stat(self, path: str) -> FileInfo: ...

    async def stat_id(self, file_id: int) -> FileInfo: ...

    async def list(self, path: str, recursive: bool, limit: int, cursor: str) -> tuple[list[FileInfo], str]: ...

    async def rename(self, source: str, target: str, overwrite: bool, *,
                     request_id: str = "") -> FreedChunks:
        """Move ``source`` to ``target``; a file it overwrites has its unshared chunks freed."""

    async def publish(self, source: str, target: str, size: int, overwrite: bool, *,
                      request_id: str = "") -> tuple[FileInfo, FreedChunks]:
        """Finish an upload atomically: make ``target``'s parent directories, raise ``source``'s
        size to at least ``size`` and move it to ``target`` as ``rename`` would; return the
        published entry (on a replayed id: as first returned, with ``FreedChunks([])``)."""

    async def delete(self, path: str, recursive: bool, *, request_id: str = "") -> FreedChunks:
        """Move ``path`` to the trash (nothing is freed until ``purge_trash``)."""

    async def undelete(self, path: str, *, request_id: str = "") -> FileInfo:
        """Put back the most recently deleted entry that lived at ``path``."""

    async def trash(self) -> list[tuple[str, float, FileInfo]]:
        """(original path, deletion time, entry) for everything in the trash."""

    async def purge_trash(self, deleted_before: float) -> FreedChunks: ...

    async def handles_under(self, path: str) -> list[int]: ...

    async def snapshot(self, source: str, target: str, *, request_id: str = "") -> FileInfo:
        """Copy the tree at ``source`` to ``target``, sharing every chunk (refs + 1)."""

    async def new_handle(self, version: int) -> int: ...

    async def repoint(self, file_id: int, index: int, old: int, new: int) -> FreedChunks: ...

    async def replication_of(self, handles: Sequence[int]) -> dict[int, int]: ...

    async def chunk(self, file_id: int, index: int) -> ChunkRef | None: ...

    async def last_chunk(self, file_id: int) -> ChunkRef | None: ...

    async def add_chunk(self, file_id: int, index: int) -> ChunkRef:
        """Allocate a new handle (never reused, also across restarts) at version 0.

        Version 0 means "being created": the master sets version 1 once replicas exist, so a
        crash in between leaves a chunk that is simply created again, never one that is lost.
        """

    async def set_version(self, handle: int, version: int) -> None: ...

    async def versions(self, handles: Sequence[int]) -> dict[int, int]:
        """Current versions of the given handles; unknown handles are absent."""

    async def extend_size(self, file_id: int, size: int) -> None: ...

    async def chunk_total(self) -> int: ...

    async def all_handles(self) -> list[int]:
        """Every chunk handle in the namespace, ascending: after a restore, the master compares
        these with the chunkservers' reports to find chunks no live server holds."""
