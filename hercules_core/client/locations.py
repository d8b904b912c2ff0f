"""What a client knows of where chunks are: write leases, read locations, replicas to avoid.

Pure bookkeeping (no I/O): the client asks the master when this has nothing fresh. The rules are
the subtle part of read-your-writes (docs/consistency.md):
- a lease is used until shortly before it expires, and only while it names a primary;
- read locations are kept per file for ``read_ttl`` seconds; an ``open`` replaces all of a file's
  (a snapshot's copy-on-write may have moved any chunk to a new handle since they were learnt);
- an acknowledged mutation is read where it was written, not at a handle learnt before it;
- a replica that just failed a read is tried last for ``avoid_for`` seconds.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable

import attrs

from hercules_core import messages as m

READ_CACHE_TTL = 30.0
AVOID_FOR = 15.0
LEASE_MARGIN = 2.0  # seconds before a lease's expiry it is no longer trusted for a write


@attrs.define
class LocationCache:
    read_ttl: float = READ_CACHE_TTL
    avoid_for: float = AVOID_FOR
    lease_margin: float = LEASE_MARGIN
    _leases: dict[tuple[int, int], m.ChunkLocation] = attrs.field(factory=dict, init=False)
    # file id -> chunk index -> (location, monotonic time learnt)
    _reads: dict[int, dict[int, tuple[m.ChunkLocation, float]]] = attrs.field(factory=dict, init=False)
    _avoid: dict[str, float] = attrs.field(factory=dict, init=False)  # replica -> monotonic time
    _append_at: dict[int, int] = attrs.field(factory=dict, init=False)  # file id -> chunk appended to last

    # -- writes ------------------------------------------------------------------------------

    def lease(self, file_id: int, index: int) -> m.ChunkLocation | None:
        """The held lease of a chunk, if it names a primary and is not about to expire."""
        loc = self._leases.get((file_id, index))
        if loc is None or not loc.primary or loc.lease_expires - time.time() < self.lease_margin:
            return None
        return loc

    def leased(self, file_id: int, loc: m.ChunkLocation) -> None:
        self._leases[(file_id, loc.index)] = loc

    def written(self, file_id: int, loc: m.ChunkLocation) -> None:
        """After an acknowledged mutation: read where it was written (read-your-writes), not at
        a cached handle the write's copy-on-write may have replaced."""
        self.learnt(file_id, loc)

    def forget(self, file_id: int, index: int) -> None:
        """A try at this chunk failed: learn its locations afresh."""
        self._leases.pop((file_id, index), None)
        self._reads.get(file_id, {}).pop(index, None)

    # -- record appends ----------------------------------------------------------------------

    def append_chunk(self, file_id: int) -> int:
        """The chunk this client appended to last in the file, or -1 (ask for the last chunk)."""
        return self._append_at.get(file_id, -1)

    def appended(self, file_id: int, index: int) -> None:
        self._append_at[file_id] = index

    def append_failed(self, file_id: int, index: int) -> None:
        self._append_at.pop(file_id, None)
        if index >= 0:
            self.forget(file_id, index)

    # -- reads -------------------------------------------------------------------------------

    def readable(self, file_id: int, index: int) -> m.ChunkLocation | None:
        """A read location learnt less than ``read_ttl`` ago."""
        cached = self._reads.get(file_id, {}).get(index)
        if cached is not None and time.monotonic() - cached[1] < self.read_ttl:
            return cached[0]
        return None

    def learnt(self, file_id: int, loc: m.ChunkLocation) -> None:
        if loc.exists:
            self._reads.setdefault(file_id, {})[loc.index] = (loc, time.monotonic())

    def opened(self, file_id: int, chunks: Iterable[m.ChunkLocation]) -> None:
        """The file's locations as an ``open`` just learnt them, replacing every other one."""
        now = time.monotonic()
        self._reads[file_id] = {loc.index: (loc, now) for loc in chunks if loc.exists}

    def avoid(self, replica: str) -> None:
        self._avoid[replica] = time.monotonic() + self.avoid_for

    def read_order(self, replicas: list[str]) -> list[str]:
        """The replicas in random order, those that failed lately last."""
        now = time.monotonic()
        return sorted(random.sample(replicas, len(replicas)), key=lambda r: self._avoid.get(r, 0) > now)
