"""The store's files in ROOT_DIR: the database, its side files, and ``metadata.lock``.

``metadata.lock`` is flock()ed while a store is open and while a restore runs, so two
masters (or a master and a restore) never share one ROOT_DIR. It also holds a marker,
written when the database was first created, so that a database that later goes missing
is noticed instead of replaced by an empty namespace. Only this package knows these names.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

from hercules_core.errors import ConfigError, HerculesError
from hercules_core.fsync import fsync_dir

DB_NAME = "metadata.sqlite3"
LOCK_NAME = "metadata.lock"
SIDE_FILES = ("-wal", "-shm", "-journal")
SQLITE_MAGIC = b"SQLite format 3\x00"


def corrupt_error(path: Path, detail: object) -> HerculesError:
    return HerculesError(f"metadata database {path} is corrupt: {detail}; refusing to start. Restore a backup "
                         f"with `hercules restore BACKUP --force` (or move the file away to investigate)")


def check_database_file(path: Path) -> None:
    """Cheap checks before SQLite opens ``path``: the header, the page size, the length.

    SQLite itself treats a zero-length file as a new empty database and reports other
    damage only when a page is read; these checks turn both into a clear error early.
    """
    size = path.stat().st_size
    if size == 0:
        return  # the caller decides: a fresh file from a crash during creation, or a wiped one
    with open(path, "rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise corrupt_error(path, "the file does not start with an SQLite header")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise corrupt_error(path, f"the header names an impossible page size {page_size}")
    if size % page_size:
        raise corrupt_error(path, f"its length {size} is not a whole number of {page_size}-byte pages (torn?)")


def side_files(db_path: Path) -> list[Path]:
    """The ``-wal``, ``-shm`` and ``-journal`` files beside the database, present or not."""
    return [Path(str(db_path) + suffix) for suffix in SIDE_FILES]


def lock_directory(root_dir: Path, busy: Callable[[Path], HerculesError]) -> int:
    """flock ``metadata.lock`` in ``root_dir``; return its descriptor (closing it drops the lock).

    ``busy(lock_path)`` is the error raised when someone else holds it.
    """
    lock_path = root_dir / LOCK_NAME
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise busy(lock_path) from None
    return fd


def read_marker(lock_fd: int) -> str:
    return os.pread(lock_fd, 4096, 0).decode(errors="replace")


def write_marker(lock_fd: int, db_path: Path, what: str) -> None:
    """Record in the lock file that ``db_path`` exists; ``what`` precedes the time ("in use since")."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    os.ftruncate(lock_fd, 0)
    os.pwrite(lock_fd, f"hercules metadata database {db_path.name} {what} {stamp}\n".encode(), 0)
    os.fsync(lock_fd)
    fsync_dir(db_path.parent)


def refuse_fresh_start(db_path: Path, marker: str) -> None:
    """No usable database: refuse if anything says there was one."""
    signs = [p.name for p in side_files(db_path) if p.exists()]
    if marker.strip():
        signs.append(f"{LOCK_NAME} records a database ({marker.strip()})")
    if signs:
        raise ConfigError(
            f"metadata database {db_path} is missing or empty but {db_path.parent} shows an earlier one "
            f"({'; '.join(signs)}); refusing to start with an empty namespace. Restore a backup with "
            f"`hercules restore BACKUP --force`; to really start afresh, delete {db_path.name}, its "
            f"{'/'.join(SIDE_FILES)} files and {LOCK_NAME}")
