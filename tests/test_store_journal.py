"""Journalled small writes (``chunkstore.sidecar``, ``BlockFileStore.JOURNAL_LIMIT``): one fdatasync
each, and nothing acknowledged lost when a power cut takes every data-file byte not yet synced."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hercules_store_fs import FsChunkStore

from hercules_core.chunkstore import sidecar
from hercules_core.chunkstore.layout import FORMAT_FILE, FORMAT_VERSION
from hercules_core.plugins.types import ChunkInfo
from hercules_core.testing.store_contract import BLOCK, payload
from tests.test_stores import data_files, open_store, sidecar_path

both = pytest.mark.parametrize("name", ["fs", "zstd"])
DATA_SUFFIXES = (".chunk", ".zst")


class PowerCut:
    """Records every ``pwrite`` to a chunk data file with the bytes it replaced, forgets those a
    later fdatasync/fsync of the file made durable, and on ``cut()`` puts the rest back: the data
    files as a power loss would leave them (sidecars are always synced before a commit returns)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pending: dict[str, list[tuple[int, bytes, int]]] = {}
        real_pwrite, real_fdatasync, real_fsync = os.pwrite, os.fdatasync, os.fsync

        def path_of(fd: int) -> str:
            return os.readlink(f"/proc/self/fd/{fd}")

        def pwrite(fd: int, data: object, offset: int) -> int:
            path = path_of(fd)
            if path.endswith(DATA_SUFFIXES):
                size = os.fstat(fd).st_size
                view = memoryview(data)  # type: ignore[arg-type]
                with open(path, "rb") as f:  # ``fd`` may be write-only
                    f.seek(offset)
                    self.pending.setdefault(path, []).append((offset, f.read(view.nbytes), size))
            return real_pwrite(fd, data, offset)  # type: ignore[arg-type]

        def synced(real: object) -> object:
            def sync(fd: int) -> None:
                self.pending.pop(path_of(fd), None)
                real(fd)  # type: ignore[operator]
            return sync

        monkeypatch.setattr(os, "pwrite", pwrite)
        monkeypatch.setattr(os, "fdatasync", synced(real_fdatasync))
        monkeypatch.setattr(os, "fsync", synced(real_fsync))

    def cut(self) -> int:
        """Undo every unsynced write, newest first; return how many there were."""
        undone = 0
        for path, writes in self.pending.items():
            if not os.path.exists(path):
                continue
            with open(path, "r+b") as f:
                for offset, old, size in reversed(writes):
                    f.seek(offset)
                    f.write(old)
                    f.truncate(size)
                    undone += 1
        self.pending.clear()
        return undone


@contextmanager
def counting_syncs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the files fdatasync'ed while the block runs."""
    synced: list[str] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}").rsplit(".", 1)[-1])
        real(fd)

    with monkeypatch.context() as patch:
        patch.setattr(os, "fdatasync", fdatasync)
        yield synced


