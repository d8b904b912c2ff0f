"""Record appends that queue on one chunk leave together, as one mutation.

Every mutation costs each replica a write, an ``fdatasync`` and a sidecar record, and one
``ApplyMutation`` round trip per secondary. Small records (packed files, log lines) arrive faster
than that: they queue on the chunk's lock behind the append in flight. So the first one in line
takes the appends waiting behind it (``take_batch``), gives each its offset in arrival order,
and applies their bytes at once. A batch succeeds or fails whole; an append that failed is
retried by its client, as any failed append is (record append is at least once).

Only records sent inline (their bytes with the ``AppendChunk``, no ``data_id``) share a batch:
their bytes are in this process, so the batch goes to the secondaries inline too. A record
pushed along the chain goes alone, as before: its bytes already wait on every replica.
"""

from __future__ import annotations

import attrs

from hercules_core import messages as m
from hercules_core.plugins.types import Buffer

BATCH_BYTES = 1 << 20  # one batch's bytes at most (one record larger than this still goes, alone)


@attrs.define(eq=False)
class PendingAppend:
    """One append waiting for its batch: settled with an offset or an error."""

    msg: m.AppendChunk
    payload: Buffer
    offset: int | None = None
    error: BaseException | None = None

    @property
    def inline(self) -> bool:
        return not self.msg.data_id

    @property
    def settled(self) -> bool:
        return self.offset is not None or self.error is not None

    def joins(self, other: PendingAppend) -> bool:
        """Whether ``other`` may share this append's mutation (same lease, chain and chunk size)."""
        a, b = self.msg, other.msg
        return (other.inline and a.version == b.version and a.secondaries == b.secondaries
                and a.chunk_size == b.chunk_size)


def take_batch(queue: list[PendingAppend], first: PendingAppend) -> list[PendingAppend]:
    """``first`` and, if it is inline, the queued inline appends that can join it, in queue
    order and within ``BATCH_BYTES``; all of them leave ``queue``."""
    batch = [first]
    if first.inline:
        size = len(first.payload)
        for pending in queue:
            if pending is not first and not pending.settled and first.joins(pending):
                if size + len(pending.payload) > BATCH_BYTES:
                    break
                batch.append(pending)
                size += len(pending.payload)
    taken = set(map(id, batch))
    queue[:] = [p for p in queue if id(p) not in taken]
    return batch


def fitting(batch: list[PendingAppend], offset: int, chunk_size: int) -> int:
    """How many of ``batch``, laid end to end from ``offset``, fit in the chunk."""
    end = offset
    for count, pending in enumerate(batch):
        end += len(pending.payload)
        if end > chunk_size:
            return count
    return len(batch)


def joined(batch: list[PendingAppend]) -> Buffer:
    """The batch's bytes in order (no copy for a batch of one)."""
    if len(batch) == 1:
        return batch[0].payload
    return b"".join(p.payload for p in batch)
