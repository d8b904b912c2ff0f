"""What a block-file store keeps in memory between operations: decoded sidecars, open data
files and the running total of its data bytes.

Both are safe to keep because the store is the only writer of its files: every change to a
sidecar or a data file is made by the store itself, which updates (or drops) the copy here in
the same step. Neither ever vouches for data: every block read is still checked against its
CRC32C. Operations on one handle are serialised by the store's per-handle lock; these tables
are shared by operations on different handles running on executor threads, hence their locks.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Generic, TypeVar

from hercules_core.chunkstore.sidecar import ChunkMeta, SidecarLog
from hercules_core.errors import ConfigError
from hercules_core.plugins.types import SettingSpec

M = TypeVar("M", bound=ChunkMeta)
K = TypeVar("K")  # what an open file is kept with: a data file's generation, a log's end and size

DEFAULT_SIDECAR_CACHE_BYTES = 32 << 20  # ~800 sidecars of full 64 MiB chunks (fs), ~270 (zstd)
DEFAULT_OPEN_FILES = 256
SETTINGS = (
    SettingSpec("sidecar_cache_bytes", int, DEFAULT_SIDECAR_CACHE_BYTES,
                help="memory for decoded sidecars of recently used chunks, bytes (0: read each time)"),
    SettingSpec("open_files", int, DEFAULT_OPEN_FILES,
                help="recently used chunks whose data file and sidecar are kept open (0: open each time)"),
)
"""A block-file store's own settings; a store plugin lists them in its ``ChunkStoreSpec``."""

_ENTRY_BYTES = 200  # the meta object, its lists and the table's slot
_ITEM_BYTES = 40  # one list item: its pointer and an int object (a CRC is never a cached small int)


def sidecar_bytes(meta: ChunkMeta) -> int:
    """About how much memory a decoded sidecar takes: what the cache's bound counts."""
    return _ENTRY_BYTES + _ITEM_BYTES * len(meta.crcs) * len(meta.COLUMNS)


def option(options: dict[str, object], name: str, default: int) -> int:
    value = options.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
    return value


class UsedBytes:
    """The running total of data-file bytes; updated from executor threads, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    @property
    def value(self) -> int:
        with self._lock:
            return self._value

    def add(self, delta: int) -> None:
        with self._lock:
            self._value += delta


class SidecarCache(Generic[M]):
    """Decoded sidecars by handle, least recently used dropped first past ``max_bytes``.

    The store puts a chunk's meta after each change it commits and drops it when a change
    fails (the object may be half updated), on delete, and when a scan finds the sidecar on
    disk damaged or gone, so what is here is always what the disk holds.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, tuple[M, int]] = OrderedDict()
        self._bytes = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, handle: int) -> bool:
        return handle in self._entries

    def get(self, handle: int) -> M | None:
        with self._lock:
            entry = self._entries.get(handle)
            if entry is None:
                return None
            self._entries.move_to_end(handle)
            return entry[0]

    def put(self, handle: int, meta: M) -> None:
        """Remember ``meta`` (again: its size may have changed) as the most recently used."""
        size = sidecar_bytes(meta)
        with self._lock:
            old = self._entries.pop(handle, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:
                return
            self._entries[handle] = (meta, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped

    def drop(self, handle: int) -> None:
        with self._lock:
            old = self._entries.pop(handle, None)
            if old is not None:
                self._bytes -= old[1]

    def keep_only(self, handles: set[int]) -> None:
        """Drop every chunk a full scan did not find intact on disk."""
        with self._lock:
            for handle in [h for h in self._entries if h not in handles]:
                self._bytes -= self._entries.pop(handle)[1]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0


class OpenFiles(Generic[K]):
    """Open data files by handle (and generation), at most ``limit``, least recently used closed first.

    An operation ``take``s its chunk's descriptor out of the table and ``give``s it back when
    done, so a descriptor closed to make room is never one in use on another thread.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._fds: OrderedDict[int, tuple[K, int]] = OrderedDict()  # handle -> (generation, fd)

    def __len__(self) -> int:
        return len(self._fds)

    def take(self, handle: int, gen: K) -> int | None:
        """The open descriptor of ``handle``'s data file ``gen``, now the caller's; ``None`` if none."""
        with self._lock:
            entry = self._fds.pop(handle, None)
        if entry is None:
            return None
        if entry[0] != gen:  # a generation the sidecar no longer names
            os.close(entry[1])
            return None
        return entry[1]

    def give(self, handle: int, gen: K, fd: int) -> None:
        """Keep ``fd`` open for the next operation on ``handle`` (closing the least recent past the limit)."""
        closing: list[int] = []
        with self._lock:
            old = self._fds.pop(handle, None)
            if old is not None:
                closing.append(old[1])
            if self.limit > 0:
                self._fds[handle] = (gen, fd)
            else:
                closing.append(fd)
            while len(self._fds) > self.limit:
                closing.append(self._fds.popitem(last=False)[1][1])
        for stale in closing:
            os.close(stale)

    def close(self, handle: int) -> None:
        with self._lock:
            entry = self._fds.pop(handle, None)
        if entry is not None:
            os.close(entry[1])

    def close_all(self) -> None:
        with self._lock:
            fds = [fd for _, fd in self._fds.values()]
            self._fds.clear()
        for fd in fds:
            os.close(fd)


class OpenLogs(OpenFiles[tuple[int, int]]):
    """Sidecars kept open between commits (``commit_sidecar(keep=True)``), each with where its
    log ends and its file's size in the slot a data file's generation takes: a commit saves the
    stat, open, read and close of its sidecar. The store drops a chunk's entry wherever it drops
    its open data file."""

    def take_log(self, handle: int) -> SidecarLog | None:
        """The chunk's open sidecar, where its log ends and its size, now the caller's; ``None``
        if none is kept."""
        with self._lock:
            entry = self._fds.pop(handle, None)
        return None if entry is None else (entry[1], *entry[0])

    def give_log(self, handle: int, log: SidecarLog) -> None:
        fd, end, size = log
        self.give(handle, (end, size), fd)


__all__ = ["DEFAULT_OPEN_FILES", "DEFAULT_SIDECAR_CACHE_BYTES", "SETTINGS", "OpenFiles", "OpenLogs", "SidecarCache",
           "UsedBytes", "option", "sidecar_bytes"]
