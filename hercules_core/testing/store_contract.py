"""The behaviour every ``ChunkStore`` must show; store plugins run it against themselves.

Subclass ``ChunkStoreContract`` in a test module under a name pytest collects (``Test...``)
and say how to open your store on a directory and how to damage its stored bytes::

    from pathlib import Path

    from hercules_core.plugins import make_plugin_manager
    from hercules_core.plugins.types import StoreContext
    from hercules_core.testing.store_contract import ChunkStoreContract

    class TestMemoStore(ChunkStoreContract):
        def open_store(self, root_dir: Path):
            spec = make_plugin_manager().chunk_store("memo")
            return spec.open(StoreContext(root_dir))

        def corrupt(self, root_dir: Path, handle: int) -> None:
            path = next(root_dir.rglob(f"{handle}.data"))
            raw = bytearray(path.read_bytes())
            raw[len(raw) // 2] ^= 0xFF
            path.write_bytes(raw)

Every test uses real files under pytest's ``tmp_path`` and runs with pytest-asyncio (strict
or auto mode). The store is closed before ``corrupt`` and reopened after it, so caching
stores are tested fairly.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
import pytest_asyncio

from hercules_core.errors import ChecksumMismatch, InvalidArgument, NotFound
from hercules_core.plugins.types import ChunkInfo, ChunkStore

BLOCK = 64 * 1024  # the checksum block size every store is opened with by default
MiB = 1 << 20


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic incompressible bytes: a failing test can be replayed."""
    return random.Random(seed).randbytes(size)


