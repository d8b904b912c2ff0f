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
- **Request ids.** ``create``, ``rename``, ``publish``, ``delete``, ``undelete``, ``snapshot`` and
  ``compose`` take a keyword ``request_id``. When it is non-empty the store remembers (request id,
  result) in the same atomic commit as the mutation, for at least an hour; a second
  call with that id returns the remembered result without applying anything (a
  ``FileInfo`` as first returned; ``FreedChunks([])`` for freed chunks, since the first
  caller received them). A call that failed is not remembered, so its retry runs again.
- **Refuse, never start empty, on damage.** Opening a store whose files are corrupt,
  truncated or missing while signs of an earlier database remain raises a
  ``HerculesError`` naming the file.
- **No blocking of the event loop.** Blocking I/O runs on threads or is truly async.

``hercules_core.testing.metadata_contract`` turns each of these into tests a store runs
against itself. Optional beyond the protocol: ``handle_batches(size)``, an async iterator
over ``all_handles`` in ascending batches (see ``handle_batches`` below), and ``backup`` and
``restore`` on the store's ``MetadataStoreSpec`` (for ``hercules backup``/``restore``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import attrs

from hercules_core.messages import FileInfo, PackedExtent


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


@attrs.frozen
class PackUsage:
    """A sealed pack: bytes its records take (to the last published one) and bytes still live."""

    handle: int
    used: int
    live: int


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

    async def trash(self, limit: int = 0, cursor: str = "") -> tuple[list[tuple[str, float, FileInfo]], str]:
        """One page of (original path, deletion time, entry) in the trash, and the next page's cursor."""

    async def purge_trash(self, deleted_before: float) -> FreedChunks: ...

    async def handles_under(self, path: str) -> list[int]: ...

    async def snapshot(self, source: str, target: str, *, request_id: str = "") -> FileInfo:
        """Copy the tree at ``source`` to ``target``, sharing every chunk (refs + 1)."""

    async def compose(self, target: str, sources: Sequence[str], chunk_size: int, *, overwrite: bool = False,
                      remove_sources: bool = False, request_id: str = "") -> tuple[FileInfo, FreedChunks]:
        """Make the file ``target`` from the chunk lists of the files ``sources``, in order, in one
        atomic commit, sharing every chunk as ``snapshot`` does (refs + 1; no byte moves).

        Source ``k``'s chunk ``i`` becomes the target's chunk ``base_k + i``, where ``base_k`` is
        the number of ``chunk_size`` chunks the sources before it span; a chunk never created
        (version 0) or past its source's end is left out (the target reads zeros there, as the
        source did). The target's size is the sum of the sources', its replication the highest
        of theirs; its parent directories are made as ``publish`` makes them.

        Refused, changing nothing: no sources, a source named twice or equal to ``target``
        (``InvalidArgument``), a source missing (``NotFound``) or a directory (``IsADirectory``),
        a source but the last whose size is not a multiple of ``chunk_size`` (``InvalidArgument``
        naming it), ``target`` a directory (``IsADirectory``) or taken without ``overwrite``
        (``AlreadyExists``). An overwritten target has its unshared chunks freed; with
        ``remove_sources`` the sources are unlinked outright (not into the trash: their bytes live
        on in the target), freeing only the chunks left out. Returns the target's entry and the
        freed chunks (on a replayed id: as first returned, with ``FreedChunks([])``)."""

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

    # -- packed small files (docs/consistency.md, "Packed small files") --------------------------

    async def open_pack(self, replication: int, full: int = 0, lane: int = 0) -> tuple[int, ChunkRef]:
        """Seal pack ``full`` (0: none); the (hidden file id, chunk) of ``lane``'s open pack, a new
        one with its chunk at version 0 if none is open."""

    async def publish_packed(self, path: str, extent: PackedExtent, replication: int, overwrite: bool, *,
                             request_id: str = "") -> tuple[FileInfo, FreedChunks]:
        """Make ``path`` (and its parents) the file of the record ``extent`` of a pack, in one commit."""

    async def extent(self, file_id: int) -> tuple[PackedExtent, ChunkRef] | None:
        """A packed file's extent and its pack's chunk; ``None`` for any other file."""

    async def pack_usage(self) -> list[PackUsage]: ...

    async def live_records(self, handle: int) -> list[PackedExtent]:
        """The records of a pack some entry names, each once, by offset."""

    async def repoint_records(self, old: int, moves: list[tuple[int, PackedExtent]]) -> FreedChunks:
        """Point the entries naming each record (by offset) of pack ``old`` at its copy, in one
        commit, and drop the pack (its chunk freed) if nothing names it any more."""

    async def all_handles(self) -> list[int]:
        """Every chunk handle in the namespace, ascending: after a restore, the master compares
        these with the chunkservers' reports to find chunks no live server holds."""


async def handle_batches(store: MetadataStore, size: int = 50_000) -> AsyncIterator[list[int]]:
    """Every handle of ``store``, ascending, in batches of at most ``size``: through the store's
    own ``handle_batches`` where it has one (each batch a short read, so a sweep over millions
    of chunks neither holds up writers nor lists them all at once), else ``all_handles``."""
    batches = getattr(store, "handle_batches", None)
    if batches is None:
        handles = await store.all_handles()
        for start in range(0, len(handles), size):
            yield handles[start:start + size]
        return
    async for batch in batches(size):
        yield batch
