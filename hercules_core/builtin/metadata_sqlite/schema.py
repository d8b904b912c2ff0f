"""The database's schema, its version, and the settings every connection of the writer gets.

``PRAGMA user_version`` holds ``SCHEMA_VERSION``. Every table is created with ``IF NOT
EXISTS``, so opening an older database adds what it lacks (version 2 added ``requests``, 3
``packs`` and ``packed``: packed small files);
a database newer than this code is refused rather than misread.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from hercules_core.builtin.metadata_sqlite.files import corrupt_error
from hercules_core.errors import HerculesError

log = logging.getLogger(__name__)
ROOT_ID = 1
SCHEMA_VERSION = 3  # PRAGMA user_version; 2 added the requests table, 3 packs and packed
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
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    op TEXT NOT NULL,
    result BLOB,
    at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS requests_by_time ON requests (at);
CREATE TABLE IF NOT EXISTS packs (
    handle INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL,
    lane INTEGER NOT NULL DEFAULT 0,
    sealed INTEGER NOT NULL DEFAULT 0,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS packed (
    file_id INTEGER PRIMARY KEY,
    handle INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    crc INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS packed_by_handle ON packed (handle, offset);
"""


def prepare(db: sqlite3.Connection, path: Path, *, fresh: bool, cache_mib: int, check: str) -> None:
    """Set the writer's pragmas, check the database (``check``: ``quick``, ``full`` or ``none``)
    and bring its schema up to ``SCHEMA_VERSION``; ``path`` only names it in errors."""
    db.execute("PRAGMA busy_timeout=10000")  # e.g. an online backup's reader starting up
    mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        log.warning("%s: WAL is not available here (journal_mode=%s); commits are slower", path, mode)
    db.execute("PRAGMA synchronous=FULL")  # an acknowledged commit survives power loss
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute(f"PRAGMA cache_size=-{int(cache_mib) * 1024}")
    db.execute("PRAGMA temp_store=MEMORY")
    db.execute("PRAGMA journal_size_limit=67108864")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not fresh and not tables:
        raise corrupt_error(path, "it holds no tables")
    if tables and "inodes" not in tables:
        raise HerculesError(f"{path} is an SQLite database but not Hercules metadata "
                            f"(tables: {', '.join(sorted(tables))}); refusing to start")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise HerculesError(f"metadata database {path} has schema version {version}, newer than this "
                            f"Hercules understands ({SCHEMA_VERSION}); run a newer Hercules")
    if tables and check != "none":
        pragma = "integrity_check" if check == "full" else "quick_check"
        problems = [r[0] for r in db.execute(f"PRAGMA {pragma}(20)")]
        if problems != ["ok"]:
            raise corrupt_error(path, "; ".join(problems))
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("DELETE FROM chunks WHERE refs <= 0")  # clones a crash left unreferenced
        now = time.time()
        db.execute("INSERT OR IGNORE INTO inodes (id, parent, name, is_dir, ctime, mtime) "
                   "VALUES (?, 0, '', 1, ?, ?)", (ROOT_ID, now, now))
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
