"""Directory path → inode id, remembered so a lookup does not walk the path one SELECT per name.

Resolving ``/a/b/c/file`` costs one indexed SELECT per component; with the parent's id
remembered it costs one (Finding 14 in docs/performance.md). Only directories are
remembered, and only their ids: every row a caller sees is still read from the database,
so sizes, times and chunk counts are never stale. A cached id is wrong only after a
directory was moved or removed, and every such mutation (``invalidate``) forgets them all:
renaming or deleting a directory is rare next to lookups.

Two connections share one cache, on two threads, and each sees it through a view:

* the **writer** (the db thread) runs mutations inside transactions that may roll back. What
  it learns goes to ``pending`` and joins the cache only after its COMMIT; a savepoint or
  transaction rolled back drops it. From a mutation that moved a directory until its COMMIT,
  the cache stays empty and ``held``: nobody may learn the old layout while it is still the
  committed one.
* the **reader** (the event loop) reads committed state. It learns only if no directory
  moved since its lookup began (``generation`` unchanged, not ``held``), and a lookup that
  overlapped such a move runs again without the cache (``ReaderView.valid``).
"""

from __future__ import annotations

import sqlite3
import threading

CACHE_ENTRIES = 65536  # directories remembered at most (oldest forgotten first); 0 turns the cache off


class PathCache:
    def __init__(self, limit: int = CACHE_ENTRIES) -> None:
        self.ids: dict[str, int] = {}
        self.lock = threading.Lock()
        self.generation = 0  # bumped whenever directories may have moved
        self.held = False  # a transaction moved a directory and has not ended yet
        self.limit = limit

    def add(self, entries: dict[str, int]) -> None:
        """Under ``lock``."""
        ids = self.ids
        ids.update(entries)
        while len(ids) > self.limit:
            del ids[next(iter(ids))]

    def forget(self, hold: bool) -> None:
        with self.lock:
            self.generation += 1
            self.ids.clear()
            self.held = hold


class WriterView:
    """The db thread's side: learns into ``pending``, published by ``committed``."""

    def __init__(self, cache: PathCache) -> None:
        self.cache = cache
        self.pending: dict[str, int] = {}

    def get(self, path: str) -> int | None:
        found = self.pending.get(path)
        return found if found is not None else self.cache.ids.get(path)

    def learn(self, path: str, inode: int) -> None:
        if self.cache.limit:
            self.pending[path] = inode

    def invalidate(self) -> None:
        """A directory moves or goes in this transaction: forget all, learn nothing until it ends."""
        self.pending.clear()
        self.cache.forget(hold=True)

    def op_failed(self) -> None:
        """A savepoint rolled back: what it learnt may describe rows that are gone again."""
        self.pending.clear()

    def committed(self) -> None:
        cache = self.cache
        if cache.held:
            cache.forget(hold=False)
        if self.pending:
            with cache.lock:
                cache.add(self.pending)
            self.pending.clear()

    def rolled_back(self) -> None:
        self.pending.clear()
        if self.cache.held:
            self.cache.forget(hold=False)


class ReaderView:
    """The event loop's side: ``start`` before a lookup, ``valid`` after it."""

    def __init__(self, cache: PathCache) -> None:
        self.cache = cache
        self.started = 0
        self.bypass = False

    def start(self, bypass: bool) -> int:
        self.bypass = bypass
        self.started = self.cache.generation
        return self.started

    def valid(self, started: int) -> bool:
        """No directory moved while the lookup ran (else its cached ids may have been stale)."""
        return self.cache.generation == started

    def get(self, path: str) -> int | None:
        return None if self.bypass else self.cache.ids.get(path)

    def learn(self, path: str, inode: int) -> None:
        cache = self.cache
        if self.bypass or not cache.limit:
            return
        with cache.lock:
            if cache.generation == self.started and not cache.held:
                cache.add({path: inode})

    def invalidate(self) -> None:  # lookups never mutate; here for the interface's sake
        self.cache.forget(hold=False)


class Connection(sqlite3.Connection):
    """A connection that carries its view of the store's path cache (``inodes.resolve`` uses it)."""

    paths: WriterView | ReaderView | None = None
