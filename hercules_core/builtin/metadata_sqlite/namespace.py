"""Namespace operations: directories, files, listings, renames, publishing, snapshots.

Each function runs inside the caller's transaction on the given connection: the store
runs mutations on its db thread (see ``commits``) and short reads as lookups. None of
them commits; an exception rolls back only that operation's savepoint.
"""

from __future__ import annotations

import sqlite3
import time

from hercules_core.builtin.metadata_sqlite.chunks import insert_chunk
from hercules_core.builtin.metadata_sqlite.inodes import (
    COLS,
    ENTRY_BYTES,
    LIST_PAGE,
    MAX_DEPTH,
    chunk_count,
    dirs_moved,
    info,
    inode_row,
    must,
    path_of,
    resolve,
    vacancy,
    within_budget,
)
from hercules_core.builtin.metadata_sqlite.schema import ROOT_ID
from hercules_core.errors import AlreadyExists, InvalidArgument, IsADirectory, NotADirectory, NotFound
from hercules_core.master.store import FreedChunks
from hercules_core.messages import FileInfo
from hercules_core.paths import parent_and_name, split, within



def make_dirs(db: sqlite3.Connection, path: str) -> tuple:
    """mkdir -p: the row of the directory at ``path``, made with any missing parents."""
    names = split(path)
    paths = getattr(db, "paths", None)
    parent = paths.get("/" + "/".join(names[:-1])) if paths is not None and len(names) > 1 else None
    if parent is not None:  # only the last name is left to find or make
        row, prefix, names = (parent, 0, "", 1), "/" + "/".join(names[:-1]), names[-1:]
    else:
        row, prefix = inode_row(db, ROOT_ID), ""
    now = time.time()
    for name in names:
        if not row[3]:
            raise AlreadyExists(f"{path}: a file is in the way")
        child = db.execute(f"SELECT {COLS} FROM inodes i WHERE i.parent = ? AND i.name = ?",
                           (row[0], name)).fetchone()
        if child is None:
            cur = db.execute("INSERT INTO inodes (parent, name, is_dir, ctime, mtime) "
                             "VALUES (?, ?, 1, ?, ?)", (row[0], name, now, now))
            child = (cur.lastrowid, row[0], name, 1, 0, 0, now, now)
        row = child
        prefix += "/" + name
        if row[3] and paths is not None:
            paths.learn(prefix, row[0])
    if not row[3]:
        raise AlreadyExists(f"{path}: a file is in the way")
    return row


def create(db: sqlite3.Connection, path: str, replication: int, exclusive: bool,
           first_chunk: bool) -> FileInfo:
    """A new empty file (``first_chunk``: with its chunk 0 at version 0); see ``MetadataStore.create``."""
    parent_path, name = parent_and_name(path)
    if not name:
        raise AlreadyExists("/ is a directory")
    parent = must(db, parent_path)
    if not parent[3]:
        raise NotADirectory(f"{parent_path}: not a directory")
    existing = db.execute(f"SELECT {COLS} FROM inodes i WHERE i.parent = ? AND i.name = ?",
                          (parent[0], name)).fetchone()
    if existing is not None:
        if existing[3]:
            raise IsADirectory(f"{path}: is a directory")
        if exclusive:
            raise AlreadyExists(f"{path}: already exists")
        return info(existing, path, chunk_count(db, existing[0]))
    now = time.time()
    cur = db.execute("INSERT INTO inodes (parent, name, is_dir, replication, ctime, mtime) "
                     "VALUES (?, ?, 0, ?, ?, ?)", (parent[0], name, replication, now, now))
    db.execute("UPDATE inodes SET mtime = ? WHERE id = ?", (now, parent[0]))
    if first_chunk:
        insert_chunk(db, cur.lastrowid, 0)
    return info((cur.lastrowid, parent[0], name, 0, 0, replication, now, now), path, int(first_chunk))


def stat(db: sqlite3.Connection, path: str) -> FileInfo:
    row = must(db, path)
    return info(row, path, 0 if row[3] else chunk_count(db, row[0]))


