"""Online backup and offline restore of the master's SQLite metadata (SQLite's backup API).

The backup is taken from a running master without stopping it: SQLite copies a
consistent snapshot in one read transaction while the master keeps committing in WAL
mode. Everything the master acknowledged before the backup started is in the copy.
The copy is written to a temporary file, checked (``PRAGMA integrity_check`` and the
Hercules tables), fsynced, and only then renamed into place.

A restore goes into a *stopped* master's ROOT_DIR: it takes the master's lock
(``metadata.lock``), so it fails while a master runs there, removes the old ``-wal`` and
``-shm`` files first (a stale WAL applied to another database would corrupt it), then
installs the checked copy atomically. After a restore the master's namespace is the one
of the backup: chunks written later are unknown to it and collected as orphans, and
chunks it knows that no chunkserver holds any more show up as missing (see
``docs/durability.md``).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from pathlib import Path

from hercules_core.errors import ConfigError, HerculesError
from hercules_core.fsync import fsync_dir, fsync_path

DB_NAME = "metadata.sqlite3"
LOCK_NAME = "metadata.lock"  # also flock()ed by the running master (builtin/metadata_sqlite.py)
SIDE_FILES = ("-wal", "-shm", "-journal")
ID_GAP = 1 << 40  # handles and file ids skipped by each restore (see _skip_ids)


def backup(root_dir: Path, out: Path) -> int:
    """Write a consistent copy of the metadata under ``root_dir`` to ``out``; return its size."""
    source_path = Path(root_dir) / DB_NAME
    if not source_path.exists():
        raise ConfigError(f"no master metadata at {source_path}")
    out = Path(out)
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
        fsync_path(tmp)
        os.replace(tmp, out)
        fsync_dir(out.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return out.stat().st_size


def restore(archive: Path, root_dir: Path, force: bool = False) -> None:
    """Install ``archive`` as the metadata of a stopped master."""
    archive, root_dir = Path(archive), Path(root_dir)
    if not archive.is_file():
        raise HerculesError(f"no backup at {archive}")
    _check(archive)
    target_path = root_dir / DB_NAME
    root_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = _lock(root_dir)
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
            fsync_path(tmp)
            for suffix in SIDE_FILES:  # before the swap: an old WAL must never meet the new file
                Path(str(target_path) + suffix).unlink(missing_ok=True)
            os.replace(tmp, target_path)
        finally:
            tmp.unlink(missing_ok=True)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, f"hercules metadata database {DB_NAME} restored from {archive.name} at {stamp}\n"
                  .encode(), 0)
        os.fsync(lock_fd)
        fsync_dir(root_dir)
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


def _lock(root_dir: Path) -> int:
    path = root_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise HerculesError(f"{path} is locked: a master is running on {root_dir}; stop it before restoring") \
            from None
    return fd


def _check(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
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


