"""Online backup and offline restore of the SQLite metadata (SQLite's backup API).

The backup is taken from a running master without stopping it: SQLite copies a
consistent snapshot in one read transaction while the master keeps committing in WAL
mode. Everything the master acknowledged before the backup started is in the copy.
The copy is written to a temporary file, checked (``PRAGMA integrity_check`` and the
Hercules tables), then put in place by the kit's one durable replace (``replace_durably``:
fsync, rename, directory fsync).

A restore goes into a *stopped* master's ROOT_DIR: it takes the master's lock
(``metadata.lock``), so it fails while a master runs there, removes the old ``-wal`` and
``-shm`` files first (a stale WAL applied to another database would corrupt it), then
installs the checked copy atomically, with the id counters moved past anything the
master may have allocated after the backup (``ID_GAP``). These are the ``backup`` and
``restore`` of this plugin's ``MetadataStoreSpec``; ``hercules backup``/``restore`` call them.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

from hercules_core.builtin.metadata_sqlite.files import (
    DB_NAME,
    SQLITE_MAGIC,
    lock_directory,
    side_files,
    write_marker,
)
from hercules_core.chunkstore.fileio import replace_durably
from hercules_core.errors import ConfigError, HerculesError
from hercules_core.plugins.types import MetadataContext

ID_GAP = 1 << 40  # handles and file ids skipped by each restore (see _skip_ids)


async def backup(ctx: MetadataContext, out: Path) -> int:
    """Write a consistent copy of the metadata under ``ctx.root_dir`` to ``out``; return its size."""
    return await asyncio.to_thread(copy_out, Path(ctx.root_dir) / DB_NAME, Path(out))


async def restore(ctx: MetadataContext, archive: Path, force: bool) -> None:
    """Install ``archive`` as the metadata of the stopped master at ``ctx.root_dir``."""
    await asyncio.to_thread(install, Path(archive), Path(ctx.root_dir), force)


def copy_out(source_path: Path, out: Path) -> int:
    if not source_path.exists():
        raise ConfigError(f"no master metadata at {source_path}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True, timeout=30.0)
    except sqlite3.Error as exc:
        raise HerculesError(f"cannot read {source_path}: {exc}") from None
    try:
        target = sqlite3.connect(tmp)
        try:
            source.backup(target)  # all pages in one step: one read transaction, one snapshot
            target.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.DatabaseError as exc:
            raise HerculesError(f"cannot back up {source_path}: {exc}") from None
        finally:
            target.close()
            source.close()
        _check(tmp)
        replace_durably(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out.stat().st_size


def _busy(lock_path: Path) -> HerculesError:
    return HerculesError(f"{lock_path} is locked: a master is running on {lock_path.parent}; stop it before restoring")


def install(archive: Path, root_dir: Path, force: bool) -> None:
    if not archive.is_file():
        raise HerculesError(f"no backup at {archive}")
    _check(archive)
    target_path = root_dir / DB_NAME
    root_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = lock_directory(root_dir, _busy)
    try:
        if target_path.exists() and not force:
            raise HerculesError(f"{target_path} exists; stop the master and pass --force to replace it")
        tmp = target_path.with_name(DB_NAME + ".restore")
        tmp.unlink(missing_ok=True)
        source = sqlite3.connect(f"file:{archive}?mode=ro", uri=True)
        target = sqlite3.connect(tmp)
        try:
            source.backup(target)
            _skip_ids(target)
        finally:
            target.close()
            source.close()
        try:
            _check(tmp)
            for side in side_files(target_path):  # before the swap: an old WAL must never meet the new file
                side.unlink(missing_ok=True)
            replace_durably(tmp, target_path)
        finally:
            tmp.unlink(missing_ok=True)
        write_marker(lock_fd, target_path, f"restored from {archive.name} at")
    finally:
        os.close(lock_fd)


def _skip_ids(db: sqlite3.Connection) -> None:
    """Move the handle and file id counters past anything allocated after the backup was taken.

    The master allocated handles (and file ids) after the backup that the restored database
    does not know; chunkservers may still hold those chunks, and clients those file ids.
    Reusing one would mix an old chunk's replicas (possibly at a higher version) into a new
    file, so the counters jump by ``ID_GAP``, far beyond what a master allocates.
    """
    with db:
        for table in ("chunks", "inodes"):
            top = db.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {table}").fetchone()[0]
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
            seq = max(top, row[0] if row else 0) + ID_GAP
            if row:
                db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (seq, table))
            else:
                db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, seq))


def _check(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            if f.read(16) != SQLITE_MAGIC:
                raise HerculesError(f"{path} is not a Hercules metadata backup: not an SQLite database")
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            problems = [r[0] for r in db.execute("PRAGMA integrity_check(20)")]
            db.execute("SELECT COUNT(*) FROM inodes").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise HerculesError(f"{path} is not a Hercules metadata backup: {exc}") from None
    if problems != ["ok"]:
        raise HerculesError(f"{path} fails its integrity check: {'; '.join(problems)}")
