"""The guarantees every ``MetadataStore`` must give; metadata-store plugins run it against themselves.

Subclass ``MetadataStoreContract`` in a test module under a name pytest collects (``Test...``),
return your descriptor, and say how to damage and how to lose your store's files::

    from pathlib import Path

    from hercules_core.plugins import make_plugin_manager
    from hercules_core.testing.metadata_contract import MetadataStoreContract

    class TestMyStore(MetadataStoreContract):
        def store_spec(self):
            return make_plugin_manager().metadata_store("mine")

        def corrupt(self, root_dir: Path) -> Path:
            path = root_dir / "mine.db"
            path.write_bytes(b"\\xff" * path.stat().st_size)
            return path

        def remove(self, root_dir: Path) -> Path:
            path = root_dir / "mine.db"
            path.unlink()
            return path

The tests follow the seven guarantees of ``hercules_core.master.store`` (durable on return,
atomic per call, serializable, ids never reused, request ids, refuse on damage, no blocking
of the event loop), one section each. They use real files under pytest's ``tmp_path``, run
with pytest-asyncio, and reopen the store on the same directory to see what is durable; one
forks a writer and kills it with SIGKILL in the middle of its commits (POSIX only). A store
whose descriptor has ``backup`` and ``restore`` is checked for those as well.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hercules_core.errors import AlreadyExists, HerculesError, InvalidArgument, NotEmpty, NotFound
from hercules_core.master.store import FreedChunks, MetadataStore, handle_batches
from hercules_core.testing.metadata_contract_base import METHODS, creates_some_failing
from hercules_core.testing.metadata_contract_ids import IdsContract

__all__ = ["MetadataStoreContract", "creates_some_failing"]

class MetadataStoreContract(IdsContract):
    """Base class of the contract tests; override ``store_spec``, ``corrupt`` and ``remove``.

    Not collected itself (its name does not start with ``Test``); each subclass is.
    """

    async def test_store_has_every_method_of_the_protocol(self, store: MetadataStore) -> None:
        missing = [name for name in METHODS if not callable(getattr(store, name, None))]
        assert not missing, f"the store lacks {', '.join(missing)}"

    # -- 1. durable on return ------------------------------------------------------------

    async def test_every_acknowledged_mutation_survives_a_restart(self, root_dir: Path) -> None:
        async with self.open_store(root_dir) as store:
            await store.mkdir("/d/e")
            file_id, (h0, h1) = await self.file_with_chunks(store, "/d/f")
            await store.set_version(h1, 7)
            await store.extend_size(file_id, 1234)
            await store.rename("/d/f", "/d/g", False)
            await store.create("/d/gone", 1)
            await store.delete("/d/gone", False)
            await store.snapshot("/d/g", "/snap")
            clone = await store.new_handle(7)
            assert await store.repoint(file_id, 1, h1, clone) == FreedChunks([])
        async with self.open_store(root_dir) as store:
            assert await self.names(store, "/d") == {"/d/e", "/d/g"}
            info = await store.stat("/d/g")
            assert (info.file_id, info.size, info.chunk_count) == (file_id, 1234, 2)
            assert [(await store.chunk(file_id, i)).handle for i in (0, 1)] == [h0, clone]
            assert await store.versions([h0, h1, clone]) == {h0: 1, h1: 7, clone: 7}
            assert [path for path, _, _ in (await store.trash())[0]] == ["/d/gone"]
            snap = await store.stat("/snap")
            assert (await store.chunk(snap.file_id, 1)).handle == h1  # the snapshot kept the shared chunk
            assert await store.all_handles() == sorted({h0, h1, clone})

    def test_acknowledged_mutations_survive_kill_9(self, root_dir: Path) -> None:
        """A writer process, killed with SIGKILL in the middle of its commits, loses nothing it
        was told had returned."""
        if not hasattr(os, "fork"):
            pytest.skip("needs fork()")
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the writer: reports each create once it returned
            status = 0
            try:
                os.close(read_end)
                asyncio.run(self._writer(root_dir, write_end))
            except BaseException as exc:  # noqa: BLE001 - reported, then the child exits
                os.write(2, f"metadata contract writer failed: {exc!r}\n".encode())
                status = 1
            finally:
                os._exit(status)
        os.close(write_end)
        acks: list[str] = []
        with os.fdopen(read_end) as reports:
            try:
                assert reports.readline().strip() == "ready", "the writer could not open the store"
                while len(acks) < self.kill_after:
                    line = reports.readline()
                    assert line, "the writer stopped before it was killed"
                    acks.append(line.strip())
            finally:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            acks += reports.read().split()  # reported before the kill: acknowledged too

        async def present() -> set[str]:
            async with self.open_store(root_dir) as store:
                return await self.names(store, "/w")

        assert set(acks) <= asyncio.run(present())

    async def _writer(self, root_dir: Path, out: int) -> None:
        async with self.open_store(root_dir) as store:
            await store.mkdir("/w")
            os.write(out, b"ready\n")
            counter = iter(range(10**9))

            async def worker() -> None:
                while True:
                    path = f"/w/f{next(counter):07d}"
                    await store.create(path, 3)
                    os.write(out, f"{path}\n".encode())  # one write below PIPE_BUF: never torn

            await asyncio.gather(*(worker() for _ in range(16)))

    # -- 2. atomic per call ----------------------------------------------------------------

    async def test_a_failing_mutation_leaves_nothing_and_spares_the_others(self, store: MetadataStore) -> None:
        made = await creates_some_failing(store)
        assert await self.names(store, "/d") == made | {"/d/taken"}
        assert await self.names(store, "/") == {"/d"}

    async def test_a_publish_that_fails_changes_nothing(self, store: MetadataStore) -> None:
        await store.mkdir("/up")
        await store.mkdir("/a/b")
        await store.create("/a/b/c.bin", 1)
        source = await store.create("/up/u1", 3)
        with pytest.raises(AlreadyExists):  # sizes the source, then finds the target taken
            await store.publish("/up/u1", "/a/b/c.bin", 4096, False)
        assert (await store.stat("/up/u1")).size == 0
        assert (await store.stat("/up/u1")).file_id == source.file_id
        with pytest.raises(AlreadyExists):
            await store.publish("/up/u1", "/a/b/c.bin/d", 10, False)  # a file is in the way
        assert (await store.stat("/up/u1")).size == 0
        with pytest.raises(NotEmpty):
            await store.delete("/a", False)
        assert await self.names(store, "/a/b") == {"/a/b/c.bin"}

    async def test_compose_shares_chunks_in_one_step_or_changes_nothing(self, root_dir: Path) -> None:
        """``compose``: the sources' chunks at their offsets, each shared (refs + 1); a misaligned
        source refused naming it, leaving nothing; the sources removed in the same step; a chunk
        never created left out; shared chunks freed only when the last file holding them goes."""
        size = 1024  # the chunk size the caller names
        async with self.open_store(root_dir) as store:
            a, (a0, a1) = await self.file_with_chunks(store, "/a", 2)
            b, (b0,) = await self.file_with_chunks(store, "/b", 1)
            await store.extend_size(a, 2 * size)
            await store.extend_size(b, 10)
            info, freed = await store.compose("/out/j", ["/a", "/b"], size)
            assert (info.path, info.size, info.chunk_count, freed) == ("/out/j", 2 * size + 10, 3, FreedChunks([]))
            assert [(await store.chunk(info.file_id, i)).handle for i in range(3)] == [a0, a1, b0]
            assert {(await store.chunk(a, i)).refs for i in (0, 1)} == {(await store.chunk(b, 0)).refs} == {2}
            with pytest.raises(InvalidArgument, match="/b"):
                await store.compose("/k", ["/b", "/a"], size)
            with pytest.raises(NotFound):
                await store.stat("/k")
            assert (await store.chunk(a, 0)).refs == 2
            with pytest.raises(AlreadyExists):
                await store.compose("/out/j", ["/a"], size)
            kept, freed = await store.compose("/r", ["/a", "/b"], size, remove_sources=True, request_id="r-c")
            assert freed == FreedChunks([]) and await self.names(store, "/") == {"/out", "/r"}
            assert await store.compose("/r", ["/a", "/b"], size, remove_sources=True, request_id="r-c") == \
                (kept, FreedChunks([]))
            v = await store.create("/v", 1)
            await store.add_chunk(v.file_id, 0)  # version 0: never created
            v1 = (await store.add_chunk(v.file_id, 1)).handle
            await store.set_version(v1, 1)
            await store.extend_size(v.file_id, size + 1)
            made, _ = await store.compose("/vj", ["/v"], size)
            assert await store.chunk(made.file_id, 0) is None and (await store.chunk(made.file_id, 1)).handle == v1
        async with self.open_store(root_dir) as store:  # durable, as every mutation
            assert [(await store.chunk(kept.file_id, i)).handle for i in range(3)] == [a0, a1, b0]
            await store.delete("/out", True)
            assert (await store.purge_trash(float("inf"))).handles == []
            await store.delete("/r", False)
            assert sorted((await store.purge_trash(float("inf"))).handles) == sorted([a0, a1, b0])

    # -- 3. serializable ------------------------------------------------------------------------

    async def test_a_read_after_a_mutation_returned_sees_it(self, store: MetadataStore) -> None:
        for i in range(20):
            info = await store.create(f"/f{i}", 2)
            assert await store.stat(f"/f{i}") == info
            assert (await store.stat_id(info.file_id)).path == f"/f{i}"
            ref = await store.add_chunk(info.file_id, 0)
            assert await store.chunk(info.file_id, 0) == ref
            assert await store.last_chunk(info.file_id) == ref
            await store.set_version(ref.handle, i + 1)
            assert await store.versions([ref.handle]) == {ref.handle: i + 1}
            assert await store.replication_of([ref.handle]) == {ref.handle: 2}
            await store.extend_size(info.file_id, 100 * i)
            assert (await store.stat(f"/f{i}")).size == 100 * i
            await store.rename(f"/f{i}", f"/g{i}", False)
            with pytest.raises(NotFound):
                await store.stat(f"/f{i}")
            await store.delete(f"/g{i}", False)
            with pytest.raises(NotFound):
                await store.stat(f"/g{i}")
        assert await store.chunk_total() == 20

    async def test_conflicting_concurrent_mutations_have_one_winner(self, store: MetadataStore) -> None:
        outcomes = await asyncio.gather(*(store.create("/one", 1) for _ in range(20)), return_exceptions=True)
        winners = [o for o in outcomes if not isinstance(o, BaseException)]
        assert len(winners) == 1
        assert all(isinstance(o, AlreadyExists) for o in outcomes if isinstance(o, BaseException))
        refs = await asyncio.gather(*(store.add_chunk(winners[0].file_id, 0) for _ in range(20)))
        assert len({ref.handle for ref in refs}) == 1 and await store.chunk_total() == 1
        moves = await asyncio.gather(*(store.rename("/one", f"/t{i}", False) for i in range(10)),
                                     return_exceptions=True)
        assert sum(not isinstance(m, BaseException) for m in moves) == 1
        assert len(await self.names(store, "/")) == 1

    async def test_every_handle_is_listed_ascending_also_in_batches(self, store: MetadataStore) -> None:
        """``all_handles`` (and ``handle_batches``, if the store has it: the master's sweep
        prefers it) list each handle once, ascending."""
        _, handles = await self._allocate(store, "/a", 7)
        assert await store.all_handles() == sorted(handles)
        batches = [batch async for batch in handle_batches(store, 4)]
        assert [h for batch in batches for h in batch] == sorted(handles)
        if hasattr(store, "handle_batches"):
            assert all(0 < len(batch) <= 4 for batch in batches)

    # -- 6. refuse, never start empty, on damage -----------------------------------------------------

    async def _filled(self, root_dir: Path) -> None:
        async with self.open_store(root_dir) as store:
            await store.mkdir("/d")
            await asyncio.gather(*(store.create(f"/d/file-{i:05d}-{'x' * 40}", 3) for i in range(500)))

    @pytest.mark.parametrize("damage", ["corrupt", "remove"])
    async def test_damaged_or_lost_files_are_refused_naming_the_file(self, root_dir: Path, damage: str) -> None:
        """Not opened (and never replaced by an empty namespace): ``corrupt`` and ``remove``
        return the file the error must name."""
        await self._filled(root_dir)
        damaged = getattr(self, damage)(root_dir)
        with pytest.raises(HerculesError) as caught:
            async with self.open_store(root_dir):
                pass
        assert str(damaged) in str(caught.value)

    # -- 7. no blocking of the event loop ------------------------------------------------------------

    async def test_mutations_wait_off_the_event_loop(self, store: MetadataStore, monkeypatch: Any) -> None:
        """A mutation is not durable yet when its first step on the loop is over (it waits for a
        thread or for I/O), and no Python-level fsync runs on the event loop's thread."""
        loop_thread = threading.get_ident()
        on_loop: list[str] = []

        def watch(name: str, real: Callable[[int], None]) -> Callable[[int], None]:
            def synced(fd: int) -> None:
                if threading.get_ident() == loop_thread:
                    on_loop.append(name)
                real(fd)

            return synced

        for name in ("fsync", "fdatasync"):
            if hasattr(os, name):
                monkeypatch.setattr(os, name, watch(name, getattr(os, name)))
        await store.mkdir("/d")
        pending = [asyncio.ensure_future(store.create(f"/d/f{i}", 1)) for i in range(20)]
        pending.append(asyncio.ensure_future(store.mkdir("/e")))
        await asyncio.sleep(0)  # one pass of the loop: each mutation ran up to its first wait
        assert not any(task.done() for task in pending), "a mutation finished without waiting for its commit"
        await asyncio.gather(*pending)
        assert not on_loop, f"{', '.join(sorted(set(on_loop)))} ran on the event loop's thread"