def stat_id(db: sqlite3.Connection, file_id: int) -> FileInfo:
    row = inode_row(db, file_id)
    if row is None:
        raise NotFound(f"file id {file_id} no longer exists")
    return info(row, path_of(db, file_id), 0 if row[3] else chunk_count(db, row[0]))


def list_page(db: sqlite3.Connection, path: str, recursive: bool, limit: int,
              cursor: str) -> tuple[list[FileInfo], str]:
    """One page of the entries under ``path`` (sorted by path) and the next page's cursor."""
    row = must(db, path)
    base = "" if path == "/" else path
    if not row[3]:
        return [info(row, path, chunk_count(db, row[0]))], ""
    count = "(SELECT COUNT(*) FROM file_chunks c WHERE c.file_id = i.id)"
    cap = min(limit, LIST_PAGE) if limit > 0 else LIST_PAGE
    hidden = "NOT (parent = 1 AND name = '.hercules')"  # the internal tree is not listed
    if recursive:  # depth-bounded: a cycle in a damaged store cannot make this endless
        rows = db.execute(
            f"WITH RECURSIVE tree(id, path, depth) AS ("
            f" SELECT id, ? || '/' || name, 1 FROM inodes WHERE parent = ? AND {hidden}"
            f" UNION ALL SELECT i.id, tree.path || '/' || i.name, tree.depth + 1 FROM inodes i"
            f" JOIN tree ON i.parent = tree.id WHERE tree.depth < {MAX_DEPTH})"
            f" SELECT {COLS}, {count}, tree.path FROM tree JOIN inodes i ON i.id = tree.id"
            f" WHERE tree.path > ? ORDER BY tree.path LIMIT ?",
            (base, row[0], cursor, cap)).fetchall()
        entries = [info(r, r[9], r[8]) for r in rows]
    else:
        rows = db.execute(f"SELECT {COLS}, {count} FROM inodes i WHERE i.parent = ? AND i.name > ? "
                          f"AND {hidden} ORDER BY i.name LIMIT ?", (row[0], cursor, cap)).fetchall()
        entries = [info(r, f"{base}/{r[2]}", r[8]) for r in rows]
    kept = within_budget([len(e.path.encode()) + ENTRY_BYTES for e in entries])
    if kept == len(rows) < cap:
        return entries, ""
    return entries[:kept], rows[kept - 1][9] if recursive else rows[kept - 1][2]


def unlink(db: sqlite3.Connection, inode: int) -> list[int]:
    """Drop an inode subtree; return chunk handles no file references any more."""
    ids = [r[0] for r in db.execute(
        "WITH RECURSIVE tree(id) AS (SELECT ? UNION SELECT i.id FROM inodes i JOIN tree ON i.parent = tree.id)"
        " SELECT id FROM tree", (inode,))]  # UNION, not UNION ALL: each inode once, even in a cycle
    if len(ids) > 1 or db.execute("SELECT is_dir FROM inodes WHERE id = ?", (inode,)).fetchone() != (0,):
        dirs_moved(db)  # directories go (a lone file, e.g. one an upload overwrites, moves none)
    freed: list[int] = []
    for start in range(0, len(ids), 500):
        batch = ids[start:start + 500]
        marks = ",".join("?" * len(batch))
        handles = [r[0] for r in db.execute(f"SELECT handle FROM file_chunks WHERE file_id IN ({marks})", batch)]
        db.execute(f"DELETE FROM file_chunks WHERE file_id IN ({marks})", batch)
        db.execute(f"DELETE FROM packed WHERE file_id IN ({marks})", batch)  # its record is garbage now
        db.execute(f"DELETE FROM inodes WHERE id IN ({marks})", batch)
        for handle in handles:
            db.execute("UPDATE chunks SET refs = refs - 1 WHERE handle = ?", (handle,))
        gone = [r[0] for r in db.execute(
            f"SELECT handle FROM chunks WHERE refs <= 0 AND handle IN ({','.join('?' * len(handles))})", handles)]
        db.executemany("DELETE FROM chunks WHERE handle = ?", [(h,) for h in gone])
        freed.extend(gone)
    return freed


