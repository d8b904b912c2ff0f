"""The chunk store contract against ``fs`` and ``zstd``, plus what is particular to each."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import textwrap
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from hercules_store_fs import FsChunkStore
from hercules_store_zstd import ZstdChunkStore

from hercules_core import chunkstore
from hercules_core.chunkstore import blockfile, commits, fileio, sidecar
from hercules_core.chunkstore.memory import SidecarCache, sidecar_bytes
from hercules_core.errors import ChecksumMismatch, ConfigError, Unavailable
from hercules_core.plugins import make_plugin_manager
from hercules_core.plugins.types import ChunkInfo, ChunkStore, StoreContext
from hercules_core.testing.store_contract import BLOCK, MiB, ChunkStoreContract, payload
from tests.helpers import flip_byte

SUFFIX = {"fs": ".chunk", "zstd": ".zst"}


def open_store(name: str, root_dir: Path, **options: Any) -> AbstractAsyncContextManager[ChunkStore]:
    """Through the plugin manager, as a chunkserver does: this also checks the entry points."""
    spec = make_plugin_manager(allow=["store_fs", "store_zstd"], strict=True).chunk_store(name)
    return spec.open(StoreContext(root_dir, options))


def data_files(name: str, root_dir: Path, handle: int) -> list[Path]:
    return sorted(root_dir.glob(f"chunks/*/{handle:016x}*{SUFFIX[name]}"))


def disk_bytes(name: str, root_dir: Path) -> int:
    return sum(p.stat().st_size for p in root_dir.glob(f"chunks/*/*{SUFFIX[name]}"))


class StoreUnderTest(ChunkStoreContract):
    name = ""

    def open_store(self, root_dir: Path) -> AbstractAsyncContextManager[ChunkStore]:
        return open_store(self.name, root_dir)

    def corrupt(self, root_dir: Path, handle: int) -> None:
        (path,) = data_files(self.name, root_dir, handle)
        flip_byte(path, path.stat().st_size // 2)


class TestFsContract(StoreUnderTest):
    name = "fs"


class TestZstdContract(StoreUnderTest):
    name = "zstd"


def kit_example() -> type:
    """The minimal store of ``hercules_core.chunkstore``'s docstring, run as written."""
    doc = chunkstore.__doc__ or ""
    block = doc[doc.index("::\n", doc.index("A minimal store")) + 3:doc.index("\nIts ``open``")]
    namespace: dict[str, Any] = {}
    exec(textwrap.dedent(block), namespace)  # noqa: S102 - our own docstring
    return namespace["PlainStore"]


