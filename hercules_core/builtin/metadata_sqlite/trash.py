"""The trash: soft delete, undelete, paged listing and the purge after the grace period.

A deleted entry moves under ``/.hercules/trash`` (renamed to its inode number) and is
recorded in the ``trash`` table; its chunks stay until ``purge_trash`` drops it. Entries
deleted inside the trash or an upload area skip it (they are internal already).
"""

from __future__ import annotations

import sqlite3
import time

from hercules_core.builtin.metadata_sqlite.inodes import (
    COLS,
    ENTRY_BYTES,
    LIST_PAGE,
    TRASH_DIR,
    chunk_count,
    dirs_moved,
    info,
    inode_row,
    must,
    vacancy,
    within_budget,
)
from hercules_core.builtin.metadata_sqlite.namespace import unlink
from hercules_core.builtin.metadata_sqlite.schema import ROOT_ID
from hercules_core.errors import Forbidden, InvalidArgument, NotEmpty, NotFound
from hercules_core.master.store import FreedChunks
from hercules_core.messages import FileInfo
from hercules_core.paths import split, within


def _cursor(cursor: str) -> tuple[float, int]:
    """A trash cursor is ``deleted_at:inode`` of the last entry of the previous page."""
    if not cursor:
        return float("-inf"), 0
    at, _, inode = cursor.rpartition(":")
    try:
        return float(at), int(inode)
    except ValueError:
        raise InvalidArgument(f"trash cursor {cursor!r} is not one a trash listing returned") from None


def directories(db: sqlite3.Connection, path: str) -> int:
    """mkdir -p for the internal tree: the inode of ``path``, made with any missing parents."""
    inode, now = ROOT_ID, time.time()
    for name in split(path):
        row = db.execute("SELECT id FROM inodes WHERE parent = ? AND name = ?", (inode, name)).fetchone()
        inode = row[0] if row else db.execute(
            "INSERT INTO inodes (parent, name, is_dir, ctime, mtime) VALUES (?, ?, 1, ?, ?)",
            (inode, name, now, now)).lastrowid
    return inode


def delete(db: sqlite3.Connection, path: str, recursive: bool) -> FreedChunks:
    """Move ``path`` into the hidden trash; its chunks stay until the grace period ends."""
    if path == "/":
        raise InvalidArgument("the root directory cannot be deleted")
    if within(TRASH_DIR, path):  # the trash would be moved into itself: a cycle
        raise Forbidden(f"{path}: holds the trash and cannot be deleted")
    row = must(db, path)
    if row[3] and not recursive and db.execute(
            "SELECT 1 FROM inodes WHERE parent = ? LIMIT 1", (row[0],)).fetchone():
        raise NotEmpty(f"{path}: directory is not empty (use recursive=true)")
    now = time.time()
    if path.startswith(TRASH_DIR + "/") or path.startswith("/.hercules/uploads/"):
        return FreedChunks(unlink(db, row[0]))  # internal: no second trip through trash
    if row[3]:
        dirs_moved(db)
    trash = directories(db, TRASH_DIR)
    db.execute("UPDATE inodes SET parent = ?, name = ?, mtime = ? WHERE id = ?",
               (trash, str(row[0]), now, row[0]))
    db.execute("INSERT INTO trash (inode, original_path, deleted_at) VALUES (?, ?, ?)", (row[0], path, now))
    db.execute("UPDATE inodes SET mtime = ? WHERE id = ?", (now, row[1]))
    return FreedChunks([])


def undelete(db: sqlite3.Connection, path: str) -> FileInfo:
    """Put back the most recently deleted entry that lived at ``path``."""
    entry = db.execute("SELECT inode FROM trash WHERE original_path = ? ORDER BY deleted_at DESC LIMIT 1",
                       (path,)).fetchone()
    if entry is None:
        raise NotFound(f"{path}: nothing by that name is in the trash")
    parent, name = vacancy(db, path, "the original directory no longer exists",
                           "something else exists there now")
    dirs_moved(db)  # out of the trash: its path there is gone
    db.execute("UPDATE inodes SET parent = ?, name = ? WHERE id = ?", (parent[0], name, entry[0]))
    db.execute("DELETE FROM trash WHERE inode = ?", (entry[0],))
    row = inode_row(db, entry[0])
    return info(row, path, 0 if row[3] else chunk_count(db, row[0]))


def trash_page(db: sqlite3.Connection, limit: int,
               cursor: str) -> tuple[list[tuple[str, float, FileInfo]], str]:
    """One page of the trash, oldest first, and the cursor of the next page ("" at the end)."""
    after_at, after_inode = _cursor(cursor)
    cap = min(limit, LIST_PAGE) if limit > 0 else LIST_PAGE
    rows = db.execute(f"SELECT t.original_path, t.deleted_at, {COLS} FROM trash t JOIN inodes i "
                      f"ON i.id = t.inode WHERE (t.deleted_at, t.inode) > (?, ?) "
                      f"ORDER BY t.deleted_at, t.inode LIMIT ?", (after_at, after_inode, cap)).fetchall()
    found = [(r[0], r[1], info(r[2:], f"{TRASH_DIR}/{r[2]}", chunk_count(db, r[2]))) for r in rows]
    kept = within_budget([2 * len(r[0].encode()) + ENTRY_BYTES for r in rows])
    if kept == len(rows) < cap:
        return found, ""
    return found[:kept], f"{rows[kept - 1][1]!r}:{rows[kept - 1][2]}"


def purge_trash(db: sqlite3.Connection, deleted_before: float) -> FreedChunks:
    """Drop trash entries older than the grace period; return chunks nothing references now."""
    expired = [r[0] for r in db.execute("SELECT inode FROM trash WHERE deleted_at < ?", (deleted_before,))]
    freed: list[int] = []
    for inode in expired:
        freed.extend(unlink(db, inode))
        db.execute("DELETE FROM trash WHERE inode = ?", (inode,))
    return FreedChunks(freed)
