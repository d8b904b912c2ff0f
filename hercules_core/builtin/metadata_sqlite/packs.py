"""Packed small files: the ``packs`` table (one row per pack chunk: the hidden file that owns
it under ``/.hercules/packs``, sealed or open, the end of its last published record) and the
``packed`` table (a file's extent in a pack). A pack's chunk belongs to its hidden file, so it
is replicated, re-replicated and freed like any chunk; an extent is no reference count, so a
record is live exactly while some entry (a snapshot's, one in the trash) names it.
Functions run inside the caller's transaction, like those in ``namespace``.
"""

from __future__ import annotations

import sqlite3
import time

from hercules_core.builtin.metadata_sqlite.chunks import insert_chunk
from hercules_core.builtin.metadata_sqlite.inodes import info, inode_row, resolve
from hercules_core.builtin.metadata_sqlite.namespace import new_file, unlink
from hercules_core.builtin.metadata_sqlite.trash import directories
from hercules_core.errors import IsADirectory, NotFound
from hercules_core.master.store import ChunkRef, FreedChunks, PackUsage
from hercules_core.messages import FileInfo, PackedExtent

PACKS_DIR = "/.hercules/packs"


def open_pack(db: sqlite3.Connection, replication: int, full: int, lane: int) -> tuple[int, ChunkRef]:
    """Seal pack ``full`` (0: none); return (hidden file id, chunk) of the open pack of ``lane``
    (several are open at once, so concurrent appends do not queue on one chunk), a new one (its
    chunk at version 0, created by the master next) if none is open."""
    if full:
        db.execute("UPDATE packs SET sealed = 1 WHERE handle = ?", (full,))
    row = db.execute("SELECT p.handle, p.file_id, c.version, c.refs FROM packs p JOIN chunks c "
                     "ON c.handle = p.handle WHERE p.sealed = 0 AND p.lane = ? ORDER BY p.handle DESC LIMIT 1",
                     (lane,)).fetchone()
    if row is not None:
        return row[1], ChunkRef(row[0], 0, row[2], row[3])
    parent = directories(db, PACKS_DIR)
    now = time.time()
    file_id = db.execute("INSERT INTO inodes (parent, name, is_dir, replication, ctime, mtime) "
                         "VALUES (?, ?, 0, ?, ?, ?)", (parent, f"p{time.time_ns()}", replication, now, now)).lastrowid
    handle = insert_chunk(db, file_id, 0)
    db.execute("INSERT INTO packs (handle, file_id, lane) VALUES (?, ?, ?)", (handle, file_id, lane))
    return file_id, ChunkRef(handle, 0, 0)


def publish(db: sqlite3.Connection, path: str, extent: PackedExtent, replication: int,
            overwrite: bool) -> tuple[FileInfo, FreedChunks]:
    """Make ``path`` (and its parents) a file of the record ``extent``; an old file there is
    dropped (its chunks freed, its record garbage)."""
    if db.execute("SELECT 1 FROM packs WHERE handle = ?", (extent.handle,)).fetchone() is None:
        raise NotFound(f"chunk {extent.handle} is not a pack (compacted away?): append the record again")
    # refused as BeginUpload refuses any other upload (that check is skipped for a record): a
    # parent that is a file is NotADirectory (resolve), a directory there is IsADirectory
    existing = resolve(db, path)
    if existing is not None and existing[3]:
        raise IsADirectory(f"{path}: already exists and is a directory")
    file_id, freed = new_file(db, path, extent.length, replication, overwrite)
    db.execute("INSERT INTO packed (file_id, handle, offset, length, crc) VALUES (?, ?, ?, ?, ?)",
               (file_id, extent.handle, extent.offset, extent.length, extent.crc))
    db.execute("UPDATE packs SET used = MAX(used, ?) WHERE handle = ?", (extent.offset + extent.length,
                                                                         extent.handle))
    return info(inode_row(db, file_id), path, 0), FreedChunks(freed)


def extent(db: sqlite3.Connection, file_id: int) -> tuple[PackedExtent, ChunkRef] | None:
    row = db.execute("SELECT p.handle, p.offset, p.length, p.crc, c.version FROM packed p JOIN chunks c "
                     "ON c.handle = p.handle WHERE p.file_id = ?", (file_id,)).fetchone()
    if row is None:
        return None
    return PackedExtent(row[0], row[1], row[2], row[3]), ChunkRef(row[0], 0, row[4])


def usage(db: sqlite3.Connection) -> list[PackUsage]:
    """Every sealed pack: bytes its records take up to the last published one, and live bytes
    (each record counted once however many entries name it)."""
    rows = db.execute("SELECT p.handle, p.used, (SELECT COALESCE(SUM(length), 0) FROM (SELECT DISTINCT "
                      "offset, length FROM packed WHERE handle = p.handle)) FROM packs p WHERE p.sealed = 1")
    return [PackUsage(r[0], r[1], r[2]) for r in rows]


def live_records(db: sqlite3.Connection, handle: int) -> list[PackedExtent]:
    return [PackedExtent(handle, r[0], r[1], r[2]) for r in db.execute(
        "SELECT DISTINCT offset, length, crc FROM packed WHERE handle = ? ORDER BY offset", (handle,))]


def repoint(db: sqlite3.Connection, old: int, moves: list[tuple[int, PackedExtent]]) -> FreedChunks:
    """Point every entry naming the record at offset ``o`` of pack ``old`` at its copy, for each
    (``o``, copy) of ``moves``; then drop pack ``old`` if no entry names it any more. A copy in a
    pack that is gone (compacted away while the copier still held its location) is refused,
    ``NotFound``, and nothing changes: an entry must never name a freed chunk."""
    for handle in {new.handle for _, new in moves}:
        if handle == old or db.execute("SELECT 1 FROM packs WHERE handle = ?", (handle,)).fetchone() is None:
            raise NotFound(f"pack {handle} is gone or is the one compacted: copy the records of {old} again")
    for offset, new in moves:
        db.execute("UPDATE packed SET handle = ?, offset = ? WHERE handle = ? AND offset = ?",
                   (new.handle, new.offset, old, offset))
        db.execute("UPDATE packs SET used = MAX(used, ?) WHERE handle = ?", (new.offset + new.length, new.handle))
    if db.execute("SELECT 1 FROM packed WHERE handle = ? LIMIT 1", (old,)).fetchone() is not None:
        return FreedChunks([])  # a record was published or snapshotted meanwhile: next time
    row = db.execute("SELECT file_id FROM packs WHERE handle = ?", (old,)).fetchone()
    if row is None:
        raise NotFound(f"pack {old} does not exist")
    db.execute("DELETE FROM packs WHERE handle = ?", (old,))
    return FreedChunks(unlink(db, row[0]))