class TestKitExampleContract(ChunkStoreContract):
    """The kit's documented example is a whole store: it passes the same contract as fs and zstd."""

    def open_store(self, root_dir: Path) -> AbstractAsyncContextManager[ChunkStore]:
        return kit_example().open(StoreContext(root_dir, {}))

    def corrupt(self, root_dir: Path, handle: int) -> None:
        (path,) = root_dir.glob(f"chunks/*/{handle:016x}.chunk")
        flip_byte(path, path.stat().st_size // 2)


# --- both stores ---------------------------------------------------------------------

both = pytest.mark.parametrize("name", ["fs", "zstd"])


def json_lines(size: int) -> bytes:
    """Log-like records: compressible the way real chunk contents often are."""
    lines = []
    total = n = 0
    while total < size:
        line = json.dumps({"seq": n, "user": f"user{n % 97}", "event": "page_view",
                           "path": f"/items/{n % 1013}", "ok": n % 7 != 0}).encode() + b"\n"
        lines.append(line)
        total += len(line)
        n += 1
    return b"".join(lines)[:size]


@both
async def test_both_stores_are_registered(name: str) -> None:
    assert name in make_plugin_manager(allow=["store_fs", "store_zstd"]).names("chunk_store")


@both
async def test_mismatch_names_handle_and_block(name: str, tmp_path: Path) -> None:
    data = payload(4 * BLOCK, seed=1)
    async with open_store(name, tmp_path) as store:
        await store.create(77, 1)
        await store.write(77, 0, data)
    (path,) = data_files(name, tmp_path, 77)
    flip_byte(path, path.stat().st_size - 5 if name == "zstd" else 2 * BLOCK + 5)
    async with open_store(name, tmp_path) as store:
        assert await store.read(77, 0, 2 * BLOCK) == data[:2 * BLOCK]  # blocks before are fine
        with pytest.raises(ChecksumMismatch) as caught:
            await store.read(77, 0, len(data))
        assert "chunk 77" in caught.value.message
        block = "block 3" if name == "zstd" else "block 2"
        assert block in caught.value.message


@both
async def test_partial_overwrite_does_not_launder_corruption(name: str, tmp_path: Path) -> None:
    """A write that keeps some of a corrupt block's bytes must fail, not re-checksum them. (The
    rot comes after the start-up scan, which would write a journalled block back whole.)"""
    async with open_store(name, tmp_path) as store:
        await store.create(1, 1)
        await store.write(1, 0, payload(BLOCK, seed=1))
    (path,) = data_files(name, tmp_path, 1)
    async with open_store(name, tmp_path) as store:
        flip_byte(path, path.stat().st_size // 2)
        with pytest.raises(ChecksumMismatch):
            await store.write(1, 10, b"patch")
        with pytest.raises(ChecksumMismatch):
            await store.read(1, 0, BLOCK)


@both
async def test_used_bytes_match_the_disk(name: str, tmp_path: Path) -> None:
    async with open_store(name, tmp_path) as store:
        assert (await store.usage()).used_bytes == 0
        for handle in range(1, 6):
            await store.create(handle, 1)
            await store.write(handle, 0, json_lines(handle * 100_000))
        for n in range(30):
            await store.write(3, n * 1000, payload(5000, seed=n))
            await store.write(4, (await store.info(4)).length, payload(777, seed=n))
        await store.delete(2)
        assert (await store.usage()).used_bytes == disk_bytes(name, tmp_path)
    async with open_store(name, tmp_path) as store:
        assert (await store.usage()).used_bytes == disk_bytes(name, tmp_path)


@both
async def test_capacity(name: str, tmp_path: Path) -> None:
    async with open_store(name, tmp_path, capacity_bytes=10 * MiB) as store:
        assert (await store.usage()).capacity_bytes == 10 * MiB
    async with open_store(name, tmp_path) as store:  # free space + used: loose, the disk is shared
        await store.create(1, 1)
        await store.write(1, 0, payload(MiB))
        usage = await store.usage()
        assert usage.capacity_bytes >= usage.used_bytes > 0


@both
async def test_crash_before_metadata_on_append_keeps_the_old_chunk(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = payload(BLOCK + 100, seed=1)
    async with open_store(name, tmp_path) as store:
        await store.create(1, 1)
        await store.write(1, 0, old)
        with monkeypatch.context() as patch:
            patch.setattr(commits, "commit_sidecar", crash)
            with pytest.raises(SimulatedCrash):
                await store.write(1, len(old), payload(3 * BLOCK, seed=2))
    async with open_store(name, tmp_path) as store:
        assert await store.info(1) == ChunkInfo(1, 1, len(old))
        assert await store.read(1, 0, 10 * BLOCK) == old
        assert (await store.usage()).used_bytes == disk_bytes(name, tmp_path)


@both
async def test_crash_before_metadata_on_overwrite(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fs overwrites in place: the torn block must read as corrupt. zstd appends: the old chunk stays.
    So too in the store that saw the writes fail: its sidecar in memory is dropped, never half updated."""
    old = payload(3 * BLOCK, seed=1)

    async def check(store: ChunkStore) -> None:
        assert await store.info(1) == ChunkInfo(1, 1, len(old))
        assert await store.read(1, 0, BLOCK) == old[:BLOCK]
        if name == "fs":
            with pytest.raises(ChecksumMismatch):
                await store.read(1, BLOCK, BLOCK)
        else:
            assert await store.read(1, 0, len(old)) == old

    async with open_store(name, tmp_path) as store:
        await store.create(1, 1)
        await store.write(1, 0, old)
        with monkeypatch.context() as patch:
            patch.setattr(commits, "commit_sidecar", crash)
            with pytest.raises(SimulatedCrash):
                await store.write(1, BLOCK + 10, payload(100, seed=2))
            with pytest.raises(SimulatedCrash):
                await store.write(1, len(old) - 10, payload(BLOCK, seed=3))  # would extend the chunk
            with pytest.raises(SimulatedCrash):
                await store.set_version(1, 7)
        await check(store)
    async with open_store(name, tmp_path) as store:
        await check(store)


@both
async def test_leftovers_are_cleaned(name: str, tmp_path: Path) -> None:
    async with open_store(name, tmp_path) as store:
        await store.create(1, 1)
        await store.write(1, 0, b"kept")
    fan = tmp_path / "chunks" / "01"
    (fan / "0000000000000001.meta.deadbeef.tmp").write_bytes(b"half a sidecar")
    (fan / f"0000000000000101{SUFFIX[name]}").write_bytes(b"orphan data, no sidecar")
    async with open_store(name, tmp_path) as store:
        assert sorted(p.name for p in fan.iterdir()) == sorted([
            "0000000000000001.meta", f"0000000000000001{SUFFIX[name]}"])
        (fan / "0000000000000001.meta.cafebabe.tmp").write_bytes(b"left by a previous run")
        assert [info.handle for info in await store.list()] == [1]
        assert not list(fan.glob("*.tmp"))
        assert await store.read(1, 0, 10) == b"kept"


@both
async def test_closed_store_refuses_work(name: str, tmp_path: Path) -> None:
    async with open_store(name, tmp_path) as store:
        await store.create(1, 1)
    with pytest.raises(Unavailable):
        await store.info(1)


@both
async def test_locks_are_released(name: str, tmp_path: Path) -> None:
    async with open_store(name, tmp_path) as store:
        for handle in range(50):
            await store.create(handle, 1)
            await store.write(handle, 0, b"x")
        assert len(store._locks) == 0  # type: ignore[attr-defined]


async def test_other_store_format_is_refused(tmp_path: Path) -> None:
    async with open_store("fs", tmp_path) as store:
        await store.create(1, 1)
    with pytest.raises(ConfigError):
        async with open_store("zstd", tmp_path):
            pass


# --- the sidecar in memory -------------------------------------------------------------------


STORE_CLASS: dict[str, type[blockfile.BlockFileStore[Any]]] = {"fs": FsChunkStore, "zstd": ZstdChunkStore}


def sidecar_path(root_dir: Path, handle: int) -> Path:
    return next(root_dir.rglob(f"{handle:016x}.meta"))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@both
async def test_reads_after_a_write_take_the_sidecar_from_memory_and_still_check_data(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store is the only writer of its files: a write's new length and CRCs are kept in memory,
    and a read of an open chunk reads no sidecar and opens no file, only the data (still verified)."""
    first, more = payload(BLOCK + 10, seed=1), payload(3 * BLOCK, seed=2)
    async with open_store(name, tmp_path) as store:
        await store.create(1, 1)
        await store.write(1, 0, first)
        assert await store.read(1, 0, 1) == first[:1]
        loads: list[int] = []
        monkeypatch.setattr(type(store), "_load", lambda self, handle: loads.append(handle))
        assert await store.write(1, len(first), more) == len(first) + len(more)
        opened: list[object] = []
        real_open = os.open
        with monkeypatch.context() as patch:
            patch.setattr(os, "open", lambda *args, **kw: opened.append(args) or real_open(*args, **kw))
            assert await store.info(1) == ChunkInfo(1, 1, len(first) + len(more))
            assert await store.read(1, 0, 5 * BLOCK) == first + more
            for offset in (0, BLOCK - 3, 2 * BLOCK + 100, len(first) + len(more) - 4096):
                assert await store.read(1, offset, 4096) == (first + more)[offset:offset + 4096]
        assert opened == [] and loads == []
        (path,) = data_files(name, tmp_path, 1)
        flip_byte(path, path.stat().st_size - 5)  # in place, behind the store's back: bit rot
        with pytest.raises(ChecksumMismatch):
            await store.read(1, 0, 5 * BLOCK)


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor, counting the thread hops store operations take."""

    hops = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        self.hops += 1
        return super().submit(fn, *args, **kwargs)


@both
async def test_small_reads_of_cached_data_take_no_thread_and_uncached_ones_still_read_right(
        name: str, tmp_path: Path) -> None:
    """A small read whose sidecar, open file and blocks are all in memory is done on the event
    loop (``preadv`` with ``RWF_NOWAIT``); one the page cache cannot serve goes to a thread and
    gives the same bytes; bit rot is still found either way."""
    hops = CountingExecutor(max_workers=2)
    asyncio.get_running_loop().set_default_executor(hops)
    data = payload(4 * BLOCK, seed=7)
    async with open_store(name, tmp_path) as store:
        await store.create(1, 1)
        await store.write(1, 0, data)
        await store.read(1, 0, 10)
        before = hops.hops
        for offset in (0, BLOCK - 3, 3 * BLOCK + 100):
            assert await store.read(1, offset, 4096) == data[offset:offset + 4096]
        assert await store.info(1) == ChunkInfo(1, 1, len(data))
        assert hops.hops == before, "a cached small read or info took a thread"

        (path,) = data_files(name, tmp_path, 1)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # out of the page cache (clean pages)
        finally:
            os.close(fd)
        assert await store.read(1, 2 * BLOCK, 4096) == data[2 * BLOCK:2 * BLOCK + 4096]
        assert hops.hops > before, "a read the page cache could not serve did not go to a thread"

        flip_byte(path, path.stat().st_size - 5)  # bit rot, now in the page cache too
        await store.read(1, 0, 10)  # the first block is still good
        with pytest.raises(ChecksumMismatch):
            await store.read(1, len(data) - 4096, 4096)


@both
async def test_a_restarted_store_reads_the_sidecar_from_disk_again(name: str, tmp_path: Path) -> None:
    data = payload(2 * BLOCK + 3, seed=3)
    async with open_store(name, tmp_path) as store:
        await store.create(1, 1)
        await store.write(1, 0, data)
        assert await store.read(1, 0, len(data)) == data
        on_disk = store._load(1)  # type: ignore[attr-defined]  # a fresh decode of the file
        on_disk.version = 9  # a record the open store never wrote: it keeps what it knows
        sidecar.commit_sidecar(sidecar_path(tmp_path, 1), sidecar.seal(store.MAGIC, on_disk.encode()),  # type: ignore[attr-defined]
                               "test")
        assert await store.info(1) == ChunkInfo(1, 1, len(data))
    async with open_store(name, tmp_path) as store:
        assert await store.info(1) == ChunkInfo(1, 9, len(data))
        assert await store.read(1, 0, len(data)) == data


@both
async def test_a_damaged_sidecar_is_found_by_a_scan_or_once_the_store_forgets_the_chunk(
        name: str, tmp_path: Path) -> None:
    """What the scrubber relies on (it calls ``forget`` before re-reading a chunk) and what a full
    listing does: bit rot in the sidecar of a chunk held in memory is found on disk as before."""
    async with open_store(name, tmp_path) as store:
        for handle in (1, 2):
            await store.create(handle, 1)
            await store.write(handle, 0, payload(BLOCK + 1, seed=handle))
            await store.write(handle, BLOCK + 1, b"tail")
            raw = bytearray(sidecar_path(tmp_path, handle).read_bytes())
            raw[10] ^= 0xFF  # in the first record: corruption, not a torn tail
            sidecar_path(tmp_path, handle).write_bytes(bytes(raw))
            assert await store.read(handle, 0, 4) == payload(4, seed=handle)  # from memory
        store.forget(1)  # type: ignore[attr-defined]
        with pytest.raises(ChecksumMismatch):
            await store.read(1, 0, 4)
        assert list(await store.list()) == []
        with pytest.raises(ChecksumMismatch):
            await store.read(2, 0, 4)


@both
async def test_memory_is_bounded_by_the_settings(name: str, tmp_path: Path) -> None:
    data = payload(4 * BLOCK, seed=4)
    meta_type = STORE_CLASS[name].META
    four_blocks = meta_type(1, len(data), **{column: [0] * 4 for column, _ in meta_type.COLUMNS})
    bound = 3 * sidecar_bytes(four_blocks)
    before = open_fds()
    async with open_store(name, tmp_path, sidecar_cache_bytes=bound, open_files=2) as store:
        for handle in range(1, 9):
            await store.create(handle, 1)
            await store.write(handle, 0, data)
            assert await store.read(handle, BLOCK, 10) == data[BLOCK:BLOCK + 10]
        assert open_fds() - before <= 2 * 2  # two chunks' data files and sidecars
        cache = store._sidecars  # type: ignore[attr-defined]
        assert len(cache) == 3 and cache.bytes <= bound
        for handle in range(1, 9):  # an evicted sidecar is read from disk again
            assert await store.read(handle, 0, len(data)) == data
        await store.delete(8)
        assert 8 not in cache
    assert open_fds() == before


def test_the_sidecar_cache_evicts_the_least_recently_used() -> None:
    cache: SidecarCache[chunkstore.ChunkMeta] = SidecarCache(3 * sidecar_bytes(chunkstore.ChunkMeta(1, 0)))
    for handle in (1, 2, 3):
        cache.put(handle, chunkstore.ChunkMeta(handle, 0))
    assert cache.get(1) is not None  # now the most recent
    cache.put(4, chunkstore.ChunkMeta(4, 0))
    assert 2 not in cache and all(h in cache for h in (1, 3, 4))
    cache.put(5, chunkstore.ChunkMeta(5, 10**9, crcs=[0] * 100_000))  # bigger than the whole bound
    assert 5 not in cache and len(cache) == 3
    cache.keep_only({3})
    assert len(cache) == 1 and cache.bytes == sidecar_bytes(chunkstore.ChunkMeta(3, 0))


# --- zstd in particular --------------------------------------------------------------


async def test_zstd_uses_clearly_less_disk_for_compressible_data(tmp_path: Path) -> None:
    data = json_lines(4 * MiB)
    used = {}
    for name in ("fs", "zstd"):
        async with open_store(name, tmp_path / name) as store:
            await store.create(1, 1)
            for pos in range(0, len(data), 256 * 1024):  # appended in pieces, as clients write
                await store.write(1, pos, data[pos:pos + 256 * 1024])
            assert await store.read(1, 0, len(data)) == data
            used[name] = (await store.usage()).used_bytes
    assert used["fs"] >= len(data)
    assert used["zstd"] < used["fs"] / 3, used


async def test_zstd_random_read_deep_in_a_chunk_decodes_only_its_blocks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hercules_store_zstd import ZstdChunkStore

    data = json_lines(4 * MiB)
    async with open_store("zstd", tmp_path) as store:
        await store.create(1, 1)
        await store.write(1, 0, data)
        decoded: list[int] = []
        original = ZstdChunkStore._decode_block

        def counting(self: ZstdChunkStore, handle: int, meta: Any, block: int, frame: memoryview) -> bytes:
            decoded.append(block)
            return original(self, handle, meta, block, frame)

        monkeypatch.setattr(ZstdChunkStore, "_decode_block", counting)
        for offset, length in [(3_500_001, 5000), (4 * MiB - 10, 100), (BLOCK * 40 - 3, 6)]:
            decoded.clear()
            assert await store.read(1, offset, length) == data[offset:offset + length]
            assert decoded == sorted({offset // BLOCK, (min(offset + length, len(data)) - 1) // BLOCK})


async def test_zstd_log_is_compacted(tmp_path: Path) -> None:
    model = bytearray(json_lines(16 * BLOCK))
    async with open_store("zstd", tmp_path) as store:
        await store.create(1, 1)
        await store.write(1, 0, bytes(model))
        single = disk_bytes("zstd", tmp_path)
        for n in range(200):  # rewrite middle blocks over and over: the log must not grow unbounded
            patch = json_lines(3000 + n)[::-1]
            offset = (n * 7919) % (len(model) - len(patch))
            await store.write(1, offset, patch)
            model[offset:offset + len(patch)] = patch
            assert disk_bytes("zstd", tmp_path) <= 2 * single + 4 * BLOCK
            assert len(data_files("zstd", tmp_path, 1)) == 1
        assert await store.read(1, 0, len(model)) == model
        assert (await store.usage()).used_bytes == disk_bytes("zstd", tmp_path)
    async with open_store("zstd", tmp_path) as store:
        assert await store.read(1, 0, len(model)) == model


async def test_zstd_bad_level_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        async with open_store("zstd", tmp_path, level="fast"):
            pass


# --- helpers ----------------------------------------------------------------------------


class SimulatedCrash(Exception):
    """Raised where a power cut would stop the process: after data, before the sidecar."""


def crash(*args: object, **kwargs: object) -> None:
    raise SimulatedCrash


@both
async def test_torn_sidecar_tail_is_skipped_and_the_log_restarts(name: str, tmp_path: Path) -> None:
    """A crash in the middle of appending a sidecar record: the previous record rules, and the
    next commit rewrites the sidecar so later records can be found again."""
    first, second = payload(BLOCK + 7, seed=1), payload(300, seed=2)
    async with open_store(name, tmp_path) as store:
        await store.create(1, 1)
        await store.write(1, 0, first)
    meta = next(tmp_path.rglob("0000000000000001.meta"))
    intact = meta.read_bytes()
    end, torn = sidecar.log_end(intact), b"\x40\x00\x00\x00torn-rec"  # a record cut short by a power loss
    assert not intact[end:].strip(b"\0")  # where the next record goes: the room written ahead, or the file's end
    meta.write_bytes(intact[:end] + torn + intact[end + len(torn):])
    async with open_store(name, tmp_path) as store:
        assert await store.info(1) == ChunkInfo(1, 1, len(first))
        assert await store.read(1, 0, 2 * BLOCK) == first
        await store.write(1, len(first), second)
        await store.set_version(1, 5)
    async with open_store(name, tmp_path) as store:
        assert await store.info(1) == ChunkInfo(1, 5, len(first) + len(second))
        assert await store.read(1, 0, 3 * BLOCK) == first + second
    raw = bytearray(meta.read_bytes())
    raw[10] ^= 0xFF  # bit rot in an earlier record is corruption, not a torn tail
    meta.write_bytes(bytes(raw))
    async with open_store(name, tmp_path) as store:
        with pytest.raises(ChecksumMismatch):
            await store.read(1, 0, 10)



@both
async def test_commits_append_to_the_sidecar_kept_open_and_follow_it_when_it_is_replaced(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit appends to the sidecar left open by the one before (no stat, open or close);
    once the log passes its limit the file is replaced, and the replacement is left open too:
    later commits go to the new file without opening it again."""
    monkeypatch.setattr(sidecar, "SIDECAR_LOG_LIMIT", 600)  # a rewrite every few commits
    real_open = os.open
    opened: list[str] = []
    replacements: list[str] = []

    def counting_open(path: Any, flags: int, *args: Any) -> int:
        if str(path).endswith(".meta"):
            opened.append(str(path))
        elif ".meta." in str(path) and str(path).endswith(fileio.TMP_SUFFIX):
            replacements.append(str(path))
        return real_open(path, flags, *args)

    pieces = [payload(700, seed=n) for n in range(60)]
    async with open_store(name, tmp_path) as store:
        await store.create(1, 1)
        monkeypatch.setattr(os, "open", counting_open)
        offset = 0
        for piece in pieces:
            await store.write(1, offset, piece)
            offset += len(piece)
        monkeypatch.setattr(os, "open", real_open)
        assert 2 <= len(replacements) <= len(pieces) // 4  # replaced every few commits, not each one
        assert len(opened) <= 1  # the first commit after the create; then kept descriptors, a replacement's too
        assert sidecar_path(tmp_path, 1).stat().st_size <= 600
    async with open_store(name, tmp_path) as store:
        assert await store.info(1) == ChunkInfo(1, 1, offset)
        assert await store.read(1, 0, offset) == b"".join(pieces)

@both
async def test_commits_overwrite_room_written_ahead_so_the_sidecar_rarely_changes_size(
        name: str, tmp_path: Path) -> None:
    """A record that does not fit the file writes zeros after it, as many bytes as the log holds;
    the records after it overwrite them, so most commits' fdatasync changes no file size, and
    the sidecar never takes more than twice its records. Reads stop at the zeros."""
    async with open_store(name, tmp_path) as store:
        await store.create(1, 1)
        await store.write(1, 0, b"first")
        path = sidecar_path(tmp_path, 1)
        sizes = [path.stat().st_size]
        for n in range(40):
            await store.set_version(1, 2 + n)
            sizes.append(path.stat().st_size)
            raw = path.read_bytes()
            assert sidecar.log_end(raw) <= len(raw) <= 2 * sidecar.log_end(raw)
        assert len(set(sizes)) <= 5  # doubled a few times, not grown by every commit
        assert not raw[sidecar.log_end(raw):].strip(b"\0")
    async with open_store(name, tmp_path) as store:
        assert await store.info(1) == ChunkInfo(1, 41, 5)
        assert await store.read(1, 0, 5) == b"first"
        await store.set_version(1, 50)  # a log opened afresh appends at its end, not the file's
    async with open_store(name, tmp_path) as store:
        assert await store.info(1) == ChunkInfo(1, 50, 5)


# --- chunk creation: its syncs, and what a crash in the middle of it leaves -------------------


def chunk_files(root_dir: Path, handle: int) -> list[str]:
    return sorted(p.name for p in root_dir.glob(f"chunks/*/{handle:016x}*"))


@both
async def test_creation_costs_one_datasync_and_one_directory_fsync(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_store(name, tmp_path) as store:
        await store.create(1, 1)  # its fan-out directory now exists
        synced: list[str] = []
        monkeypatch.setattr(sidecar, "datasync", lambda fd: synced.append("datasync"))
        monkeypatch.setattr(blockfile, "fsync_dir", lambda path: synced.append(f"dir {Path(path).name}"))
        monkeypatch.setattr(fileio.os, "fsync", lambda fd: synced.append("fsync"))
        await store.create(257, 1)  # same fan-out directory as chunk 1
        assert synced == ["datasync", "dir 01"]
    async with open_store(name, tmp_path) as store:
        assert await store.info(257) == ChunkInfo(257, 1, 0)


@both
@pytest.mark.parametrize("cut", ["empty", "half a length", "half a record", "zeros"])
async def test_torn_new_sidecar_is_an_interrupted_creation(name: str, cut: str, tmp_path: Path) -> None:
    """A power loss while the first sidecar record was written: never acknowledged, so the chunk
    is gone after the restart (not listed, not readable) and can be created again."""
    async with open_store(name, tmp_path) as store:
        await store.create(1, 1)
        await store.create(2, 1)
        await store.write(2, 0, b"kept")
    meta = next(tmp_path.rglob("0000000000000001.meta"))
    record = meta.read_bytes()
    meta.write_bytes({"empty": b"", "half a length": record[:2], "half a record": record[:len(record) // 2],
                      "zeros": bytes(len(record))}[cut])
    async with open_store(name, tmp_path) as store:
        assert chunk_files(tmp_path, 1) == []
        assert await store.list() == [ChunkInfo(2, 1, 4)]
        await store.create(1, 5)
        assert await store.info(1) == ChunkInfo(1, 5, 0)
        assert (await store.usage()).used_bytes == disk_bytes(name, tmp_path)


@both
async def test_new_sidecar_without_its_data_file_is_an_interrupted_creation(name: str, tmp_path: Path) -> None:
    """Before the directory fsync either name may be lost: a sidecar naming no bytes whose data
    file is missing is removed; a data file without a sidecar too (even an empty one)."""
    async with open_store(name, tmp_path) as store:
        await store.create(1, 1)
        await store.create(2, 1)
    (data1,) = data_files(name, tmp_path, 1)
    data1.unlink()
    next(tmp_path.rglob("0000000000000002.meta")).unlink()
    async with open_store(name, tmp_path) as store:
        assert chunk_files(tmp_path, 1) == chunk_files(tmp_path, 2) == []
        assert list(await store.list()) == []
        await store.create(1, 2)
        await store.write(1, 0, b"abc")
        assert await store.read(1, 0, 10) == b"abc"


@both
async def test_unreadable_sidecar_over_bytes_is_kept_as_evidence(name: str, tmp_path: Path) -> None:
    """Only a sidecar over *no* bytes can be a creation cut short: one over data is corruption,
    kept (and refused) rather than removed; a sidecar naming bytes whose data file is gone too."""
    async with open_store(name, tmp_path) as store:
        for handle in (1, 2):
            await store.create(handle, 1)
            await store.write(handle, 0, payload(100, seed=handle))
    meta1 = next(tmp_path.rglob("0000000000000001.meta"))
    meta1.write_bytes(meta1.read_bytes()[:5])
    (data2,) = data_files(name, tmp_path, 2)
    data2.unlink()
    async with open_store(name, tmp_path) as store:
        assert len(chunk_files(tmp_path, 1)) == 2
        assert len(chunk_files(tmp_path, 2)) == 1
        with pytest.raises(ChecksumMismatch):
            await store.read(1, 0, 10)
        with pytest.raises(ChecksumMismatch):
            await store.read(2, 0, 10)


@both
async def test_failed_directory_fsync_leaves_no_chunk(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_store(name, tmp_path) as store:
        await store.create(1, 1)
        with monkeypatch.context() as patch:
            patch.setattr(blockfile, "fsync_dir", crash)
            with pytest.raises(SimulatedCrash):
                await store.create(257, 1)
        assert chunk_files(tmp_path, 257) == []
        await store.create(257, 2)
        assert await store.info(257) == ChunkInfo(257, 2, 0)


@both
async def test_listing_skips_a_sidecar_being_created_quietly(
        name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with open_store(name, tmp_path) as store:
        await store.create(1, 1)
        meta = next(tmp_path.rglob("0000000000000001.meta"))
        async with store._locks.hold(257):  # type: ignore[attr-defined]  # as a create in flight does
            meta.with_name("0000000000000101.meta").write_bytes(b"")  # its first record not yet written
            assert list(await store.list()) == [ChunkInfo(1, 1, 0)]
        assert "chunk 257" not in caplog.text
        assert list(await store.list()) == [ChunkInfo(1, 1, 0)]  # not in flight: corrupt, and said so
        assert "chunk 257" in caplog.text


# --- the kit's one atomic file write -------------------------------------------------------


def test_atomic_write_syncs_the_file_then_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    monkeypatch.setattr(fileio.os, "fsync", lambda fd: synced.append("fsync"))
    monkeypatch.setattr(fileio, "fsync_dir", lambda path: synced.append(f"dir {Path(path).name}"))
    target = tmp_path / "server-id"
    fileio.write_atomic(target, b"abc")
    assert target.read_bytes() == b"abc"
    assert synced == ["fsync", f"dir {tmp_path.name}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server-id"]


def test_atomic_write_of_a_secret_is_never_readable_by_others(tmp_path: Path) -> None:
    """A key written with ``mode=0o600`` has that mode from its tmp file on, not only once renamed."""
    target = tmp_path / "lease-key"
    seen: list[int] = []
    real_replace = fileio.os.replace

    def replace(src: Path, dst: Path) -> None:
        seen.append(Path(src).stat().st_mode & 0o777)
        real_replace(src, dst)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fileio.os, "replace", replace)
        fileio.write_atomic(target, b"k" * 32, mode=0o600)
    assert seen == [0o600] and target.stat().st_mode & 0o777 == 0o600
    assert target.read_bytes() == b"k" * 32


def test_atomic_write_cut_short_keeps_the_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "FORMAT"
    fileio.write_atomic(target, b"old")
    with monkeypatch.context() as patch:
        patch.setattr(fileio.os, "replace", crash)
        with pytest.raises(SimulatedCrash):
            fileio.write_atomic(target, b"new", "s1")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FORMAT"]


def test_a_file_built_elsewhere_replaces_its_target_durably(tmp_path: Path) -> None:
    """For files another library fills (a SQLite backup): the same fsync, rename, directory fsync."""
    target, built = tmp_path / "db", tmp_path / "db.part"
    target.write_bytes(b"old")
    built.write_bytes(b"new")
    fileio.replace_durably(built, target)
    assert target.read_bytes() == b"new"
    assert not built.exists()