def move(db: sqlite3.Connection, source: str, target: str, overwrite: bool) -> FreedChunks:
    """Rename ``source`` to ``target``; a file it overwrites has its unshared chunks freed."""
    if source == "/" or target == "/":
        raise InvalidArgument("the root directory cannot be renamed")
    src = must(db, source)
    if target == source:
        return FreedChunks([])
    if src[3] and target.startswith(source + "/"):
        raise InvalidArgument(f"cannot move {source} into itself ({target})")
    parent_path, name = parent_and_name(target)
    parent = resolve(db, parent_path)
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
        freed = unlink(db, existing[0])
    if src[3]:
        dirs_moved(db)
    now = time.time()
    db.execute("UPDATE inodes SET parent = ?, name = ?, mtime = ? WHERE id = ?",
               (parent[0], name, now, src[0]))
    db.execute("UPDATE inodes SET mtime = ? WHERE id IN (?, ?)", (now, src[1], parent[0]))
    return FreedChunks(freed)


def publish(db: sqlite3.Connection, source: str, target: str, size: int,
            overwrite: bool) -> tuple[FileInfo, FreedChunks]:
    """Finish an upload: make the parents, raise the size, move it (see ``MetadataStore.publish``)."""
    src = must(db, source)
    if src[3]:
        raise IsADirectory(f"{source}: is a directory")
    make_dirs(db, parent_and_name(target)[0])
    db.execute("UPDATE inodes SET size = MAX(size, ?) WHERE id = ?", (size, src[0]))
    freed = move(db, source, target, overwrite)
    return info(inode_row(db, src[0]), target, chunk_count(db, src[0])), freed


def handles_under(db: sqlite3.Connection, path: str) -> list[int]:
    """Every chunk handle of the files in the tree at ``path``."""
    row = must(db, path)
    return [r[0] for r in db.execute(
        "WITH RECURSIVE tree(id) AS (SELECT ? UNION SELECT i.id FROM inodes i JOIN tree "
        "ON i.parent = tree.id) SELECT DISTINCT f.handle FROM tree JOIN file_chunks f ON f.file_id = tree.id",
        (row[0],))]


def snapshot(db: sqlite3.Connection, source: str, target: str) -> FileInfo:
    """Copy the tree at ``source`` to ``target``; both share every chunk (refs + 1)."""
    src = must(db, source)
    if within(target, source):
        raise InvalidArgument(f"cannot snapshot {source} into itself ({target})")
    parent, name = vacancy(db, target, "target directory does not exist", "already exists")
    now = time.time()
    pending = [(src[0], parent[0], name)]
    seen: set[int] = set()  # each source inode copied once, even from a damaged (cyclic) tree
    top = 0
    while pending:
        old, new_parent, new_name = pending.pop()
        if old in seen:
            continue
        seen.add(old)
        r = inode_row(db, old)
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
            db.execute("INSERT INTO packed (file_id, handle, offset, length, crc) SELECT ?, handle, offset, "
                       "length, crc FROM packed WHERE file_id = ?", (new, old))  # immutable: shared as is
    row = inode_row(db, top)
    return info(row, target, 0 if row[3] else chunk_count(db, row[0]))


def new_file(db: sqlite3.Connection, target: str, size: int, replication: int,
             overwrite: bool) -> tuple[int, list[int]]:
    """A new file's inode at ``target`` with this size and replication (parents made; a file
    there replaced if ``overwrite``): its id and the chunks the replaced file alone held."""
    parent_path, name = parent_and_name(target)
    if not name:
        raise IsADirectory("/ is a directory")
    parent = make_dirs(db, parent_path)
    existing = db.execute("SELECT id, is_dir FROM inodes WHERE parent = ? AND name = ?",
                          (parent[0], name)).fetchone()
    freed: list[int] = []
    if existing is not None:
        if existing[1]:
            raise IsADirectory(f"{target}: is a directory")
        if not overwrite:
            raise AlreadyExists(f"{target}: already exists")
        freed = unlink(db, existing[0])
    now = time.time()
    new = db.execute("INSERT INTO inodes (parent, name, is_dir, size, replication, ctime, mtime) "
                     "VALUES (?, ?, 0, ?, ?, ?, ?)", (parent[0], name, size, replication, now, now)).lastrowid
    db.execute("UPDATE inodes SET mtime = ? WHERE id = ?", (now, parent[0]))
    return new, freed
