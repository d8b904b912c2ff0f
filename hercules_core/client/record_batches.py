"""Small records bound for one open pack leave a client together, as one record.

While a client's append to a lane's pack is in flight, the small records that arrive for that
lane wait; when it returns, the waiting ones are joined, in arrival order, into one record of at
most ``INLINE_RECORD`` bytes and appended with a single ``AppendChunk``. Each record's offset is
the joined record's plus the bytes before it. A record append lands whole or not at all, so the
records of a batch share its fate: all of them land, next to each other inside one chunk, or all
of them fail with the same error and their callers retry as for any failed append.

This saves the messages, not the syncs: the primary already applies records that queue on a
chunk as one mutation (``chunkserver/appends.py``), but each still came as an RPC of its own, with
its own answer, through every layer of the gateway and the chunkserver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import attrs

from hercules_core import messages as m
from hercules_core.batches import take_joining
from hercules_core.client.appends import INLINE_RECORD
from hercules_core.errors import Unavailable
from hercules_core.plugins.types import Buffer

Send = Callable[[m.ChunkLocation, Buffer], Awaitable[int]]  # one record appended: its offset


@attrs.define(eq=False)
class _Waiting:
    loc: m.ChunkLocation
    data: Buffer
    done: asyncio.Future[int]

    def joins(self, first: _Waiting) -> bool:
        return self.loc.handle == first.loc.handle and self.loc.version == first.loc.version


class RecordBatcher:
    """Per lane, a queue of small records and one task draining it while it is not empty."""

    def __init__(self, send: Send, limit: int = INLINE_RECORD) -> None:
        self._send = send
        self._limit = limit
        self._queues: dict[int, list[_Waiting]] = {}
        self._drains: dict[int, asyncio.Task[None]] = {}

    async def append(self, lane: int, loc: m.ChunkLocation, data: Buffer) -> int:
        """``data``'s offset in ``loc``'s chunk; a record over the limit goes alone, at once."""
        if len(data) > self._limit:
            return await self._send(loc, data)
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(lane, []).append(_Waiting(loc, data, done))
        if lane not in self._drains:
            self._drains[lane] = asyncio.get_running_loop().create_task(self._drain(lane))
        return await done  # a cancelled caller's record is dropped if it has not left yet

    def _take(self, queue: list[_Waiting]) -> list[_Waiting]:
        """The first live record and the live ones after it for the same chunk, within the limit."""
        queue[:] = [w for w in queue if not w.done.done()]
        if not queue:
            return []
        first = queue[0]
        return take_joining(queue, first, lambda w: w.joins(first), lambda w: len(w.data), self._limit)

    async def _drain(self, lane: int) -> None:
        queue = self._queues[lane]
        try:
            while batch := self._take(queue):
                joined = batch[0].data if len(batch) == 1 else b"".join(w.data for w in batch)
                try:
                    offset = await self._send(batch[0].loc, joined)
                except BaseException as exc:  # each caller gets it and decides whether to retry
                    error = exc if isinstance(exc, Exception) else Unavailable("append to a pack: cancelled")
                    for waiting in batch:
                        if not waiting.done.done():
                            waiting.done.set_exception(error)
                    if error is not exc:
                        raise
                    continue
                for waiting in batch:  # a cancelled caller's bytes still take their place
                    if not waiting.done.done():
                        waiting.done.set_result(offset)
                    offset += len(waiting.data)
        finally:
            del self._drains[lane]
            for waiting in queue:  # only if this task itself was cancelled (the loop is closing)
                if not waiting.done.done():
                    waiting.done.set_exception(Unavailable("append to a pack: the client is closing"))
            queue.clear()


__all__ = ["RecordBatcher"]
