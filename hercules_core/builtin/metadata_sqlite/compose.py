"""Composition: a new file made of the chunk lists of others, sharing their chunks as a snapshot
does (``MetadataStore.compose`` says what is refused and what is left out).

Like the other query modules, ``compose`` runs inside the caller's transaction and commits
nothing; whatever it raises rolls back its savepoint, so the target appears whole or not at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from hercules_core.builtin.metadata_sqlite.inodes import chunk_count, info, inode_row, must
from hercules_core.builtin.metadata_sqlite.namespace import new_file, unlink
from hercules_core.errors import InvalidArgument, IsADirectory
from hercules_core.master.store import FreedChunks
from hercules_core.messages import FileInfo


def _source_rows(db: sqlite3.Connection, target: str, sources: Sequence[str], chunk_size: int) -> list[tuple]:
    """The inode rows of ``sources``, each checked: a file, named once, aligned unless last."""
    if not sources:
        raise InvalidArgument("compose needs at least one source")
    if chunk_size <= 0:
        raise InvalidArgument(f"chunk size must be positive, not {chunk_size}")
    rows, seen = [], set()
    for n, path in enumerate(sources):
        if path == target:
            raise InvalidArgument(f"{path}: the target cannot be one of its own sources")
        if path in seen:
            raise InvalidArgument(f"{path}: named twice among the sources")
        seen.add(path)
        row = must(db, path)
        if row[3]:
            raise IsADirectory(f"{path}: is a directory")
        if n < len(sources) - 1 and row[4] % chunk_size:
            raise InvalidArgument(f"{path}: its length {row[4]} is not a whole number of {chunk_size}-byte "
                                  f"chunks, so the next source's chunks cannot follow it (only the last "
                                  f"source may end inside a chunk)")
        if db.execute("SELECT 1 FROM packed WHERE file_id = ?", (row[0],)).fetchone():  # docs/consistency.md
            raise InvalidArgument(f"{path}: a packed small file has no chunks to share; copy it instead")
        rows.append(row)
    return rows


def compose(db: sqlite3.Connection, target: str, sources: Sequence[str], chunk_size: int, overwrite: bool,
            remove_sources: bool) -> tuple[FileInfo, FreedChunks]:
    """See ``MetadataStore.compose``."""
    rows = _source_rows(db, target, sources, chunk_size)
    new, freed = new_file(db, target, sum(r[4] for r in rows), max(r[5] for r in rows), overwrite)
    base = 0
    for row in rows:
        spans = -(-row[4] // chunk_size)  # chunks up to the source's end; for all but the last, exact
        shared = db.execute("SELECT f.idx, f.handle FROM file_chunks f JOIN chunks c ON c.handle = f.handle "
                            "WHERE f.file_id = ? AND f.idx < ? AND c.version > 0", (row[0], spans)).fetchall()
        db.executemany("INSERT INTO file_chunks (file_id, idx, handle) VALUES (?, ?, ?)",
                       [(new, base + idx, handle) for idx, handle in shared])
        db.executemany("UPDATE chunks SET refs = refs + 1 WHERE handle = ?", [(h,) for _, h in shared])
        base += spans
    if remove_sources:
        for row in rows:
            freed += unlink(db, row[0])
    return info(inode_row(db, new), target, chunk_count(db, new)), FreedChunks(freed)
