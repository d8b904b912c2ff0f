"""The inode table: how paths resolve to rows, and rows become ``FileInfo``.

The namespace is an inode table keyed by (parent, name), so renaming a directory is one
row update and lookups never need the whole tree in memory. A row is the tuple of
``COLS``: (id, parent, name, is_dir, size, replication, ctime, mtime). These helpers run
inside whatever transaction their caller holds (the db thread's, or a lookup's).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from hercules_core.builtin.metadata_sqlite.schema import ROOT_ID
from hercules_core.errors import AlreadyExists, HerculesError, NotADirectory, NotFound
from hercules_core.messages import FileInfo
from hercules_core.paths import MAX_PATH_BYTES, parent_and_name, split

LIST_PAGE = 1000  # entries in one listing or trash page at most (limit 0 or more asks for this)
PAGE_BYTES = 512 << 10  # and about this many encoded bytes, well inside a 1 MiB message frame
ENTRY_BYTES = 160  # an entry's encoded size besides its paths
MAX_DEPTH = MAX_PATH_BYTES // 2 + 1  # no legal path is deeper: bounds recursive queries on a damaged tree
TRASH_DIR = "/.hercules/trash"
COLS = "i.id, i.parent, i.name, i.is_dir, i.size, i.replication, i.ctime, i.mtime"


def within_budget(sizes: Sequence[int]) -> int:
    """How many entries of these encoded sizes fit in one page (at least one)."""
    total = 0
    for n, size in enumerate(sizes):
        total += size
        if total > PAGE_BYTES:
            return max(1, n)
    return len(sizes)


def info(row: tuple, path: str, chunks: int) -> FileInfo:
    return FileInfo(path=path, file_id=row[0], is_dir=bool(row[3]), size=row[4], replication=row[5],
                    chunk_count=chunks, ctime=row[6], mtime=row[7])


def inode_row(db: sqlite3.Connection, inode: int) -> tuple:
    return db.execute(f"SELECT {COLS} FROM inodes i WHERE i.id = ?", (inode,)).fetchone()


def resolve(db: sqlite3.Connection, path: str) -> tuple | None:
    """The row at ``path`` (normalized), or None; starts from the parent's cached id if known."""
    names = split(path)
    if not names:
        return inode_row(db, ROOT_ID)
    paths = getattr(db, "paths", None)
    parent = paths.get("/" + "/".join(names[:-1])) if paths is not None and len(names) > 1 else None
    if parent is not None:
        return db.execute(f"SELECT {COLS} FROM inodes i WHERE i.parent = ? AND i.name = ?",
                          (parent, names[-1])).fetchone()
    row = inode_row(db, ROOT_ID)
    prefix = ""
    for name in names:
        if not row[3]:
            raise NotADirectory(f"{name!r} in {path!r}: a parent is a file")
        row = db.execute(f"SELECT {COLS} FROM inodes i WHERE i.parent = ? AND i.name = ?",
                         (row[0], name)).fetchone()
        if row is None:
            return None
        prefix += "/" + name
        if row[3] and paths is not None:
            paths.learn(prefix, row[0])
    return row


def dirs_moved(db: sqlite3.Connection) -> None:
    """Call before a mutation moves or removes a directory: cached directory ids go stale."""
    paths = getattr(db, "paths", None)
    if paths is not None:
        paths.invalidate()


def vacancy(db: sqlite3.Connection, path: str, no_parent: str, taken: str) -> tuple[tuple, str]:
    """The parent directory's row and the name for a new entry at ``path``: ``NotFound``
    (``no_parent``) without that directory, ``AlreadyExists`` (``taken``) if the name is used."""
    parent_path, name = parent_and_name(path)
    parent = resolve(db, parent_path)
    if parent is None or not parent[3]:
        raise NotFound(f"{parent_path}: {no_parent}")
    if db.execute("SELECT 1 FROM inodes WHERE parent = ? AND name = ?", (parent[0], name)).fetchone():
        raise AlreadyExists(f"{path}: {taken}")
    return parent, name


def must(db: sqlite3.Connection, path: str) -> tuple:
    row = resolve(db, path)
    if row is None:
        raise NotFound(f"{path}: no such file or directory")
    return row


def chunk_count(db: sqlite3.Connection, file_id: int) -> int:
    return db.execute("SELECT COUNT(*) FROM file_chunks WHERE file_id = ?", (file_id,)).fetchone()[0]


def path_of(db: sqlite3.Connection, inode: int) -> str:
    names: list[str] = []
    while inode != ROOT_ID:
        if len(names) > MAX_DEPTH:
            raise HerculesError(f"inode {inode} does not lead back to the root: the namespace is damaged")
        found = db.execute("SELECT parent, name FROM inodes WHERE id = ?", (inode,)).fetchone()
        if found is None:
            raise NotFound(f"inode {inode} is not in the namespace")
        inode, name = found
        names.append(name)
    return "/" + "/".join(reversed(names))
