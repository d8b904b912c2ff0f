"""``SqliteMetadataStore``: the ``MetadataStore`` interface over one SQLite database (WAL).

Every mutation, and every read that may scan much, goes to the db thread (``commits``).
Short indexed lookups (stat, chunk locations, versions, listing pages) are answered at
once on the event loop from a second, read-only connection: WAL readers see the last
commit and never wait for the writer. The queries themselves live in ``namespace``,
``trash`` and ``chunks``; this module only decides where each one runs.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from hercules_core.builtin.metadata_sqlite import chunks, compose, namespace, packs, trash
from hercules_core.builtin.metadata_sqlite.commits import BATCH_MAX, GroupCommit
from hercules_core.builtin.metadata_sqlite.files import (
    check_database_file,
    corrupt_error,
    lock_directory,
    read_marker,
    refuse_fresh_start,
    side_files,
    write_marker,
)
from hercules_core.builtin.metadata_sqlite.inodes import info
from hercules_core.builtin.metadata_sqlite.pathcache import CACHE_ENTRIES, Connection, PathCache, ReaderView, WriterView
from hercules_core.builtin.metadata_sqlite.requests import Pruner, once, replay_publish
from hercules_core.builtin.metadata_sqlite.schema import prepare
from hercules_core.errors import ConfigError, HerculesError
from hercules_core.master.store import ChunkRef, FreedChunks, PackUsage
from hercules_core.messages import FileInfo, PackedExtent

log = logging.getLogger(__name__)
T = TypeVar("T")
LOOKUP_PAGE = 1000  # listing pages up to this size are answered on the event loop


class SqliteMetadataStore:
    def __init__(self, path: Path, *, cache_mib: int = 32, batch_max: int = BATCH_MAX,
                 check: str = "quick", path_cache: int = CACHE_ENTRIES) -> None:
        self._path = Path(path)
        self._cache_mib = cache_mib
        self._check = check  # "quick" (PRAGMA quick_check), "full" (integrity_check) or "none"
        self._reader: Connection | None = None  # the event loop's lookups (see ``_lookup``)
        self._paths = PathCache(path_cache)  # directory ids, shared by both connections (see ``pathcache``)
        self._lock_fd: int | None = None
        self._prune = Pruner()
        self._commits = GroupCommit(self._path, self._open, self._release_lock, self._prune, batch_max)
        self._closing = False

    @property
    def path(self) -> Path:
        return self._path

    @property
    def counters(self) -> dict[str, float]:
        """Commit batching so far: batches, mutations, reads, largest batch, failed batches, and the
        seconds all COMMITs took (the master's metrics read these)."""
        return self._commits.counters

    # -- where an operation runs -----------------------------------------------------------------

    async def _submit(self, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
        if self._closing or not self._commits.alive:
            raise HerculesError(f"metadata store {self._path} is not open")
        return await self._commits.submit(fn, write)

    async def _mutate(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._submit(fn, True)

    async def _query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._submit(fn, False)

    def _lookup(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A short indexed read, answered at once on the caller's thread from committed state.

        WAL lets this connection read while the db thread writes, so the hot lookups (stat,
        chunk locations, versions) skip the queue and two thread hand-offs. Every mutation a
        caller was told about is committed, hence visible; one read transaction makes the
        few statements of a lookup see one snapshot.
        """
        db = self._reader
        if db is None or self._closing:
            raise HerculesError(f"metadata store {self._path} is not open")
        view = db.paths
        assert isinstance(view, ReaderView)
        started = view.start(bypass=False)
        try:
            result = self._read_once(db, fn)
        except HerculesError:  # e.g. NotFound: as suspect as an answer if a cached id was stale
            if view.valid(started):
                raise
        else:
            if view.valid(started):
                return result
        # a directory moved while this ran: a cached id may have been stale, so ask again without them
        view.start(bypass=True)
        return self._read_once(db, fn)

    def _read_once(self, db: Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        db.execute("BEGIN")
        try:
            return fn(db)
        finally:
            db.execute("COMMIT")
            self.counters["reads"] += 1

    # -- opening (on the db thread) and closing ----------------------------------------------------

    def _busy(self, lock_path: Path) -> HerculesError:
        return ConfigError(f"{lock_path} is locked: another master (or a restore) is using {self._path.parent}")

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def _open(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_directory(self._path.parent, self._busy)
        marker = read_marker(self._lock_fd)
        fresh = not self._path.exists() or self._path.stat().st_size == 0
        if fresh:
            refuse_fresh_start(self._path, marker)
            log.info("creating a new, empty metadata database at %s", self._path)
        else:
            check_database_file(self._path)
        try:
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, factory=Connection)
            db.paths = WriterView(self._paths)
        except sqlite3.Error as exc:
            raise HerculesError(f"cannot open metadata database {self._path}: {exc}") from None
        try:
            prepare(db, self._path, fresh=fresh, cache_mib=self._cache_mib, check=self._check)
        except sqlite3.OperationalError as exc:  # locked, unreadable, I/O error: not damage as such
            db.close()
            raise HerculesError(f"cannot open metadata database {self._path}: {exc}") from None
        except sqlite3.DatabaseError as exc:  # SQLITE_CORRUPT, SQLITE_NOTADB
            db.close()
            raise corrupt_error(self._path, exc) from None
        except BaseException:
            db.close()
            raise
        if not marker.strip():
            write_marker(self._lock_fd, self._path, "in use since")
        return db

    async def open(self) -> None:
        await self._commits.start()
        self._reader = self._open_reader()

    def _open_reader(self) -> Connection:
        reader = sqlite3.connect(self._path, isolation_level=None, factory=Connection)
        reader.paths = ReaderView(self._paths)
        reader.execute("PRAGMA query_only=ON")
        reader.execute(f"PRAGMA cache_size=-{int(self._cache_mib) * 1024}")
        return reader

    async def close(self) -> None:
        if not self._commits.alive:
            self._release_lock()
            return
        self._closing = True
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        await self._commits.stop()  # runs after everything queued before it

    # -- namespace -----------------------------------------------------------------------------

    async def mkdir(self, path: str) -> FileInfo:
        return await self._mutate(lambda db: info(namespace.make_dirs(db, path), path, 0))

    async def create(self, path: str, replication: int, exclusive: bool = True, *,
                     request_id: str = "", first_chunk: bool = False) -> FileInfo:
        return await self._mutate(once(request_id, f"create {path}", lambda db: namespace.create(
            db, path, replication, exclusive, first_chunk)))

    async def stat(self, path: str) -> FileInfo:
        return self._lookup(lambda db: namespace.stat(db, path))

    async def stat_id(self, file_id: int) -> FileInfo:
        return self._lookup(lambda db: namespace.stat_id(db, file_id))

    async def list(self, path: str, recursive: bool, limit: int, cursor: str) -> tuple[list[FileInfo], str]:
        def op(db: sqlite3.Connection) -> tuple[list[FileInfo], str]:
            return namespace.list_page(db, path, recursive, limit, cursor)

        return self._lookup(op) if not recursive and 0 < limit <= LOOKUP_PAGE else await self._query(op)

    async def rename(self, source: str, target: str, overwrite: bool, *,
                     request_id: str = "") -> FreedChunks:
        return await self._mutate(once(request_id, f"rename {source} {target}",
                                       lambda db: namespace.move(db, source, target, overwrite)))

    async def publish(self, source: str, target: str, size: int, overwrite: bool, *,
                      request_id: str = "") -> tuple[FileInfo, FreedChunks]:
        return await self._mutate(once(request_id, f"publish {source} {target}", lambda db: namespace.publish(
            db, source, target, size, overwrite), replay_publish))

    async def delete(self, path: str, recursive: bool, *, request_id: str = "") -> FreedChunks:
        """Move ``path`` into the hidden trash; its chunks stay until the grace period ends."""
        return await self._mutate(once(request_id, f"delete {path}", lambda db: trash.delete(db, path, recursive)))

    async def undelete(self, path: str, *, request_id: str = "") -> FileInfo:
        """Put back the most recently deleted entry that lived at ``path``."""
        return await self._mutate(once(request_id, f"undelete {path}", lambda db: trash.undelete(db, path)))

    async def trash(self, limit: int = 0, cursor: str = "") -> tuple[list[tuple[str, float, FileInfo]], str]:
        """One page of the trash, oldest first, and the cursor of the next page ("" at the end)."""
        return await self._query(lambda db: trash.trash_page(db, limit, cursor))

    async def purge_trash(self, deleted_before: float) -> FreedChunks:
        """Drop trash entries older than the grace period; return chunks nothing references now."""
        return await self._mutate(lambda db: trash.purge_trash(db, deleted_before))

    # -- snapshots and copy-on-write --------------------------------------------------------------

    async def handles_under(self, path: str) -> list[int]:
        return await self._query(lambda db: namespace.handles_under(db, path))

    async def snapshot(self, source: str, target: str, *, request_id: str = "") -> FileInfo:
        """Copy the tree at ``source`` to ``target``; both share every chunk (refs + 1)."""
        return await self._mutate(once(request_id, f"snapshot {source} {target}",
                                       lambda db: namespace.snapshot(db, source, target)))

    async def compose(self, target: str, sources: Sequence[str], chunk_size: int, *, overwrite: bool = False,
                      remove_sources: bool = False, request_id: str = "") -> tuple[FileInfo, FreedChunks]:
        """A file made of the chunk lists of ``sources``, sharing their chunks (see ``compose``)."""
        names = list(sources)
        return await self._mutate(once(request_id, f"compose {target} {len(names)}", lambda db: compose.compose(
            db, target, names, chunk_size, overwrite, remove_sources), replay_publish))

    async def new_handle(self, version: int) -> int:
        """A fresh handle no file references yet (refs 0) for a copy-on-write clone."""
        return await self._mutate(lambda db: chunks.new_handle(db, version))

    async def repoint(self, file_id: int, index: int, old: int, new: int) -> FreedChunks:
        """Make chunk ``index`` of a file use ``new`` instead of the shared ``old``."""
        return await self._mutate(lambda db: chunks.repoint(db, file_id, index, old, new))

    async def replication_of(self, handles: Sequence[int]) -> dict[int, int]:
        """The replication each chunk needs: the highest of the files that reference it."""
        return self._lookup(lambda db: chunks.replication_of(db, handles))

    # -- chunks ------------------------------------------------------------------------------------

    async def chunk(self, file_id: int, index: int) -> ChunkRef | None:
        return self._lookup(lambda db: chunks.chunk(db, file_id, index))

    async def last_chunk(self, file_id: int) -> ChunkRef | None:
        return self._lookup(lambda db: chunks.last_chunk(db, file_id))

    async def add_chunk(self, file_id: int, index: int) -> ChunkRef:
        return await self._mutate(lambda db: chunks.add_chunk(db, file_id, index))

    async def set_version(self, handle: int, version: int) -> None:
        await self._mutate(lambda db: chunks.set_version(db, handle, version))

    async def versions(self, handles: Sequence[int]) -> dict[int, int]:
        return self._lookup(lambda db: chunks.versions(db, handles))

    async def extend_size(self, file_id: int, size: int) -> None:
        await self._mutate(lambda db: chunks.extend_size(db, file_id, size))

    async def chunk_total(self) -> int:
        return await self._query(chunks.chunk_total)

    async def all_handles(self) -> list[int]:
        """Every chunk handle the namespace knows, ascending (e.g. to find chunks no server holds)."""
        handles: list[int] = []
        async for batch in self.handle_batches():
            handles.extend(batch)
        return handles

    async def handle_batches(self, size: int = 50_000) -> AsyncIterator[list[int]]:
        """``all_handles`` in ascending batches, each one short read, so writers are not held up."""
        after = 0
        while True:
            batch = await self._query(lambda db, after=after: chunks.handles_after(db, after, size))
            if batch:
                yield batch
            if len(batch) < size:
                return
            after = batch[-1]

    # -- packed small files ------------------------------------------------------------------------

    async def open_pack(self, replication: int, full: int = 0, lane: int = 0) -> tuple[int, ChunkRef]:
        return await self._mutate(lambda db: packs.open_pack(db, replication, full, lane))

    async def publish_packed(self, path: str, extent: PackedExtent, replication: int, overwrite: bool, *,
                             request_id: str = "") -> tuple[FileInfo, FreedChunks]:
        return await self._mutate(once(request_id, f"packed {path}", lambda db: packs.publish(
            db, path, extent, replication, overwrite), replay_publish))

    async def extent(self, file_id: int) -> tuple[PackedExtent, ChunkRef] | None:
        return self._lookup(lambda db: packs.extent(db, file_id))

    async def pack_usage(self) -> list[PackUsage]:
        return await self._query(packs.usage)

    async def live_records(self, handle: int) -> list[PackedExtent]:
        return await self._query(lambda db: packs.live_records(db, handle))

    async def repoint_records(self, old: int, moves: list[tuple[int, PackedExtent]]) -> FreedChunks:
        return await self._mutate(lambda db: packs.repoint(db, old, moves))

    async def stats(self) -> dict[str, int]:
        """Cheap counters: entries, chunks, trash, remembered request ids, bytes on disk, commit batching."""

        def op(db: sqlite3.Connection) -> dict[str, int]:
            dirs, files = db.execute("SELECT COALESCE(SUM(is_dir), 0), COALESCE(SUM(1 - is_dir), 0) "
                                     "FROM inodes").fetchone()
            found = {
                "directories": dirs, "files": files,
                "chunks": db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0],
                "trash": db.execute("SELECT COUNT(*) FROM trash").fetchone()[0],
                "request_ids": db.execute("SELECT COUNT(*) FROM requests").fetchone()[0],
                "db_bytes": db.execute("PRAGMA page_count").fetchone()[0] * db.execute("PRAGMA page_size").fetchone()[0],
            }
            wal = side_files(self._path)[0]
            found["wal_bytes"] = wal.stat().st_size if wal.exists() else 0
            found.update(self.counters)
            return found

        return await self._query(op)
