"""Chunk metadata: handles, versions, reference counts (copy-on-write) and replication.

A handle comes from the ``chunks`` table's AUTOINCREMENT key, so it is never reused, also
across restarts; ``refs`` counts the files sharing a chunk after a snapshot. Functions run
inside the caller's transaction, like those in ``namespace``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

from hercules_core.errors import IsADirectory, NotFound
from hercules_core.master.store import ChunkRef, FreedChunks



def _pairs_in(db: sqlite3.Connection, sql: str, keys: Sequence[int], batch: int = 500) -> dict[int, int]:
    """Run a two-column query whose ``IN ({marks})`` list is filled with ``keys``, in batches
    (SQLite caps the number of bound parameters)."""
    found: dict[int, int] = {}
    items = list(keys)
    for start in range(0, len(items), batch):
        part = items[start:start + batch]
        found.update(db.execute(sql.format(marks=",".join("?" * len(part))), part).fetchall())
    return found


def insert_chunk(db: sqlite3.Connection, file_id: int, index: int) -> int:
    """A new handle at version 0 ("being created") as chunk ``index`` of the file."""
    handle = db.execute("INSERT INTO chunks (version, refs) VALUES (0, 1)").lastrowid
    db.execute("INSERT INTO file_chunks (file_id, idx, handle) VALUES (?, ?, ?)", (file_id, index, handle))
    return handle


def chunk(db: sqlite3.Connection, file_id: int, index: int) -> ChunkRef | None:
    row = db.execute("SELECT f.handle, c.version, c.refs FROM file_chunks f JOIN chunks c "
                     "ON c.handle = f.handle WHERE f.file_id = ? AND f.idx = ?", (file_id, index)).fetchone()
    return ChunkRef(row[0], index, row[1], row[2]) if row else None


def last_chunk(db: sqlite3.Connection, file_id: int) -> ChunkRef | None:
    row = db.execute("SELECT f.handle, f.idx, c.version, c.refs FROM file_chunks f JOIN chunks c "
                     "ON c.handle = f.handle WHERE f.file_id = ? ORDER BY f.idx DESC LIMIT 1",
                     (file_id,)).fetchone()
    return ChunkRef(row[0], row[1], row[2], row[3]) if row else None


def add_chunk(db: sqlite3.Connection, file_id: int, index: int) -> ChunkRef:
    """Chunk ``index`` of the file: the existing one, or a new handle at version 0."""
    row = db.execute("SELECT is_dir FROM inodes WHERE id = ?", (file_id,)).fetchone()
    if row is None:
        raise NotFound(f"file id {file_id} no longer exists")
    if row[0]:
        raise IsADirectory("chunks belong to files, not directories")
    existing = db.execute("SELECT f.handle, c.version FROM file_chunks f JOIN chunks c ON "
                          "c.handle = f.handle WHERE f.file_id = ? AND f.idx = ?", (file_id, index)).fetchone()
    if existing:
        return ChunkRef(existing[0], index, existing[1])
    return ChunkRef(insert_chunk(db, file_id, index), index, 0)


def set_version(db: sqlite3.Connection, handle: int, version: int) -> None:
    db.execute("UPDATE chunks SET version = ? WHERE handle = ?", (version, handle))


def versions(db: sqlite3.Connection, handles: Sequence[int]) -> dict[int, int]:
    return _pairs_in(db, "SELECT handle, version FROM chunks WHERE handle IN ({marks})", handles)


def extend_size(db: sqlite3.Connection, file_id: int, size: int) -> None:
    db.execute("UPDATE inodes SET size = MAX(size, ?), mtime = ? WHERE id = ?", (size, time.time(), file_id))


def new_handle(db: sqlite3.Connection, version: int) -> int:
    """A fresh handle no file references yet (refs 0) for a copy-on-write clone."""
    return db.execute("INSERT INTO chunks (version, refs) VALUES (?, 0)", (version,)).lastrowid


def repoint(db: sqlite3.Connection, file_id: int, index: int, old: int, new: int) -> FreedChunks:
    """Make chunk ``index`` of a file use ``new`` instead of the shared ``old``."""
    updated = db.execute("UPDATE file_chunks SET handle = ? WHERE file_id = ? AND idx = ? AND handle = ?",
                         (new, file_id, index, old)).rowcount
    if not updated:
        return FreedChunks([new]) if db.execute("DELETE FROM chunks WHERE handle = ? AND refs = 0",
                                                (new,)).rowcount else FreedChunks([])
    db.execute("UPDATE chunks SET refs = refs + 1 WHERE handle = ?", (new,))
    db.execute("UPDATE chunks SET refs = refs - 1 WHERE handle = ?", (old,))
    gone = db.execute("DELETE FROM chunks WHERE handle = ? AND refs <= 0", (old,)).rowcount
    return FreedChunks([old] if gone else [])


def replication_of(db: sqlite3.Connection, handles: Sequence[int]) -> dict[int, int]:
    """The replication each chunk needs: the highest of the files that reference it."""
    return _pairs_in(db, "SELECT f.handle, MAX(i.replication) FROM file_chunks f JOIN inodes i "
                         "ON i.id = f.file_id WHERE f.handle IN ({marks}) GROUP BY f.handle", handles)


def chunk_total(db: sqlite3.Connection) -> int:
    return db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]


def handles_after(db: sqlite3.Connection, after: int, size: int) -> list[int]:
    """Up to ``size`` handles above ``after``, ascending: one batch of ``handle_batches``."""
    return [r[0] for r in db.execute("SELECT handle FROM chunks WHERE handle > ? ORDER BY handle LIMIT ?",
                                     (after, size))]
