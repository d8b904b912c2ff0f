"""Client-side ordering under faults: a write that failed leaves nothing in flight behind it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hercules_core.client import connect
from hercules_core.errors import TooFewChunkservers
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST


def test_a_failed_multi_piece_write_leaves_no_piece_landing_after_the_next_write(tmp_path: Path) -> None:
    """One piece of a write fails at once while another is still on its way: the write must not
    raise until that piece is stopped, or it overwrites the caller's next, acknowledged write."""
    with LocalCluster(tmp_path, settings=FAST) as c:
        async def main() -> None:
            client = await connect(c.master_addr)
            try:
                size = client.chunk_size
                await client.upload("/f", b"0" * (2 * size))
                real_write_piece = client._write_piece
                first_try = True

                async def write_piece(file_id: int, offset: int, data) -> None:  # noqa: ANN001
                    if not first_try:
                        return await real_write_piece(file_id, offset, data)
                    if offset >= size:  # the second chunk's piece fails at once
                        raise TooFewChunkservers("two of the replicas are paused")
                    await asyncio.sleep(1.0)  # the first chunk's piece is slow (a paused primary)
                    await real_write_piece(file_id, offset, data)

                client._write_piece = write_piece
                with pytest.raises(TooFewChunkservers):
                    await client.write("/f", size - 100, b"A" * 200)
                first_try = False
                await client.write("/f", size - 100, b"B" * 100)  # acknowledged
                await asyncio.sleep(2.0)  # long past the slow piece's delay
                assert await client.read("/f", size - 100, 100) == b"B" * 100
            finally:
                await client.close()

        asyncio.run(main())


# -- the pieces the client is made of, without a cluster --------------------------------------

def test_the_retry_policy_retries_until_its_deadline_and_never_a_fatal_error() -> None:
    from hercules_core.client.retry import RetryPolicy
    from hercules_core.errors import Unavailable

    policy = RetryPolicy(0.3, first_delay=0.01, max_delay=0.02)
    seen: list[Exception] = []
    waits: list[Exception] = []
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Unavailable("not yet")
        return "ok"

    assert asyncio.run(policy.run(flaky, give_up=RuntimeError, on_error=seen.append, on_wait=waits.append)) == "ok"
    assert calls == 3 and len(seen) == 2 and len(waits) == 1  # told once what it waits for

    async def down() -> None:
        raise Unavailable("gone")

    seen.clear()
    with pytest.raises(RuntimeError) as gave_up:
        asyncio.run(policy.run(down, give_up=lambda exc: RuntimeError(f"gave up: {exc}"), on_error=seen.append))
    assert "gave up: gone" in str(gave_up.value) and len(seen) >= 2  # the last failure is seen too

    async def short() -> None:
        raise TooFewChunkservers("two of three")

    seen.clear()
    with pytest.raises(TooFewChunkservers):
        asyncio.run(policy.run(short, give_up=RuntimeError, on_error=seen.append))
    assert seen == []


def test_the_location_cache_keeps_leases_reads_and_avoided_replicas_apart() -> None:
    import time

    from hercules_core import messages as m
    from hercules_core.client.locations import LocationCache

    def loc(index: int, handle: int, primary: str = "a", expires: float = 60.0) -> m.ChunkLocation:
        return m.ChunkLocation(handle=handle, version=1, index=index, replicas=["a", "b", "c"], primary=primary,
                               lease_expires=time.time() + expires, exists=True)

    cache = LocationCache(read_ttl=60.0)
    cache.leased(1, loc(0, 10))
    cache.leased(1, loc(1, 11, expires=1.0))  # about to expire: not trusted for a write
    cache.leased(1, loc(2, 12, primary=""))  # names no primary
    assert cache.lease(1, 0).handle == 10 and cache.lease(1, 1) is None and cache.lease(1, 2) is None

    cache.learnt(1, loc(0, 10))
    cache.learnt(1, loc(3, 13))
    cache.opened(1, [loc(0, 20)])  # an open replaces every read location of the file
    assert cache.readable(1, 0).handle == 20 and cache.readable(1, 3) is None
    cache.written(1, loc(0, 30))  # read where the write went
    assert cache.readable(1, 0).handle == 30
    cache.forget(1, 0)
    assert cache.readable(1, 0) is None and cache.lease(1, 0) is None

    cache.avoid("a")
    assert all(cache.read_order(["a", "b", "c"])[-1] == "a" for _ in range(20))

    cache.appended(1, 4)
    assert cache.append_chunk(1) == 4
    cache.append_failed(1, 4)
    assert cache.append_chunk(1) == -1


def test_the_windowed_writer_bounds_its_window_and_stops_every_piece_when_one_fails() -> None:
    from hercules_core.client.writer import WindowedWriter

    async def main() -> None:
        in_flight = peak = 0
        landed: list[int] = []

        async def write_piece(offset: int, data) -> None:  # noqa: ANN001
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await asyncio.sleep(0.01)
                landed.append(offset)
            finally:
                in_flight -= 1

        writer = WindowedWriter(write_piece, chunk_size=100, window=3)
        assert await writer.write(iter([b"x" * 70] * 10), start=50) == 750
        assert peak == 3 and sorted(landed) == [50, 100, 200, 300, 400, 500, 600, 700]  # split at chunk ends

        stopped: list[int] = []

        async def failing(offset: int, data) -> None:  # noqa: ANN001
            if offset == 100:
                raise TooFewChunkservers("no room")
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                stopped.append(offset)
                raise

        with pytest.raises(TooFewChunkservers):
            await WindowedWriter(failing, chunk_size=100, window=4).write(b"y" * 400)
        assert sorted(stopped) == [0, 200, 300]  # cancelled and awaited before the write raised

    asyncio.run(main())
