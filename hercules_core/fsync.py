"""Durability helpers: fsync a file or a directory by path (a file's fsync does not cover
the directory entry that names it)."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make creations, renames and unlinks in ``path`` durable."""
    fsync_path(path)
