"""Metadata store ``sqlite``: the master's namespace in an embedded SQLite database (WAL).

The namespace is an inode table keyed by (parent, name), so renaming a directory is
one row update and lookups never need the whole tree in memory. All SQL runs on one
dedicated thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from hercules_core.errors import (
    AlreadyExists,
    InvalidArgument,
    IsADirectory,
    NotADirectory,
    NotEmpty,
    NotFound,
)
from hercules_core.master.store import ChunkRef, FreedChunks
from hercules_core.messages import FileInfo
from hercules_core.paths import parent_and_name, split
from hercules_core.plugins import hookimpl
from hercules_core.plugins.types import MetadataContext, MetadataStoreSpec

T = TypeVar("T")
ROOT_ID = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS inodes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    parent INTEGER NOT NULL,
    name TEXT NOT NULL,
    is_dir INTEGER NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    replication INTEGER NOT NULL DEFAULT 0,
    ctime REAL NOT NULL,
    mtime REAL NOT NULL,
    UNIQUE (parent, name)
);
CREATE TABLE IF NOT EXISTS chunks (
    handle INTEGER PRIMARY KEY AUTOINCREMENT,
    version INTEGER NOT NULL,
    refs INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE IF NOT EXISTS trash (
    inode INTEGER PRIMARY KEY,
    original_path TEXT NOT NULL,
    deleted_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS trash_by_path ON trash (original_path, deleted_at);
CREATE TABLE IF NOT EXISTS file_chunks (
    file_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    handle INTEGER NOT NULL,
    PRIMARY KEY (file_id, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS file_chunks_by_handle ON file_chunks (handle);
"""
TRASH_DIR = "/.hercules/trash"
_COLS = "i.id, i.parent, i.name, i.is_dir, i.size, i.replication, i.ctime, i.mtime"


def _info(row: tuple, path: str, chunk_count: int) -> FileInfo:
    return FileInfo(path=path, file_id=row[0], is_dir=bool(row[3]), size=row[4], replication=row[5],
                    chunk_count=chunk_count, ctime=row[6], mtime=row[7])


