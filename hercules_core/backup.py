"""Online backup and offline restore of the master's SQLite metadata (SQLite's backup API).

The backup is taken from a running master without stopping it: SQLite copies a
consistent snapshot page by page while writers continue in WAL mode.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from hercules_core.errors import ConfigError, HerculesError

DB_NAME = "metadata.sqlite3"


def backup(root_dir: Path, out: Path) -> int:
    """Write a consistent copy of the metadata under ``root_dir`` to ``out``; return its size."""
    source_path = root_dir / DB_NAME
    if not source_path.exists():
        raise ConfigError(f"no master metadata at {source_path}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.unlink(missing_ok=True)
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    target = sqlite3.connect(tmp)
    try:
        source.backup(target)
        target.execute("PRAGMA journal_mode=DELETE")
    finally:
        target.close()
        source.close()
    _check(tmp)
    os.replace(tmp, out)
    return out.stat().st_size


def restore(archive: Path, root_dir: Path, force: bool = False) -> None:
    """Install ``archive`` as the metadata of a stopped master."""
    _check(archive)
    target_path = root_dir / DB_NAME
    if target_path.exists() and not force:
        raise HerculesError(f"{target_path} exists; stop the master and pass --force to replace it")
    root_dir.mkdir(parents=True, exist_ok=True)
    tmp = target_path.with_name(DB_NAME + ".restore")
    source = sqlite3.connect(f"file:{archive}?mode=ro", uri=True)
    target = sqlite3.connect(tmp)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    for suffix in ("-wal", "-shm"):
        Path(str(target_path) + suffix).unlink(missing_ok=True)
    os.replace(tmp, target_path)


def _check(path: Path) -> None:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            result = db.execute("PRAGMA integrity_check").fetchone()[0]
            db.execute("SELECT COUNT(*) FROM inodes").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise HerculesError(f"{path} is not a Hercules metadata backup: {exc}") from None
    if result != "ok":
        raise HerculesError(f"{path} fails its integrity check: {result}")
