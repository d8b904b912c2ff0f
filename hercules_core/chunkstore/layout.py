"""Where a block-file store keeps each chunk's files under its root directory::

    FORMAT                                          store name, format version, block size
    chunks/<handle % 256 as 2 hex>/<handle as 16 hex>.meta                 the sidecar
    chunks/<handle % 256 as 2 hex>/<handle as 16 hex>[.<gen>]<data suffix>  the data file

Fanning out over 256 directories keeps each directory small; a generation above 0 names a data
file rewritten whole (a compaction), which the sidecar adopts in one record.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from hercules_core.chunkstore.sidecar import META_SUFFIX

CHUNKS_DIR = "chunks"
FORMAT_FILE = "FORMAT"
FORMAT_VERSION = 2  # 2: sidecar logs may hold journal records
UPGRADABLE_FORMATS = (1,)  # read as they are; the format file is rewritten on open


@attrs.frozen
class ChunkLayout:
    """The file names of one store: pure path arithmetic, no I/O except listing fan-out dirs."""

    root: Path
    data_suffix: str
    # the 256 fan-out directories, joined once: a path per commit was three pathlib joins
    _dirs: tuple[Path, ...] = attrs.field(init=False, repr=False, eq=False)

    @_dirs.default
    def _fan_out(self) -> tuple[Path, ...]:
        chunks = self.root / CHUNKS_DIR
        return tuple(chunks / f"{n:02x}" for n in range(256))

    @property
    def chunks(self) -> Path:
        return self.root / CHUNKS_DIR

    @property
    def format_file(self) -> Path:
        return self.root / FORMAT_FILE

    def dir(self, handle: int) -> Path:
        return self._dirs[handle & 0xFF]

    def meta_path(self, handle: int) -> Path:
        return self.dir(handle) / f"{handle:016x}{META_SUFFIX}"

    def data_path(self, handle: int, gen: int) -> Path:
        stem = f"{handle:016x}" if gen == 0 else f"{handle:016x}.{gen}"
        return self.dir(handle) / f"{stem}{self.data_suffix}"

    def fan_dirs(self) -> list[Path]:
        try:
            with os.scandir(self.chunks) as entries:
                return sorted(Path(e.path) for e in entries if e.is_dir() and len(e.name) == 2)
        except FileNotFoundError:
            return []

    @staticmethod
    def parse_stem(stem: str) -> tuple[int, int] | None:
        """``(handle, generation)`` from ``<hex>`` or ``<hex>.<gen>``; ``None`` for strangers."""
        parts = stem.split(".")
        try:
            if len(parts) == 1:
                return int(parts[0], 16), 0
            if len(parts) == 2:
                return int(parts[0], 16), int(parts[1])
        except ValueError:
            pass
        return None

    def parse_meta(self, name: str) -> int | None:
        """The handle a sidecar's file name names, or ``None`` for any other file."""
        if not name.endswith(META_SUFFIX):
            return None
        parsed = self.parse_stem(name[:-len(META_SUFFIX)])
        return None if parsed is None else parsed[0]

    def parse_data(self, name: str) -> tuple[int, int] | None:
        """``(handle, generation)`` a data file's name names, or ``None`` for any other file."""
        if not name.endswith(self.data_suffix):
            return None
        return self.parse_stem(name[:-len(self.data_suffix)])


__all__ = ["CHUNKS_DIR", "FORMAT_FILE", "FORMAT_VERSION", "UPGRADABLE_FORMATS", "ChunkLayout"]