async def test_a_small_write_costs_one_datasync_and_a_large_one_two(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fs journals writes of up to ``JOURNAL_LIMIT`` bytes to a chunk holding at least as many:
    the sidecar record carries them and its one fdatasync is the write's only sync. Writes to a
    smaller chunk (a copy would double it) and larger writes sync the data file, then the
    sidecar; a larger overwrite also starts a fresh log (fsync'ed, so not counted here)."""
    limit = FsChunkStore.JOURNAL_LIMIT
    small, large = payload(4096, seed=1), payload(limit + 1, seed=2)
    async with open_store("fs", tmp_path) as store:
        await store.create(1, 1)
        with counting_syncs(monkeypatch) as synced:
            for n in range(limit // len(small)):
                await store.write(1, n * len(small), small)
        assert synced == ["chunk", "meta"] * (limit // len(small))
        assert sidecar.JOURNAL_MAGIC not in sidecar_path(tmp_path, 1).read_bytes()
        with counting_syncs(monkeypatch) as synced:
            for n in range(5):
                await store.write(1, limit + n * len(small), small)
        assert synced == ["meta"] * 5
        with counting_syncs(monkeypatch) as synced:
            await store.write(1, limit + 5 * len(small), large)
        assert synced == ["chunk", "meta"]
        assert await store.read(1, limit, 6 * len(small)) == small * 5 + large[:len(small)]
        assert sidecar.JOURNAL_MAGIC in sidecar_path(tmp_path, 1).read_bytes()
        with counting_syncs(monkeypatch) as synced:
            await store.write(1, 0, large)
        assert synced == ["chunk"]
        assert sidecar.JOURNAL_MAGIC not in sidecar_path(tmp_path, 1).read_bytes()
        assert await store.read(1, 0, len(large)) == large


async def test_zstd_does_not_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """zstd's data file holds frames, not chunk bytes at their offsets: no journal to replay."""
    async with open_store("zstd", tmp_path) as store:
        await store.create(1, 1)
        with counting_syncs(monkeypatch) as synced:
            await store.write(1, 0, payload(4096))
        assert synced == ["zst", "meta"]
    assert sidecar.JOURNAL_MAGIC not in sidecar_path(tmp_path, 1).read_bytes()


async def test_journalled_appends_survive_a_power_cut_that_took_their_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pieces = [payload(FsChunkStore.JOURNAL_LIMIT, seed=99)] + [payload(1000 + 37 * n, seed=n) for n in range(20)]
    power = PowerCut(monkeypatch)
    async with open_store("fs", tmp_path) as store:
        await store.create(1, 3)
        offset = 0
        for piece in pieces:
            await store.write(1, offset, piece)
            offset += len(piece)
    (path,) = data_files("fs", tmp_path, 1)
    assert power.cut() == len(pieces) - 1  # the first one was synced
    assert path.stat().st_size == len(pieces[0])  # the cut took every byte the later writes put there
    async with open_store("fs", tmp_path) as store:
        assert await store.info(1) == ChunkInfo(1, 3, offset)
        assert await store.read(1, 0, offset) == b"".join(pieces)
    assert path.stat().st_size == offset


async def test_a_journal_without_its_metadata_record_is_not_replayed(tmp_path: Path) -> None:
    """A power cut between the journal record and the record after it (one write, torn): the
    chunk keeps its previous length and bytes, as for any write that was never acknowledged."""
    first = payload(3000, seed=1)
    async with open_store("fs", tmp_path) as store:
        await store.create(1, 1)
        await store.write(1, 0, first)
    meta = sidecar_path(tmp_path, 1)
    raw = meta.read_bytes()
    end = sidecar.log_end(raw)
    torn = sidecar.journal_record(0, payload(500, seed=2)) + b"\x40\x00\x00\x00HFS1"  # torn after the journal
    meta.write_bytes(raw[:end] + torn + raw[end + len(torn):])
    async with open_store("fs", tmp_path) as store:
        assert await store.info(1) == ChunkInfo(1, 1, len(first))
        assert await store.read(1, 0, 2 * BLOCK) == first
    (path,) = data_files("fs", tmp_path, 1)
    assert path.stat().st_size == len(first)


@pytest.mark.parametrize("log_limit", [600, sidecar.SIDECAR_LOG_LIMIT])
async def test_nothing_acknowledged_is_lost_to_a_power_cut_after_mixed_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_limit: int) -> None:
    """Small (journalled) and large (synced) writes, appends and overwrites, version changes, on
    three chunks, the logs replaced every few commits or rarely; then a power cut takes every
    unsynced data-file byte. Each chunk reads back exactly what was acknowledged: a replay may
    never write a journal's older bytes over a later synced write, and no log is replaced
    before the bytes of its journals are durable."""
    monkeypatch.setattr(sidecar, "SIDECAR_LOG_LIMIT", log_limit)
    rng = random.Random(log_limit)
    power = PowerCut(monkeypatch)
    model = {handle: bytearray() for handle in (1, 2, 3)}
    versions = dict.fromkeys(model, 1)
    async with open_store("fs", tmp_path) as store:
        for handle in model:
            await store.create(handle, 1)
        for step in range(240):
            handle = rng.choice(list(model))
            chunk = model[handle]
            kind = rng.random()
            if kind < 0.1:
                versions[handle] += 1
                await store.set_version(handle, versions[handle])
                continue
            size = rng.randint(1, 9000) if kind < 0.75 else rng.randint(BLOCK + 1, 3 * BLOCK)
            offset = rng.randint(0, len(chunk)) if rng.random() < 0.5 else len(chunk)
            data = payload(size, seed=step)
            await store.write(handle, offset, data)
            chunk[offset:offset + size] = data
    assert power.cut() > 0
    async with open_store("fs", tmp_path) as store:
        for handle, chunk in model.items():
            assert await store.info(handle) == ChunkInfo(handle, versions[handle], len(chunk))
            assert await store.read(handle, 0, len(chunk)) == bytes(chunk), f"chunk {handle}"


async def test_a_store_of_the_previous_format_opens_and_is_upgraded(tmp_path: Path) -> None:
    async with open_store("fs", tmp_path) as store:
        await store.create(1, 1)
        await store.write(1, 0, b"kept")
    format_file = tmp_path / FORMAT_FILE
    described = json.loads(format_file.read_bytes())
    format_file.write_text(json.dumps({**described, "format": 1}))
    async with open_store("fs", tmp_path) as store:
        assert await store.read(1, 0, 10) == b"kept"
    assert json.loads(format_file.read_bytes())["format"] == FORMAT_VERSION == 2