class SqliteMetadataStore:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="hercules-sqlite")
        self._db: sqlite3.Connection | None = None

    # -- plumbing ---------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=OFF")
        quick = db.execute("PRAGMA quick_check").fetchone()[0]
        if quick != "ok":
            raise RuntimeError(f"metadata database {self._path} is corrupt: {quick}")
        db.executescript(SCHEMA)
        db.execute("DELETE FROM chunks WHERE refs <= 0")  # clones a crash left unreferenced
        now = time.time()
        db.execute("INSERT OR IGNORE INTO inodes (id, parent, name, is_dir, ctime, mtime) "
                   "VALUES (?, 0, '', 1, ?, ?)", (ROOT_ID, now, now))
        self._db = db

    async def open(self) -> None:
        await self._run(self._open)

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
        self._executor.shutdown(wait=True)

    def _write(self, fn: Callable[..., T], *args: Any) -> Callable[[], T]:
        def run() -> T:
            db = self._db
            assert db is not None
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db, *args)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        return run

    async def _mutate(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._run(self._write(fn, *args))

    async def _query(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._run(fn, self._db, *args)

    # -- lookups (run on the db thread) --------------------------------------------------

    @staticmethod
    def _row(db: sqlite3.Connection, inode: int) -> tuple:
        return db.execute(f"SELECT {_COLS} FROM inodes i WHERE i.id = ?", (inode,)).fetchone()

    @classmethod
    def _resolve(cls, db: sqlite3.Connection, path: str) -> tuple | None:
        row = cls._row(db, ROOT_ID)
        for name in split(path):
            if not row[3]:
                raise NotADirectory(f"{name!r} in {path!r}: a parent is a file")
            row = db.execute(f"SELECT {_COLS} FROM inodes i WHERE i.parent = ? AND i.name = ?",
                             (row[0], name)).fetchone()
            if row is None:
                return None
        return row

    @classmethod
    def _must(cls, db: sqlite3.Connection, path: str) -> tuple:
        row = cls._resolve(db, path)
        if row is None:
            raise NotFound(f"{path}: no such file or directory")
        return row

    @staticmethod
    def _count(db: sqlite3.Connection, file_id: int) -> int:
        return db.execute("SELECT COUNT(*) FROM file_chunks WHERE file_id = ?", (file_id,)).fetchone()[0]

    @staticmethod
    def _path_of(db: sqlite3.Connection, inode: int) -> str:
        names: list[str] = []
        while inode != ROOT_ID:
            parent, name = db.execute("SELECT parent, name FROM inodes WHERE id = ?", (inode,)).fetchone()
            names.append(name)
            inode = parent
        return "/" + "/".join(reversed(names))

    # -- namespace ----------------------------------------------------------------------

    async def mkdir(self, path: str) -> FileInfo:
        def op(db: sqlite3.Connection) -> FileInfo:
            row = self._row(db, ROOT_ID)
            now = time.time()
            for name in split(path):
                if not row[3]:
                    raise AlreadyExists(f"{path}: a file is in the way")
                child = db.execute(f"SELECT {_COLS} FROM inodes i WHERE i.parent = ? AND i.name = ?",
                                   (row[0], name)).fetchone()
                if child is None:
                    cur = db.execute("INSERT INTO inodes (parent, name, is_dir, ctime, mtime) "
                                     "VALUES (?, ?, 1, ?, ?)", (row[0], name, now, now))
                    child = self._row(db, cur.lastrowid)
                row = child
            if not row[3]:
                raise AlreadyExists(f"{path}: a file is in the way")
            return _info(row, path, 0)

        return await self._mutate(op)

    async def create(self, path: str, replication: int, exclusive: bool = True) -> FileInfo:
        def op(db: sqlite3.Connection) -> FileInfo:
            parent_path, name = parent_and_name(path)
            if not name:
                raise AlreadyExists("/ is a directory")
            parent = self._must(db, parent_path)
            if not parent[3]:
                raise NotADirectory(f"{parent_path}: not a directory")
            existing = db.execute(f"SELECT {_COLS} FROM inodes i WHERE i.parent = ? AND i.name = ?",
                                  (parent[0], name)).fetchone()
            if existing is not None:
                if existing[3]:
                    raise IsADirectory(f"{path}: is a directory")
                if exclusive:
                    raise AlreadyExists(f"{path}: already exists")
                return _info(existing, path, self._count(db, existing[0]))
            now = time.time()
            cur = db.execute("INSERT INTO inodes (parent, name, is_dir, replication, ctime, mtime) "
                             "VALUES (?, ?, 0, ?, ?, ?)", (parent[0], name, replication, now, now))
            db.execute("UPDATE inodes SET mtime = ? WHERE id = ?", (now, parent[0]))
            return _info(self._row(db, cur.lastrowid), path, 0)

        return await self._mutate(op)

    async def stat(self, path: str) -> FileInfo:
        def op(db: sqlite3.Connection) -> FileInfo:
            row = self._must(db, path)
            return _info(row, path, 0 if row[3] else self._count(db, row[0]))

        return await self._query(op)

    async def stat_id(self, file_id: int) -> FileInfo:
        def op(db: sqlite3.Connection) -> FileInfo:
            row = self._row(db, file_id)
            if row is None:
                raise NotFound(f"file id {file_id} no longer exists")
            return _info(row, self._path_of(db, file_id), 0 if row[3] else self._count(db, row[0]))

        return await self._query(op)

    async def list(self, path: str, recursive: bool, limit: int, cursor: str) -> tuple[list[FileInfo], str]:
        def op(db: sqlite3.Connection) -> tuple[list[FileInfo], str]:
            row = self._must(db, path)
            base = "" if path == "/" else path
            if not row[3]:
                return [_info(row, path, self._count(db, row[0]))], ""
            count = "(SELECT COUNT(*) FROM file_chunks c WHERE c.file_id = i.id)"
            cap = limit if limit > 0 else -1
            if recursive:
                rows = db.execute(
                    f"WITH RECURSIVE tree(id, path) AS ("
                    f" SELECT id, ? || '/' || name FROM inodes WHERE parent = ?"
                    f" UNION ALL SELECT i.id, tree.path || '/' || i.name FROM inodes i JOIN tree ON i.parent = tree.id)"
                    f" SELECT {_COLS}, {count}, tree.path FROM tree JOIN inodes i ON i.id = tree.id"
                    f" WHERE tree.path > ? ORDER BY tree.path LIMIT ?",
                    (base, row[0], cursor, cap)).fetchall()
                entries = [_info(r, r[9], r[8]) for r in rows]
            else:
                rows = db.execute(f"SELECT {_COLS}, {count} FROM inodes i WHERE i.parent = ? AND i.name > ? "
                                  f"ORDER BY i.name LIMIT ?", (row[0], cursor, cap)).fetchall()
                entries = [_info(r, f"{base}/{r[2]}", r[8]) for r in rows]
            if path == "/":
                entries = [e for e in entries if not e.path.startswith("/.hercules")]
            more = limit > 0 and len(rows) == limit
            last = (rows[-1][9] if recursive else rows[-1][2]) if more else ""
            return entries, last

        return await self._query(op)

    def _unlink(self, db: sqlite3.Connection, inode: int) -> list[int]:
        """Drop an inode subtree; return chunk handles no file references any more."""
        ids = [r[0] for r in db.execute(
            "WITH RECURSIVE tree(id) AS (SELECT ? UNION ALL SELECT i.id FROM inodes i JOIN tree ON i.parent = tree.id)"
            " SELECT id FROM tree", (inode,))]
        freed: list[int] = []
        for start in range(0, len(ids), 500):
            batch = ids[start:start + 500]
            marks = ",".join("?" * len(batch))
            handles = [r[0] for r in db.execute(f"SELECT handle FROM file_chunks WHERE file_id IN ({marks})", batch)]
            db.execute(f"DELETE FROM file_chunks WHERE file_id IN ({marks})", batch)
            db.execute(f"DELETE FROM inodes WHERE id IN ({marks})", batch)
            for handle in handles:
                db.execute("UPDATE chunks SET refs = refs - 1 WHERE handle = ?", (handle,))
            gone = [r[0] for r in db.execute(
                f"SELECT handle FROM chunks WHERE refs <= 0 AND handle IN ({','.join('?' * len(handles))})", handles)]
            db.executemany("DELETE FROM chunks WHERE handle = ?", [(h,) for h in gone])
            freed.extend(gone)
        return freed

    def _mkdirs(self, db: sqlite3.Connection, path: str) -> int:
        inode, now = ROOT_ID, time.time()
        for name in split(path):
            row = db.execute("SELECT id FROM inodes WHERE parent = ? AND name = ?", (inode, name)).fetchone()
            inode = row[0] if row else db.execute(
                "INSERT INTO inodes (parent, name, is_dir, ctime, mtime) VALUES (?, ?, 1, ?, ?)",
                (inode, name, now, now)).lastrowid
        return inode

    async def delete(self, path: str, recursive: bool) -> FreedChunks:
        """Move ``path`` into the hidden trash; its chunks stay until the grace period ends."""

        def op(db: sqlite3.Connection) -> FreedChunks:
            if path == "/":
                raise InvalidArgument("the root directory cannot be deleted")
            row = self._must(db, path)
            if row[3] and not recursive and db.execute(
                    "SELECT 1 FROM inodes WHERE parent = ? LIMIT 1", (row[0],)).fetchone():
                raise NotEmpty(f"{path}: directory is not empty (use recursive=true)")
            now = time.time()
            if path.startswith(TRASH_DIR + "/") or path.startswith("/.hercules/uploads/"):
                return FreedChunks(self._unlink(db, row[0]))  # internal: no second trip through trash
            trash = self._mkdirs(db, TRASH_DIR)
            db.execute("UPDATE inodes SET parent = ?, name = ?, mtime = ? WHERE id = ?",
                       (trash, str(row[0]), now, row[0]))
            db.execute("INSERT INTO trash (inode, original_path, deleted_at) VALUES (?, ?, ?)", (row[0], path, now))
            db.execute("UPDATE inodes SET mtime = ? WHERE id = ?", (now, row[1]))
            return FreedChunks([])

        return await self._mutate(op)

    async def undelete(self, path: str) -> FileInfo:
        """Put back the most recently deleted entry that lived at ``path``."""

        def op(db: sqlite3.Connection) -> FileInfo:
            entry = db.execute("SELECT inode FROM trash WHERE original_path = ? ORDER BY deleted_at DESC LIMIT 1",
                               (path,)).fetchone()
            if entry is None:
                raise NotFound(f"{path}: nothing by that name is in the trash")
            parent_path, name = parent_and_name(path)
            parent = self._resolve(db, parent_path)
            if parent is None or not parent[3]:
                raise NotFound(f"{parent_path}: the original directory no longer exists")
            if db.execute("SELECT 1 FROM inodes WHERE parent = ? AND name = ?", (parent[0], name)).fetchone():
                raise AlreadyExists(f"{path}: something else exists there now")
            db.execute("UPDATE inodes SET parent = ?, name = ? WHERE id = ?", (parent[0], name, entry[0]))
            db.execute("DELETE FROM trash WHERE inode = ?", (entry[0],))
            row = self._row(db, entry[0])
            return _info(row, path, 0 if row[3] else self._count(db, row[0]))

        return await self._mutate(op)

    async def trash(self) -> list[tuple[str, float, FileInfo]]:
        def op(db: sqlite3.Connection) -> list[tuple[str, float, FileInfo]]:
            rows = db.execute(f"SELECT t.original_path, t.deleted_at, {_COLS} FROM trash t JOIN inodes i "
                              f"ON i.id = t.inode ORDER BY t.deleted_at").fetchall()
            return [(r[0], r[1], _info(r[2:], f"{TRASH_DIR}/{r[2]}", self._count(db, r[2]))) for r in rows]

        return await self._query(op)

    async def purge_trash(self, deleted_before: float) -> FreedChunks:
        """Drop trash entries older than the grace period; return chunks nothing references now."""

        def op(db: sqlite3.Connection) -> FreedChunks:
            expired = [r[0] for r in db.execute("SELECT inode FROM trash WHERE deleted_at < ?", (deleted_before,))]
            freed: list[int] = []
            for inode in expired:
                freed.extend(self._unlink(db, inode))
                db.execute("DELETE FROM trash WHERE inode = ?", (inode,))
            return FreedChunks(freed)

        return await self._mutate(op)

    # -- snapshots and copy-on-write ------------------------------------------------------

    async def handles_under(self, path: str) -> list[int]:
        def op(db: sqlite3.Connection) -> list[int]:
            row = self._must(db, path)
            return [r[0] for r in db.execute(
                "WITH RECURSIVE tree(id) AS (SELECT ? UNION ALL SELECT i.id FROM inodes i JOIN tree "
                "ON i.parent = tree.id) SELECT DISTINCT f.handle FROM tree JOIN file_chunks f ON f.file_id = tree.id",
                (row[0],))]

        return await self._query(op)

    async def snapshot(self, source: str, target: str) -> FileInfo:
        """Copy the tree at ``source`` to ``target``; both share every chunk (refs + 1)."""

        def op(db: sqlite3.Connection) -> FileInfo:
            src = self._must(db, source)
            if src[3] and (target + "/").startswith(source + "/"):
                raise InvalidArgument(f"cannot snapshot {source} into itself ({target})")
            parent_path, name = parent_and_name(target)
            parent = self._resolve(db, parent_path)
            if parent is None or not parent[3]:
                raise NotFound(f"{parent_path}: target directory does not exist")
            if db.execute("SELECT 1 FROM inodes WHERE parent = ? AND name = ?", (parent[0], name)).fetchone():
                raise AlreadyExists(f"{target}: already exists")
            now = time.time()
            pending = [(src[0], parent[0], name)]
            top = 0
            while pending:
                old, new_parent, new_name = pending.pop()
                r = self._row(db, old)
                new = db.execute("INSERT INTO inodes (parent, name, is_dir, size, replication, ctime, mtime) "
                                 "VALUES (?, ?, ?, ?, ?, ?, ?)", (new_parent, new_name, r[3], r[4], r[5], now, r[7])
                                 ).lastrowid
                top = top or new
                if r[3]:
                    pending.extend((c[0], new, c[1]) for c in db.execute(
                        "SELECT id, name FROM inodes WHERE parent = ?", (old,)))
                else:
                    db.execute("INSERT INTO file_chunks (file_id, idx, handle) SELECT ?, idx, handle "
                               "FROM file_chunks WHERE file_id = ?", (new, old))
                    db.execute("UPDATE chunks SET refs = refs + 1 WHERE handle IN "
                               "(SELECT handle FROM file_chunks WHERE file_id = ?)", (old,))
            row = self._row(db, top)
            return _info(row, target, 0 if row[3] else self._count(db, row[0]))

        return await self._mutate(op)

    async def new_handle(self, version: int) -> int:
        """A fresh handle no file references yet (refs 0) for a copy-on-write clone."""

        def op(db: sqlite3.Connection) -> int:
            return db.execute("INSERT INTO chunks (version, refs) VALUES (?, 0)", (version,)).lastrowid

        return await self._mutate(op)

    async def repoint(self, file_id: int, index: int, old: int, new: int) -> FreedChunks:
        """Make chunk ``index`` of a file use ``new`` instead of the shared ``old``."""

        def op(db: sqlite3.Connection) -> FreedChunks:
            updated = db.execute("UPDATE file_chunks SET handle = ? WHERE file_id = ? AND idx = ? AND handle = ?",
                                 (new, file_id, index, old)).rowcount
            if not updated:
                return FreedChunks([new]) if db.execute("DELETE FROM chunks WHERE handle = ? AND refs = 0",
                                                        (new,)).rowcount else FreedChunks([])
            db.execute("UPDATE chunks SET refs = refs + 1 WHERE handle = ?", (new,))
            db.execute("UPDATE chunks SET refs = refs - 1 WHERE handle = ?", (old,))
            gone = db.execute("DELETE FROM chunks WHERE handle = ? AND refs <= 0", (old,)).rowcount
            return FreedChunks([old] if gone else [])

        return await self._mutate(op)

    async def replication_of(self, handles: Sequence[int]) -> dict[int, int]:
        """The replication each chunk needs: the highest of the files that reference it."""

        def op(db: sqlite3.Connection) -> dict[int, int]:
            found: dict[int, int] = {}
            items = list(handles)
            for start in range(0, len(items), 500):
                batch = items[start:start + 500]
                found.update(db.execute(
                    f"SELECT f.handle, MAX(i.replication) FROM file_chunks f JOIN inodes i ON i.id = f.file_id "
                    f"WHERE f.handle IN ({','.join('?' * len(batch))}) GROUP BY f.handle", batch).fetchall())
            return found

        return await self._query(op)

    async def rename(self, source: str, target: str, overwrite: bool) -> FreedChunks:
        def op(db: sqlite3.Connection) -> FreedChunks:
            if source == "/" or target == "/":
                raise InvalidArgument("the root directory cannot be renamed")
            src = self._must(db, source)
            if target == source:
                return FreedChunks([])
            if src[3] and target.startswith(source + "/"):
                raise InvalidArgument(f"cannot move {source} into itself ({target})")
            parent_path, name = parent_and_name(target)
            parent = self._resolve(db, parent_path)
            if parent is None:
                raise NotFound(f"{parent_path}: target directory does not exist")
            if not parent[3]:
                raise NotADirectory(f"{parent_path}: not a directory")
            freed: list[int] = []
            existing = db.execute("SELECT id, is_dir FROM inodes WHERE parent = ? AND name = ?",
                                  (parent[0], name)).fetchone()
            if existing is not None:
                if not overwrite or existing[1] or src[3]:
                    raise AlreadyExists(f"{target}: already exists")
                freed = self._unlink(db, existing[0])
            now = time.time()
            db.execute("UPDATE inodes SET parent = ?, name = ?, mtime = ? WHERE id = ?",
                       (parent[0], name, now, src[0]))
            db.execute("UPDATE inodes SET mtime = ? WHERE id IN (?, ?)", (now, src[1], parent[0]))
            return FreedChunks(freed)

        return await self._mutate(op)

    # -- chunks --------------------------------------------------------------------------

    async def chunk(self, file_id: int, index: int) -> ChunkRef | None:
        def op(db: sqlite3.Connection) -> ChunkRef | None:
            row = db.execute("SELECT f.handle, c.version, c.refs FROM file_chunks f JOIN chunks c "
                             "ON c.handle = f.handle WHERE f.file_id = ? AND f.idx = ?", (file_id, index)).fetchone()
            return ChunkRef(row[0], index, row[1], row[2]) if row else None

        return await self._query(op)

    async def last_chunk(self, file_id: int) -> ChunkRef | None:
        def op(db: sqlite3.Connection) -> ChunkRef | None:
            row = db.execute("SELECT f.handle, f.idx, c.version, c.refs FROM file_chunks f JOIN chunks c "
                             "ON c.handle = f.handle WHERE f.file_id = ? ORDER BY f.idx DESC LIMIT 1",
                             (file_id,)).fetchone()
            return ChunkRef(row[0], row[1], row[2], row[3]) if row else None

        return await self._query(op)

    async def add_chunk(self, file_id: int, index: int) -> ChunkRef:
        def op(db: sqlite3.Connection) -> ChunkRef:
            row = db.execute("SELECT is_dir FROM inodes WHERE id = ?", (file_id,)).fetchone()
            if row is None:
                raise NotFound(f"file id {file_id} no longer exists")
            if row[0]:
                raise IsADirectory("chunks belong to files, not directories")
            existing = db.execute("SELECT f.handle, c.version FROM file_chunks f JOIN chunks c ON "
                                  "c.handle = f.handle WHERE f.file_id = ? AND f.idx = ?", (file_id, index)).fetchone()
            if existing:
                return ChunkRef(existing[0], index, existing[1])
            handle = db.execute("INSERT INTO chunks (version, refs) VALUES (1, 1)").lastrowid
            db.execute("INSERT INTO file_chunks (file_id, idx, handle) VALUES (?, ?, ?)", (file_id, index, handle))
            return ChunkRef(handle, index, 1)

        return await self._mutate(op)

    async def set_version(self, handle: int, version: int) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute("UPDATE chunks SET version = ? WHERE handle = ?", (version, handle))

        await self._mutate(op)

    async def versions(self, handles: Sequence[int]) -> dict[int, int]:
        def op(db: sqlite3.Connection) -> dict[int, int]:
            found: dict[int, int] = {}
            items = list(handles)
            for start in range(0, len(items), 500):
                batch = items[start:start + 500]
                found.update(db.execute(f"SELECT handle, version FROM chunks WHERE handle IN "
                                        f"({','.join('?' * len(batch))})", batch).fetchall())
            return found

        return await self._query(op)

    async def extend_size(self, file_id: int, size: int) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute("UPDATE inodes SET size = MAX(size, ?), mtime = ? WHERE id = ?", (size, time.time(), file_id))

        await self._mutate(op)

    async def chunk_total(self) -> int:
        return await self._query(lambda db: db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])


@asynccontextmanager
async def open_sqlite(ctx: MetadataContext) -> AsyncIterator[SqliteMetadataStore]:
    store = SqliteMetadataStore(Path(ctx.root_dir) / "metadata.sqlite3")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@hookimpl
def hercules_metadata_stores() -> Iterator[MetadataStoreSpec]:
    yield MetadataStoreSpec(name="sqlite", open=open_sqlite,
                            description="namespace and chunk versions in embedded SQLite (WAL)")
