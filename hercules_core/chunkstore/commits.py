"""A block-file store's sidecars on disk: reading a chunk's log, committing its records, and the
journals of small writes (``sidecar`` is the format; this is the store's use of it).

``SidecarLogs`` is the part of ``BlockFileStore`` that decides *how* a change reaches the
sidecar: appended to the log kept open, with its bytes journalled or not, or as a fresh log
(after a torn tail, or before a synced overwrite that a replay of older journals would undo),
and the data file synced whenever a log's journals are dropped. The start-up scan calls
``_load_log`` and ``_replay``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from hercules_core.chunkstore.fileio import datasync
from hercules_core.chunkstore.layout import ChunkLayout
from hercules_core.chunkstore.memory import OpenFiles, OpenLogs, SidecarCache
from hercules_core.chunkstore.sidecar import (
    ChunkMeta,
    commit_sidecar,
    journal_record,
    newest_record,
    rewrite_sidecar,
    seal,
)
from hercules_core.errors import ChecksumMismatch, NotFound

M = TypeVar("M", bound=ChunkMeta)


class SidecarLogs(Generic[M]):
    """Sidecar reads and commits of ``BlockFileStore`` (which sets every attribute below)."""

    MAGIC: ClassVar[bytes]
    META: ClassVar[type[ChunkMeta]]
    layout: ChunkLayout
    block_size: int
    session: str
    _sidecars: SidecarCache[M]
    _files: OpenFiles[int]
    _logs: OpenLogs
    _rewrite: set[int]  # sidecars whose log ended in a torn record
    _journaled: set[int]  # sidecars whose log holds journal records

    if TYPE_CHECKING:
        def _put_unsynced(self, fd: int, buf: memoryview, offset: int) -> None: ...

    def _data_path(self, handle: int, gen: int) -> Path:
        """The data file of ``handle``'s generation ``gen`` (a compaction writes ``gen + 1``)."""
        return self.layout.data_path(handle, gen)

    def _blocks_for(self, length: int) -> int:
        return -(-length // self.block_size)

    def _load(self, handle: int) -> M:
        """The chunk's sidecar read from disk, checked; ``NotFound`` without one, ``ChecksumMismatch``
        if damaged. Operations use ``_meta``, the copy in memory."""
        return self._load_log(handle)[0]

    def _load_log(self, handle: int) -> tuple[M, list[tuple[int, bytes]]]:
        """``_load``, with the journals of the sidecar's log (for the start-up scan's replay)."""
        what = f"chunk {handle}"
        try:
            raw = self.layout.meta_path(handle).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"chunk {handle} is not in this store") from None
        read = newest_record(self.MAGIC, raw, what)
        if not read.clean:
            self._rewrite.add(handle)
        if read.journals:
            self._journaled.add(handle)
        meta: M = self.META.decode(read.body, what)  # type: ignore[assignment]
        if len(meta.crcs) != self._blocks_for(meta.length):
            raise ChecksumMismatch(f"{what}: sidecar lists {len(meta.crcs)} blocks for {meta.length} bytes")
        return meta, read.journals

    def _replay(self, handle: int, meta: M, journals: list[tuple[int, bytes]]) -> None:
        """Write a log's journals into the data file again, in log order, and sync it: after a
        power loss the page cache's copy of them may be gone. Bytes past the chunk's length
        (from a later write the log no longer covers) are cut by the caller."""
        fd = os.open(self._data_path(handle, meta.gen), os.O_WRONLY)
        try:
            for offset, data in journals:
                self._put_unsynced(fd, memoryview(data), offset)
            datasync(fd)
        finally:
            os.close(fd)

    def _meta(self, handle: int) -> M:
        """The chunk's sidecar from memory, else from disk (and kept)."""
        meta = self._sidecars.get(handle)
        if meta is None:
            meta = self._load(handle)
            self._sidecars.put(handle, meta)
        return meta

    def _save(self, handle: int, meta: M, fd: int | None = None, journal: tuple[int, memoryview] | None = None,
              overwrote: bool = False) -> None:
        """Commit ``meta`` (changed in place) to disk, and so to memory; on failure the copy in
        memory is dropped, as ``meta`` may hold changes the disk never got.

        ``fd``: the data file, after a write (synced, or not when ``journal`` holds its bytes);
        ``overwrote``: the write replaced bytes the chunk had. A fresh log is started after a
        torn tail (an append there could not be found again) and by a synced overwrite over a
        log with journals (a replay of those could write older bytes over it; an append cannot
        meet them, as a chunk only grows).
        """
        sealed = seal(self.MAGIC, meta.encode())
        log = self._logs.take_log(handle)
        path = self.layout.meta_path(handle)
        journaled = handle in self._journaled
        data_synced = fd is not None and journal is None
        try:
            if handle in self._rewrite or (journaled and data_synced and overwrote):
                if log is not None:
                    os.close(log[0])
                if (journaled or journal) and not data_synced:
                    self._sync_data(handle, meta, fd)
                rewrite_sidecar(path, sealed, self.session)  # a fresh log
                self._forget_torn(handle)
            else:
                sync = (lambda: self._sync_data(handle, meta, fd)) if journaled or journal else None
                log, replaced = commit_sidecar(path, sealed, self.session, log, keep=True,
                                               journal=journal_record(*journal) if journal else b"",
                                               sync_data=sync)
                if log is not None:
                    self._logs.give_log(handle, log)
                if replaced:  # by this record alone: no journals left
                    self._journaled.discard(handle)
                elif journal:
                    self._journaled.add(handle)
        except BaseException:
            self._sidecars.drop(handle)
            raise
        self._sidecars.put(handle, meta)

    def _sync_data(self, handle: int, meta: M, fd: int | None) -> None:
        """Make the data file's bytes durable: before a log with journals is replaced."""
        if fd is not None:
            datasync(fd)
            return
        fd = self._open_data(handle, meta)
        try:
            datasync(fd)
        finally:
            self._files.give(handle, meta.gen, fd)

    def forget(self, handle: int) -> None:
        """Drop what is kept in memory of ``handle``: its next operation reads the sidecar from disk
        again, so the scrubber, which calls this before it re-reads a chunk, finds bit rot there."""
        self._sidecars.drop(handle)
        self._files.close(handle)
        self._logs.close(handle)

    def _forget_torn(self, handle: int) -> None:
        """The sidecar is gone or new: no torn tail to rewrite past, no journals in its log."""
        self._rewrite.discard(handle)
        self._journaled.discard(handle)

    def _open_data(self, handle: int, meta: M) -> int:
        """The data file's descriptor, now the caller's: ``_files.give`` it back, or close it."""
        fd = self._files.take(handle, meta.gen)
        if fd is not None:
            return fd
        try:
            return os.open(self._data_path(handle, meta.gen), os.O_RDWR)
        except FileNotFoundError:
            raise ChecksumMismatch(f"chunk {handle}: data file is missing") from None


__all__ = ["SidecarLogs"]