class ChunkStoreContract:
    """Base class of the contract tests; override ``open_store`` and ``corrupt``.

    Not collected itself (its name does not start with ``Test``); each subclass is.
    """

    pytestmark = pytest.mark.asyncio

    # -- what a subclass provides ---------------------------------------------------

    def open_store(self, root_dir: Path) -> AbstractAsyncContextManager[ChunkStore]:
        """An async context manager yielding your store on ``root_dir`` (may not exist yet).

        Usually ``spec.open(StoreContext(root_dir))``. It is entered more than once on the
        same directory (one at a time): that is how restarts are tested.
        """
        raise NotImplementedError("subclass ChunkStoreContract and implement open_store()")

    def corrupt(self, root_dir: Path, handle: int) -> None:
        """Flip one byte of chunk ``handle``'s live stored data (not metadata) on disk.

        Called while the store is closed, after a single write of several blocks.
        """
        raise NotImplementedError("subclass ChunkStoreContract and implement corrupt()")

    # -- fixtures ---------------------------------------------------------------------

    @pytest.fixture
    def root_dir(self, tmp_path: Path) -> Path:
        return tmp_path / "store"

    @pytest_asyncio.fixture
    async def store(self, root_dir: Path) -> AsyncIterator[ChunkStore]:
        async with self.open_store(root_dir) as store:
            yield store

    @staticmethod
    async def write_chunk(store: ChunkStore, handle: int, data: bytes, version: int = 1) -> None:
        await store.create(handle, version)
        assert await store.write(handle, 0, data) == len(data)

    # -- basics -----------------------------------------------------------------------

    async def test_store_is_a_chunk_store(self, store: ChunkStore) -> None:
        assert isinstance(store, ChunkStore)

    async def test_round_trip(self, store: ChunkStore) -> None:
        data = payload(3 * BLOCK + 12_345)
        await self.write_chunk(store, 1, data)
        assert await store.read(1, 0, len(data)) == data
        assert await store.read(1, 0, 10 * len(data)) == data

    async def test_new_chunk_is_empty(self, store: ChunkStore) -> None:
        await store.create(1, 4)
        assert await store.info(1) == ChunkInfo(1, 4, 0)
        assert await store.read(1, 0, 100) == b""

    async def test_create_existing_only_sets_version(self, store: ChunkStore) -> None:
        data = payload(1000)
        await self.write_chunk(store, 1, data, version=1)
        await store.create(1, 2)
        assert await store.info(1) == ChunkInfo(1, 2, len(data))
        assert await store.read(1, 0, len(data)) == data

    async def test_created_chunks_survive_a_restart(self, root_dir: Path) -> None:
        async with self.open_store(root_dir) as store:
            await asyncio.gather(*(store.create(handle, handle + 1) for handle in range(1, 41)))
        async with self.open_store(root_dir) as store:
            assert sorted(await store.list(), key=lambda info: info.handle) == [
                ChunkInfo(handle, handle + 1, 0) for handle in range(1, 41)]
            await store.create(1, 9)  # still idempotent after the restart
            assert await store.info(1) == ChunkInfo(1, 9, 0)
            assert await store.write(2, 0, b"first bytes") == 11
        async with self.open_store(root_dir) as store:
            assert await store.info(1) == ChunkInfo(1, 9, 0)
            assert await store.read(2, 0, 100) == b"first bytes"

    # -- writes -----------------------------------------------------------------------

    @pytest.mark.parametrize("offset, size", [
        (0, 1),
        (12_345, 3),
        (BLOCK, BLOCK),  # exactly one aligned block
        (BLOCK - 100, 300),  # unaligned, across a block boundary
        (2 * BLOCK - 1, BLOCK + 2),  # one byte each side of a whole block
        (BLOCK + 7, 3 * BLOCK),  # many blocks, unaligned both ends
        (4 * BLOCK + 900, 99),  # the last, short block up to the end
    ])
    async def test_overwrite_in_the_middle(self, store: ChunkStore, offset: int, size: int) -> None:
        model = bytearray(payload(4 * BLOCK + 999, seed=1))
        await self.write_chunk(store, 1, bytes(model))
        patch = payload(size, seed=2)
        assert await store.write(1, offset, patch) == len(model)
        model[offset:offset + size] = patch
        assert await store.read(1, 0, len(model)) == model
        assert (await store.info(1)).length == len(model)

    async def test_overwrite_past_the_end_extends(self, store: ChunkStore) -> None:
        model = bytearray(payload(BLOCK + 10, seed=1))
        await self.write_chunk(store, 1, bytes(model))
        patch = payload(2 * BLOCK, seed=2)
        assert await store.write(1, BLOCK, patch) == 3 * BLOCK
        model[BLOCK:] = patch
        assert await store.read(1, 0, 4 * BLOCK) == model

    async def test_append(self, store: ChunkStore) -> None:
        await store.create(1, 1)
        model = bytearray()
        for seed, size in enumerate([1, 100, BLOCK - 101, 1, BLOCK, 3 * BLOCK + 17, 5, 0]):
            piece = payload(size, seed=seed)
            assert await store.write(1, len(model), piece) == len(model) + size
            model += piece
        assert await store.read(1, 0, len(model) + 1) == model
        assert (await store.info(1)).length == len(model)

    async def test_write_past_end_zero_fills_the_gap(self, store: ChunkStore) -> None:
        await store.create(1, 1)
        await store.write(1, 0, b"head")
        assert await store.write(1, 2 * BLOCK + 10, b"tail") == 2 * BLOCK + 14
        assert await store.read(1, 0, 3 * BLOCK) == b"head" + bytes(2 * BLOCK + 6) + b"tail"
        await store.create(2, 1)  # a gap from an empty chunk
        assert await store.write(2, BLOCK + 5, b"x") == BLOCK + 6
        assert await store.read(2, 0, 2 * BLOCK) == bytes(BLOCK + 5) + b"x"

    async def test_accepts_any_buffer(self, store: ChunkStore) -> None:
        await store.create(1, 1)
        await store.write(1, 0, bytearray(b"abc"))
        await store.write(1, 3, memoryview(b"--def--")[2:5])
        assert await store.read(1, 0, 10) == b"abcdef"

    # -- reads ------------------------------------------------------------------------

    @pytest.mark.parametrize("offset, length", [
        (0, 10),  # the start
        (0, BLOCK),  # one whole block
        (BLOCK - 5, 10),  # across a boundary
        (12_345, 100_000),  # unaligned, across blocks
        (2 * BLOCK, BLOCK),  # an aligned middle block
        (3 * BLOCK + 1, 2 * BLOCK),  # into the short last block, then past the end
        (5 * BLOCK + 122, 1),  # the very last byte
    ])
    async def test_read_ranges(self, store: ChunkStore, offset: int, length: int) -> None:
        data = payload(5 * BLOCK + 123, seed=3)
        await self.write_chunk(store, 1, data)
        assert await store.read(1, offset, length) == data[offset:offset + length]

    async def test_read_past_end_is_short_or_empty(self, store: ChunkStore) -> None:
        data = payload(BLOCK + 50, seed=4)
        await self.write_chunk(store, 1, data)
        assert await store.read(1, len(data) - 10, 100) == data[-10:]
        assert await store.read(1, len(data), 10) == b""
        assert await store.read(1, len(data) + 5 * BLOCK, 10) == b""
        assert await store.read(1, 10, 0) == b""

    # -- metadata ---------------------------------------------------------------------

    async def test_info(self, store: ChunkStore) -> None:
        await store.create(5, 3)
        assert await store.info(5) == ChunkInfo(5, 3, 0)
        await store.write(5, 0, payload(777))
        assert await store.info(5) == ChunkInfo(5, 3, 777)

    async def test_set_version_persists(self, root_dir: Path) -> None:
        async with self.open_store(root_dir) as store:
            await self.write_chunk(store, 1, payload(1000), version=1)
            await store.set_version(1, 7)
            assert await store.info(1) == ChunkInfo(1, 7, 1000)
        async with self.open_store(root_dir) as store:
            assert await store.info(1) == ChunkInfo(1, 7, 1000)

    async def test_delete(self, store: ChunkStore) -> None:
        await self.write_chunk(store, 1, payload(2 * BLOCK))
        await self.write_chunk(store, 2, payload(10))
        await store.delete(1)
        with pytest.raises(NotFound):
            await store.info(1)
        with pytest.raises(NotFound):
            await store.read(1, 0, 10)
        await store.delete(1)  # already gone: fine
        await store.delete(99)  # never there: fine
        assert [info.handle for info in await store.list()] == [2]
        await store.create(1, 3)  # the handle can be reused, empty
        assert await store.info(1) == ChunkInfo(1, 3, 0)

    async def test_list(self, store: ChunkStore) -> None:
        assert list(await store.list()) == []
        chunks = {1: (1, 0), 2: (5, 100), 300: (2, BLOCK + 1), 2**63 + 5: (9, 3 * BLOCK)}
        for handle, (version, length) in chunks.items():
            await self.write_chunk(store, handle, payload(length, seed=handle % 1000), version)
        listed = await store.list()
        assert sorted(listed, key=lambda info: info.handle) == [
            ChunkInfo(handle, version, length) for handle, (version, length) in sorted(chunks.items())]

    async def test_unknown_handle_is_not_found(self, store: ChunkStore) -> None:
        with pytest.raises(NotFound):
            await store.write(42, 0, b"data")
        with pytest.raises(NotFound):
            await store.read(42, 0, 10)
        with pytest.raises(NotFound):
            await store.info(42)
        with pytest.raises(NotFound):
            await store.set_version(42, 2)
        assert list(await store.list()) == []

    async def test_invalid_arguments(self, store: ChunkStore) -> None:
        await store.create(1, 1)
        with pytest.raises(InvalidArgument):
            await store.write(1, -1, b"x")
        with pytest.raises(InvalidArgument):
            await store.read(1, -1, 10)
        with pytest.raises(InvalidArgument):
            await store.read(1, 0, -1)

    async def test_usage_tracks_data(self, store: ChunkStore) -> None:
        before = await store.usage()
        assert 0 <= before.used_bytes <= before.capacity_bytes
        await self.write_chunk(store, 1, payload(MiB))  # incompressible
        grown = await store.usage()
        assert grown.used_bytes >= before.used_bytes + MiB // 2
        assert grown.capacity_bytes >= grown.used_bytes
        await store.delete(1)
        assert (await store.usage()).used_bytes < grown.used_bytes

    # -- integrity and durability -------------------------------------------------------

    async def test_checksum_mismatch_is_detected(self, root_dir: Path) -> None:
        data = payload(4 * BLOCK + 100, seed=5)
        async with self.open_store(root_dir) as store:
            await self.write_chunk(store, 1, data)
        self.corrupt(root_dir, 1)
        async with self.open_store(root_dir) as store:
            with pytest.raises(ChecksumMismatch):
                await store.read(1, 0, len(data))
            bad_blocks = 0
            for start in range(0, len(data), BLOCK):  # no block may return wrong bytes
                try:
                    got = await store.read(1, start, BLOCK)
                except ChecksumMismatch:
                    bad_blocks += 1
                else:
                    assert got == data[start:start + BLOCK]
            assert bad_blocks >= 1

    async def test_reopen_after_restart(self, root_dir: Path) -> None:
        chunks = {1: (3, payload(0)), 2: (1, payload(17, seed=2)), 3: (8, payload(3 * BLOCK + 5, seed=3))}
        async with self.open_store(root_dir) as store:
            for handle, (version, data) in chunks.items():
                await self.write_chunk(store, handle, data, version)
            await store.write(3, BLOCK - 2, b"patched")
        expected3 = bytearray(chunks[3][1])
        expected3[BLOCK - 2:BLOCK + 5] = b"patched"
        async with self.open_store(root_dir) as store:
            assert sorted(await store.list(), key=lambda info: info.handle) == [
                ChunkInfo(h, v, len(d)) for h, (v, d) in sorted(chunks.items())]
            assert await store.read(2, 0, 100) == chunks[2][1]
            assert await store.read(3, 0, 4 * BLOCK) == expected3
            assert await store.write(2, 17, b"more") == 21  # still writable after the restart
        async with self.open_store(root_dir) as store:
            assert await store.read(2, 0, 100) == chunks[2][1] + b"more"
            assert await store.info(1) == ChunkInfo(1, 3, 0)

    # -- concurrency ------------------------------------------------------------------

    async def test_concurrent_writes_to_different_handles(self, store: ChunkStore) -> None:
        sizes = [100, BLOCK, 3 * BLOCK + 1, 7, BLOCK - 3]

        async def fill(handle: int) -> bytes:
            await store.create(handle, handle)
            model = bytearray()
            for n, size in enumerate(sizes):
                piece = payload(size, seed=handle * 100 + n)
                assert await store.write(handle, len(model), piece) == len(model) + size
                model += piece
            return bytes(model)

        handles = range(1, 17)
        written = await asyncio.gather(*(fill(handle) for handle in handles))
        for handle, data in zip(handles, written):
            assert await store.read(handle, 0, len(data) + 1) == data
            assert await store.info(handle) == ChunkInfo(handle, handle, len(data))

    async def test_reads_never_see_a_half_done_write(self, store: ChunkStore) -> None:
        size = 3 * BLOCK + 10
        await self.write_chunk(store, 1, bytes(size))

        async def writer() -> None:
            for value in range(1, 21):
                await store.write(1, 0, bytes([value]) * size)

        async def reader() -> list[bytes]:
            return [await store.read(1, 0, size) for _ in range(20)]

        _, *seen = await asyncio.gather(writer(), reader(), reader(), reader())
        for snapshots in seen:
            for snapshot in snapshots:
                assert len(snapshot) == size
                assert snapshot.count(snapshot[:1]) == size, "a read saw two writes mixed"

    async def test_large_random_chunk(self, store: ChunkStore) -> None:
        data = payload(3 * MiB, seed=6)
        await self.write_chunk(store, 1, data)
        assert await store.read(1, 0, len(data)) == data
        piece = MiB - 1  # unaligned pieces
        assert b"".join([await store.read(1, pos, piece) for pos in range(0, len(data), piece)]) == data
        await store.create(2, 1)  # the same bytes written in unaligned parts
        cuts = [0, 1, 99_999, BLOCK * 7 + 3, MiB + 5, 2 * MiB - 1, len(data)]
        for start, end in zip(cuts, cuts[1:]):
            assert await store.write(2, start, data[start:end]) == end
        assert await store.read(2, 0, len(data)) == data
        assert await store.info(2) == ChunkInfo(2, 1, len(data))


__all__ = ["BLOCK", "ChunkStoreContract", "payload"]
