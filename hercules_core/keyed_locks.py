"""A table of ``asyncio.Lock`` objects by key that forgets a key once nobody holds or awaits it.

Operations on one key serialise; different keys proceed concurrently; memory is proportional
to the keys in use, not to every key ever seen (a per-chunk lock kept forever grows with
every chunk a long-running master or chunkserver has touched).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

import attrs

K = TypeVar("K", bound=Hashable)


@attrs.define
class _LockEntry:
    lock: asyncio.Lock = attrs.field(factory=asyncio.Lock)
    users: int = 0


class KeyedLocks(Generic[K]):
    """One lock per key, made on first use and dropped when its last user leaves."""

    def __init__(self) -> None:
        self._entries: dict[K, _LockEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def held(self, key: K) -> bool:
        """Whether someone holds or awaits ``key``'s lock (a membership test: any thread may ask)."""
        return key in self._entries

    @asynccontextmanager
    async def hold(self, key: K) -> AsyncIterator[None]:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _LockEntry()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[key]
