"""The ``sqlite`` metadata store on real files: group commit, request ids, damage at start-up,
kill -9 in the middle of commits, and online backup while a writer runs."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from hercules_core import backup
from hercules_core.builtin.metadata_sqlite import commits
from hercules_core.builtin.metadata_sqlite.backup import ID_GAP
from hercules_core.errors import AlreadyExists, ConfigError, HerculesError, InvalidArgument, NotFound
from hercules_core.master.store import FreedChunks
from hercules_core.plugins import make_plugin_manager
from hercules_core.plugins.types import MetadataContext, MetadataStoreSpec
from hercules_core.testing.metadata_contract import MetadataStoreContract, creates_some_failing

DB = "metadata.sqlite3"


def open_store(root: Path, **options: Any) -> AbstractAsyncContextManager[Any]:
    """Through the plugin manager, as the master does."""
    return make_plugin_manager().metadata_store("sqlite").open(MetadataContext(root, options))


def take_backup(root: Path, out: Path) -> int:
    """``hercules backup``'s path: the configured store's own backup."""
    return asyncio.run(backup.backup(make_plugin_manager().metadata_store("sqlite"), MetadataContext(root), out))


def restore_backup(archive: Path, root: Path, force: bool = False) -> None:
    asyncio.run(backup.restore(make_plugin_manager().metadata_store("sqlite"), MetadataContext(root), archive, force))


async def names(store: Any, path: str) -> set[str]:
    entries, _ = await store.list(path, False, 0, "")
    return {e.path for e in entries}


# -- group commit -------------------------------------------------------------------------------


async def test_group_commit_isolates_failures_and_everything_acknowledged_survives(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        ok = await creates_some_failing(store, 200)  # 40 of them fail
        assert len(ok) == 160
        assert await names(store, "/d") == ok | {"/d/taken"}
        stats = await store.stats()
        assert stats["largest_batch"] > 1, "concurrent mutations should share commits"
        assert stats["batches"] < stats["mutations"]

        # A failing operation's partial writes are rolled back, its neighbours' are kept.
        def partial(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO inodes (parent, name, is_dir, ctime, mtime) VALUES (1, 'ghost', 1, 0, 0)")
            raise InvalidArgument("changed my mind")

        outcome = await asyncio.gather(store.mkdir("/before"), store._mutate(partial), store.mkdir("/after"),
                                       return_exceptions=True)
        assert isinstance(outcome[1], InvalidArgument)
        assert {"/before", "/after"} <= await names(store, "/")
        assert "/ghost" not in await names(store, "/")

    async with open_store(tmp_path) as store:  # reopened: every acknowledged mutation is there
        assert await names(store, "/d") == ok | {"/d/taken"}
        assert {"/before", "/after"} <= await names(store, "/")


def test_group_commit_waits_briefly_for_writers_of_recent_batches(tmp_path: Path, monkeypatch: Any) -> None:
    """The db thread's batching, driven directly: with recent batches of 8 it waits for the rest
    of a batch (here they come from another thread 50 ms later); a lone writer never waits."""
    import threading

    monkeypatch.setattr(commits, "LINGER_MAX", 5.0)
    store = commits.GroupCommit(tmp_path / DB, sqlite3.connect, lambda: None, lambda db: None)
    store._commit_seconds = 20.0  # so the wait is LINGER_MAX

    def op(write: bool = True) -> Any:
        return commits.Op(lambda db: None, write, None, None)  # type: ignore[arg-type]

    store._recent_batches.extend([8, 8])
    for _ in range(2):
        store._queue.put(op())
    late = threading.Timer(0.05, lambda: [store._queue.put(op()) for _ in range(5)])
    late.start()
    started = time.monotonic()
    batch, stop = store._next_batch(op())
    late.join()
    assert (len(batch), stop) == (8, None)
    assert time.monotonic() - started < 4.0  # it stopped waiting once the batch was full

    store._recent_batches.clear()
    store._recent_batches.append(1)
    started = time.monotonic()
    assert len(store._next_batch(op())[0]) == 1
    assert time.monotonic() - started < 1.0  # a lone writer is not held back
    store._recent_batches.extend([8] * 4)
    assert len(store._next_batch(op(write=False))[0]) == 1  # nor are reads


async def test_lookups_see_every_acknowledged_mutation_and_close_waits_for_queued_ones(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        created = [asyncio.ensure_future(store.create(f"/f{i}", 1)) for i in range(50)]
        handles = []
        for i in range(5):
            info = await created[i]
            assert await store.stat(f"/f{i}") == info  # read-your-writes: acknowledged means visible
            handles.append((await store.add_chunk(info.file_id, 0)).handle)
            assert (await store.chunk(info.file_id, 0)).handle == handles[-1]
        await asyncio.gather(*created)
        # a lookup answers from committed state: before the create is even queued it finds nothing
        early, made = await asyncio.gather(store.stat("/g"), store.create("/g", 1), return_exceptions=True)
        assert isinstance(early, NotFound)
        assert await store.stat("/g") == made
        assert await store.all_handles() == sorted(handles)
        assert await store.chunk_total() == 5
        pending = [asyncio.ensure_future(store.create(f"/h{i}", 1)) for i in range(20)]
        await asyncio.sleep(0)  # queued, not yet acknowledged: close() must still commit them
    await asyncio.gather(*pending)
    with pytest.raises(HerculesError, match="not open"):
        await asyncio.wait_for(store.stat("/"), 5)  # refused after close, never left hanging
    with pytest.raises(HerculesError, match="not open"):
        await asyncio.wait_for(store.trash(), 5)
    async with open_store(tmp_path) as store:
        assert len(await names(store, "/")) == 71  # /f0../f49, /g and /h0../h19


async def test_one_master_per_root_dir(tmp_path: Path) -> None:
    async with open_store(tmp_path):
        with pytest.raises(ConfigError, match="locked"):
            async with open_store(tmp_path):
                pass
        spec, ctx = make_plugin_manager().metadata_store("sqlite"), MetadataContext(tmp_path)
        await backup.backup(spec, ctx, tmp_path / "copy.sqlite3")  # an online backup is fine
        with pytest.raises(HerculesError, match="locked"):
            await backup.restore(spec, ctx, tmp_path / "copy.sqlite3", force=True)


# -- request ids ------------------------------------------------------------------------------


async def test_a_request_id_used_for_another_request_is_refused(tmp_path: Path) -> None:
    """Replays and restarts are in the contract suite (``TestSqliteContract``); this is particular."""
    async with open_store(tmp_path) as store:
        await store.create("/a", 2, request_id="req-create")
        with pytest.raises(InvalidArgument, match="another request"):
            await store.create("/c", 1, request_id="req-create")  # the same id for something else


async def test_publish_sizes_makes_parents_and_moves_in_one_step(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        await store.mkdir("/.hercules/uploads")
        temp = await store.create("/.hercules/uploads/u1", 3, request_id="req-begin", first_chunk=True)
        chunk = await store.chunk(temp.file_id, 0)  # made in the same commit, not yet created anywhere
        assert (temp.chunk_count, chunk.version) == (1, 0)
        assert await store.create("/.hercules/uploads/u1", 3, request_id="req-begin", first_chunk=True) == temp
        assert await store.add_chunk(temp.file_id, 0) == chunk
        info, freed = await store.publish("/.hercules/uploads/u1", "/a/b/c.bin", 4096, False, request_id="req-pub")
        assert (info.path, info.file_id, info.size, info.chunk_count, freed) == \
            ("/a/b/c.bin", temp.file_id, 4096, 1, FreedChunks([]))
        assert (await store.stat("/a/b")).is_dir
        assert await names(store, "/.hercules/uploads") == set()
        # a retry after a lost reply gets the first answer, even though the source has moved
        assert await store.publish("/.hercules/uploads/u1", "/a/b/c.bin", 4096, False,
                                   request_id="req-pub") == (info, FreedChunks([]))

        other = await store.create("/.hercules/uploads/u2", 3)
        with pytest.raises(AlreadyExists, match="already exists"):
            await store.publish("/.hercules/uploads/u2", "/a/b/c.bin", 10, False)
        assert (await store.stat("/.hercules/uploads/u2")).size == 0  # all or nothing
        replaced, freed = await store.publish("/.hercules/uploads/u2", "/a/b/c.bin", 10, True)
        assert (replaced.file_id, replaced.size, freed) == (other.file_id, 10, FreedChunks([chunk.handle]))

        await store.create("/.hercules/uploads/u3", 3)
        with pytest.raises(AlreadyExists, match="a file is in the way"):
            await store.publish("/.hercules/uploads/u3", "/a/b/c.bin/d", 1, False)
        with pytest.raises(AlreadyExists):  # a directory is never replaced by a file
            await store.publish("/.hercules/uploads/u3", "/a/b", 1, True)
        assert (await store.stat("/.hercules/uploads/u3")).size == 0


async def test_a_failed_request_is_not_recorded_and_old_ids_are_pruned(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        with pytest.raises(NotFound):
            await store.create("/dir/f", 1, request_id="req-1")
        await store.mkdir("/dir")
        info = await store.create("/dir/f", 1, request_id="req-1")  # the retry really runs
        assert info.path == "/dir/f"
        assert (await store.stats())["request_ids"] == 1

        await store._mutate(lambda db: db.execute("UPDATE requests SET at = at - 7200"))
        store._prune.last = 0.0  # the next commit prunes
        await store.mkdir("/other")
        assert (await store.stats())["request_ids"] == 0
        with pytest.raises(AlreadyExists):
            await store.create("/dir/f", 1, request_id="req-1")


# -- damage at start-up -------------------------------------------------------------------------


async def _filled(root: Path, n: int = 1500) -> None:
    async with open_store(root) as store:
        await store.mkdir("/d")
        await asyncio.gather(*(store.create(f"/d/file-{i:05d}-{'x' * 40}", 3) for i in range(n)))


def _half(p: Path) -> None:
    os.truncate(p, p.stat().st_size // 2)


def _header(p: Path) -> None:
    with open(p, "r+b") as f:
        f.write(b"\xff" * 100)


def _garbage(p: Path) -> None:
    p.write_bytes(os.urandom(p.stat().st_size))


def _torn_page(p: Path) -> None:
    """The first sector of a b-tree page is garbage (a torn write of new data over old)."""
    with open(p, "r+b") as f:
        f.seek(3 * 4096)
        f.write(os.urandom(512))


@pytest.mark.parametrize("damage", [_half, _header, _garbage, _torn_page])
async def test_damaged_database_is_refused_with_a_clear_error(tmp_path: Path, damage: Any) -> None:
    await _filled(tmp_path)
    path = tmp_path / DB
    damage(path)
    before = path.read_bytes()
    with pytest.raises(HerculesError) as caught:
        async with open_store(tmp_path):
            pass
    message = str(caught.value)
    assert str(path) in message and "corrupt" in message and "hercules restore" in message
    assert path.read_bytes() == before, "a refused database is left as it was, for investigation"


@pytest.mark.parametrize("how", ["deleted", "emptied", "wal_only"])
async def test_no_silent_empty_start_where_a_database_was(tmp_path: Path, how: str) -> None:
    await _filled(tmp_path, 10)
    path = tmp_path / DB
    if how == "deleted":
        path.unlink()
    elif how == "emptied":
        os.truncate(path, 0)
    else:
        path.unlink()
        (tmp_path / "metadata.lock").unlink()
        Path(str(path) + "-wal").write_bytes(b"\0" * 32)
    with pytest.raises(ConfigError, match="refusing to start with an empty namespace") as caught:
        async with open_store(tmp_path):
            pass
    assert str(path) in str(caught.value)


async def test_another_sqlite_database_is_not_taken_for_metadata(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / DB)
    db.execute("CREATE TABLE photos (id INTEGER)")
    db.commit()
    db.close()
    with pytest.raises(HerculesError, match="not Hercules metadata"):
        async with open_store(tmp_path):
            pass


# -- crashes and backups with a real writer process -----------------------------------------------

WRITER = textwrap.dedent("""
    import asyncio, sys
    from hercules_core.plugins import make_plugin_manager
    from hercules_core.plugins.types import MetadataContext

    async def main(root):
        async with make_plugin_manager().metadata_store("sqlite").open(MetadataContext(root)) as store:
            await store.mkdir("/w")
            print("ready", flush=True)
            counter = iter(range(10**9))

            async def worker():
                while True:
                    i = next(counter)
                    await store.create(f"/w/f{i:07d}", 3)
                    print(f"/w/f{i:07d}", flush=True)  # acknowledged

            await asyncio.gather(*(worker() for _ in range(16)))

    asyncio.run(main(sys.argv[1]))
