"""``RecordBatcher`` (client/record_batches.py): records that meet on a lane leave as one, each at
its own offset; a failure reaches every record of its batch; a caller that gave up before its
record left does not have it sent; records for another chunk never join."""

from __future__ import annotations

import asyncio

import pytest

from hercules_core import messages as m
from hercules_core.client.record_batches import RecordBatcher
from hercules_core.errors import ChunkFull
from hercules_core.plugins.types import Buffer

PACK = m.ChunkLocation(7, 0, 1, ["a", "b", "c"], "a")
OTHER = m.ChunkLocation(8, 0, 1, ["a", "b", "c"], "a")


class Chunks:
    """Appends as a primary would: each record at the end of its chunk. The first one sent
    waits for ``release``, so the records after it queue behind it."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.sent: list[tuple[int, bytes]] = []
        self.ends: dict[int, int] = {}
        self.release = asyncio.Event()
        self.fail = fail

    async def send(self, loc: m.ChunkLocation, data: Buffer) -> int:
        self.sent.append((loc.handle, bytes(data)))
        if len(self.sent) == 1:
            await self.release.wait()
        if self.fail is not None and len(self.sent) > 1:
            raise self.fail
        offset = self.ends.get(loc.handle, 0)
        self.ends[loc.handle] = offset + len(data)
        return offset


async def queued(batcher: RecordBatcher, chunks: Chunks, records: list[tuple[m.ChunkLocation, bytes]]
                 ) -> list[asyncio.Task[int]]:
    """The first record in flight, the others waiting behind it."""
    tasks = [asyncio.create_task(batcher.append(0, *records[0]))]
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(chunks.sent) == 1
    tasks += [asyncio.create_task(batcher.append(0, loc, data)) for loc, data in records[1:]]
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(chunks.sent) == 1
    return tasks


async def test_waiting_records_leave_as_one_each_at_its_own_offset() -> None:
    chunks = Chunks()
    batcher = RecordBatcher(chunks.send, limit=100)
    records = [(PACK, bytes([n]) * 30) for n in range(5)]
    tasks = await queued(batcher, chunks, records)
    chunks.release.set()
    offsets = await asyncio.gather(*tasks)
    # the first alone, then as many as fit the limit (3 x 30 <= 100), then the last
    assert [len(data) for _, data in chunks.sent] == [30, 90, 30]
    assert offsets == [0, 30, 60, 90, 120]
    content = b"".join(data for _, data in chunks.sent)
    for offset, (_, data) in zip(offsets, records):
        assert content[offset:offset + len(data)] == data


async def test_records_for_another_chunk_or_over_the_limit_go_apart() -> None:
    chunks = Chunks()
    batcher = RecordBatcher(chunks.send, limit=100)
    tasks = await queued(batcher, chunks, [(PACK, b"a" * 10), (PACK, b"b" * 10), (OTHER, b"c" * 10),
                                           (PACK, b"d" * 10)])
    assert await batcher.append(0, PACK, b"e" * 101) == 0  # alone and at once, beside the one in flight
    chunks.release.set()
    assert await asyncio.gather(*tasks) == [101, 111, 0, 121]
    assert chunks.sent == [(7, b"a" * 10), (7, b"e" * 101), (7, b"b" * 10 + b"d" * 10), (8, b"c" * 10)]


async def test_a_failed_batch_fails_each_of_its_records() -> None:
    chunks = Chunks(fail=ChunkFull("pack 7 is full"))
    batcher = RecordBatcher(chunks.send, limit=100)
    tasks = await queued(batcher, chunks, [(PACK, b"a"), (PACK, b"b"), (PACK, b"c")])
    chunks.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == 0
    assert all(isinstance(r, ChunkFull) for r in results[1:]), results


async def test_a_record_whose_caller_gave_up_before_it_left_is_not_sent() -> None:
    chunks = Chunks()
    batcher = RecordBatcher(chunks.send, limit=100)
    tasks = await queued(batcher, chunks, [(PACK, b"a"), (PACK, b"b"), (PACK, b"c")])
    tasks[1].cancel()
    chunks.release.set()
    assert await tasks[0] == 0 and await tasks[2] == 1
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]
    assert chunks.sent == [(7, b"a"), (7, b"c")]
