"""Which chunks changed version (or were deleted) while a report was being checked.

A chunkserver's report is checked against versions read from the metadata store, and that read
is an ``await``: a version bump can start and finish in between, asking only the replicas
listed then. A replica reported at the version read before the bump, listed after it, would
be a current replica that missed the bump, at a version no reader asks for. So a report marks
the point it read from (``since``), every version change marks its chunk, and the report lists
no replica whose chunk changed after its point: the next full report or a copy brings it back
when it really is current.

Changes are recorded only while some report is being checked, so nothing grows with the
number of chunks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable

import attrs


@attrs.define
class VersionWatch:
    _seq: int = 0
    _changed: dict[int, int] = attrs.field(factory=dict)  # handle -> seq of its last change
    _readers: Counter[int] = attrs.field(factory=Counter)  # seq each running check started at

    def changing(self, handle: int) -> int:
        """Call before a chunk's version is written (or the chunk is forgotten); a check that
        makes the change itself passes the result to ``unchanged`` to see whether another followed."""
        if self._readers:
            self._seq += 1
            self._changed[handle] = self._seq
        return self._seq

    async def write(self, handle: int, write: Awaitable[object]) -> int:
        """Mark ``handle`` changing before and after ``write`` stores its new version: a check whose
        read fell in between may have read either. Returns the second mark (see ``changing``)."""
        self.changing(handle)
        await write
        return self.changing(handle)

    def since(self) -> int:
        """Start a check; pass the result to ``unchanged`` and then ``done``."""
        self._readers[self._seq] += 1
        return self._seq

    def unchanged(self, handle: int, start: int) -> bool:
        """Whether ``handle`` has not changed since ``start`` (call before ``done``)."""
        return self._changed.get(handle, -1) <= start

    def done(self, start: int) -> None:
        self._readers[start] -= 1
        if self._readers[start] <= 0:
            del self._readers[start]
        if not self._readers:
            self._changed.clear()
        else:
            oldest = min(self._readers)
            for handle in [h for h, seq in self._changed.items() if seq <= oldest]:
                del self._changed[handle]