""")


def _start_writer(root: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _read_acks(proc: subprocess.Popen[str], count: int, timeout: float = 30.0) -> list[str]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    acks = []
    while len(acks) < count:
        assert time.monotonic() < deadline, "the writer is too slow"
        line = proc.stdout.readline()
        assert line, f"the writer died: exit {proc.poll()}"
        acks.append(line.strip())
    return acks


def test_kill_9_in_the_middle_of_commits_loses_nothing_acknowledged(tmp_path: Path) -> None:
    proc = _start_writer(tmp_path)
    try:
        acks = _read_acks(proc, 600)
    finally:
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=10)
    acks += rest.split()  # printed before the kill, so acknowledged too
    assert Path(str(tmp_path / DB) + "-wal").exists(), "the writer should have died with a live WAL"

    async def check() -> set[str]:
        async with open_store(tmp_path) as store:
            return await names(store, "/w")

    present = asyncio.run(check())
    assert set(acks) <= present
    assert len(present) - len(acks) <= 16 * 2  # at most the commits in flight, never acknowledged


def test_online_backup_while_writing_then_restore(tmp_path: Path) -> None:
    root, fresh = tmp_path / "master", tmp_path / "restored"
    proc = _start_writer(root)
    try:
        before = _read_acks(proc, 300)  # acknowledged before the backup starts
        size = take_backup(root, tmp_path / "backup.sqlite3")
        after = _read_acks(proc, 100)  # the writer kept going
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    assert size > 0 and after

    restore_backup(tmp_path / "backup.sqlite3", fresh)
    db = sqlite3.connect(fresh / DB)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()

    async def check() -> tuple[set[str], int, int]:
        async with open_store(fresh) as store:
            info = await store.create("/after-restore", 1)
            return await names(store, "/w"), info.file_id, (await store.add_chunk(info.file_id, 0)).handle

    restored, file_id, handle = asyncio.run(check())
    assert set(before) <= restored
    # ids the master may have handed out after the backup are never reused after a restore
    assert file_id > ID_GAP and handle > ID_GAP
    with pytest.raises(HerculesError, match="exists"):
        restore_backup(tmp_path / "backup.sqlite3", fresh)
    (tmp_path / "junk").write_bytes(os.urandom(8192))
    with pytest.raises(HerculesError, match="not a Hercules metadata backup"):
        restore_backup(tmp_path / "junk", fresh, force=True)


async def test_backup_and_restore_of_a_store_without_them_fail_clearly(tmp_path: Path) -> None:
    """``hercules backup``/``restore`` go through the store's spec: one that provides neither is
    refused by name, and nothing is written."""
    import attrs

    bare = attrs.evolve(make_plugin_manager().metadata_store("sqlite"), name="bare", backup=None, restore=None)
    with pytest.raises(ConfigError, match="'bare' cannot be backed up.*provides no backup"):
        await backup.backup(bare, MetadataContext(tmp_path), tmp_path / "copy")
    with pytest.raises(ConfigError, match="'bare' cannot be restored.*provides no restore"):
        await backup.restore(bare, MetadataContext(tmp_path), tmp_path / "copy", force=True)
    assert list(tmp_path.iterdir()) == []


class TestSqliteContract(MetadataStoreContract):
    """The contract a third-party metadata store runs, against the built-in one."""

    def store_spec(self) -> MetadataStoreSpec:
        return make_plugin_manager(strict=True).metadata_store("sqlite")

    def corrupt(self, root_dir: Path) -> Path:
        _header(root_dir / DB)
        return root_dir / DB

    def remove(self, root_dir: Path) -> Path:
        (root_dir / DB).unlink()
        return root_dir / DB


async def test_handle_batches_of_a_store_without_them_come_from_all_handles() -> None:
    from hercules_core.master.store import handle_batches

    class Plain:  # only what the protocol requires
        async def all_handles(self) -> list[int]:
            return [1, 2, 3, 5, 8]

    assert [batch async for batch in handle_batches(Plain(), 2)] == [[1, 2], [3, 5], [8]]  # type: ignore[arg-type]


def test_backup_and_restore_reach_the_disk_through_the_one_durable_replace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy is fsynced, renamed over its target and its directory fsynced (the kit's
    ``replace_durably``), and a copy cut short leaves the old file and no tmp file behind."""
    from hercules_core.chunkstore import fileio

    async def make() -> None:
        async with open_store(tmp_path / "master") as store:
            await store.create("/kept", 1)

    asyncio.run(make())
    synced: list[str] = []
    monkeypatch.setattr(fileio, "fsync_path", lambda path: synced.append(f"file {Path(path).name}"))
    monkeypatch.setattr(fileio, "fsync_dir", lambda path: synced.append(f"dir {Path(path).name}"))
    out = tmp_path / "out" / "backup.sqlite3"
    take_backup(tmp_path / "master", out)
    assert synced == ["file backup.sqlite3.tmp", "dir out"]
    synced.clear()
    restore_backup(out, tmp_path / "restored")
    assert synced[:2] == [f"file {DB}.restore", "dir restored"]  # then hercules' own restored marker
    old = out.read_bytes()

    def crash(*_: Any) -> None:
        raise OSError("simulated crash at the rename")

    monkeypatch.setattr(fileio.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        take_backup(tmp_path / "master", out)
    assert out.read_bytes() == old
    assert sorted(p.name for p in out.parent.iterdir()) == ["backup.sqlite3"]
