"""Sections 4 and 5 of the metadata-store contract: handles and file ids are never reused (also
through a backup and restore), and request ids replay a first result instead of applying again."""

from __future__ import annotations

from pathlib import Path

import pytest

from hercules_core.errors import AlreadyExists, HerculesError, NotFound
from hercules_core.master.store import FreedChunks, MetadataStore
from hercules_core.testing.metadata_contract_base import ContractBase


class IdsContract(ContractBase):
    """Never reused, replayed once: what a master restart and a client's retry rely on."""

    # -- 4. handles and file ids are never reused --------------------------------------------------

    async def test_handles_and_file_ids_are_never_reused_even_after_a_restart(self, root_dir: Path) -> None:
        async with self.open_store(root_dir) as store:
            ids, handles = await self._allocate(store, "/a", 10)
            await store.delete("/a", True)
            freed = await store.purge_trash(float("inf"))
            assert set(handles[:-1]) <= set(freed.handles)  # all but the clone no file references
            more_ids, more_handles = await self._allocate(store, "/b", 10)
            assert not set(more_ids) & set(ids) and not set(more_handles) & set(handles)
        async with self.open_store(root_dir) as store:
            new_ids, new_handles = await self._allocate(store, "/c", 10)
        assert not set(new_ids) & set(ids + more_ids)
        assert not set(new_handles) & set(handles + more_handles)

    @classmethod
    async def _allocate(cls, store: MetadataStore, top: str, files: int) -> tuple[list[int], list[int]]:
        """``files`` files with two chunks each and one clone: their file ids and handles."""
        await store.mkdir(top)
        ids: list[int] = []
        handles: list[int] = []
        for i in range(files):
            file_id, made = await cls.file_with_chunks(store, f"{top}/f{i}")
            ids.append(file_id)
            handles += made
        handles.append(await store.new_handle(1))
        return ids, handles

    async def test_backup_and_restore_keep_the_namespace_and_never_reuse_ids(self, tmp_path: Path) -> None:
        from hercules_core import backup

        spec = self.store_spec()
        if spec.backup is None or spec.restore is None:
            pytest.skip(f"metadata store {spec.name!r} provides no backup and restore")
        root, fresh, copy = tmp_path / "running", tmp_path / "restored", tmp_path / "copy"
        async with self.open_store(root) as store:
            before_ids, before_handles = await self._allocate(store, "/before", 3)
            assert await backup.backup(spec, self.context(root), copy) > 0  # online, while open
            after_ids, after_handles = await self._allocate(store, "/after", 3)
            with pytest.raises(HerculesError):  # never into a running master's directory
                await backup.restore(spec, self.context(root), copy, True)
        await backup.restore(spec, self.context(fresh), copy, False)
        with pytest.raises(HerculesError):  # existing metadata is replaced only when forced
            await backup.restore(spec, self.context(fresh), copy, False)
        async with self.open_store(fresh) as store:
            assert await self.names(store, "/") == {"/before"}
            new_ids, new_handles = await self._allocate(store, "/new", 3)
        assert not set(new_ids) & set(before_ids + after_ids)
        assert not set(new_handles) & set(before_handles + after_handles)

    # -- 5. request ids ---------------------------------------------------------------------------

    async def test_request_ids_replay_the_first_result_without_applying_again(self, root_dir: Path) -> None:
        async with self.open_store(root_dir) as store:
            first = await store.create("/a", 2, request_id="r-create")
            assert await store.create("/a", 2, request_id="r-create") == first
            with pytest.raises(AlreadyExists):
                await store.create("/a", 2, request_id="r-other")
            with pytest.raises(AlreadyExists):
                await store.create("/a", 2)

            assert await store.rename("/a", "/b", False, request_id="r-rename") == FreedChunks([])
            await store.create("/a", 1)  # someone reuses the old name
            assert await store.rename("/a", "/b", False, request_id="r-rename") == FreedChunks([])
            assert await self.names(store, "/") == {"/a", "/b"}, "a replayed rename must not apply again"

            victim, handles = await self.file_with_chunks(store, "/victim", 1)
            freed = await store.rename("/b", "/victim", True, request_id="r-overwrite")
            assert freed == FreedChunks(handles)
            assert await store.rename("/b", "/victim", True, request_id="r-overwrite") == FreedChunks([])

            await store.delete("/victim", False, request_id="r-delete")
            assert await store.delete("/victim", False, request_id="r-delete") == FreedChunks([])
            back = await store.undelete("/victim", request_id="r-undelete")
            assert await store.undelete("/victim", request_id="r-undelete") == back
            snap = await store.snapshot("/victim", "/snap", request_id="r-snap")
            assert await store.snapshot("/victim", "/snap", request_id="r-snap") == snap

            await store.mkdir("/up")
            await store.create("/up/u", 3, request_id="r-begin", first_chunk=True)
            published = await store.publish("/up/u", "/p/q", 10, False, request_id="r-publish")
            assert await store.publish("/up/u", "/p/q", 10, False, request_id="r-publish") == \
                (published[0], FreedChunks([]))
        async with self.open_store(root_dir) as store:  # remembered durably, with the mutation
            assert await store.create("/a", 2, request_id="r-create") == first
            assert await store.snapshot("/victim", "/snap", request_id="r-snap") == snap
            assert await store.rename("/a", "/b", False, request_id="r-rename") == FreedChunks([])
            assert await self.names(store, "/") == {"/a", "/victim", "/snap", "/up", "/p"}

    async def test_a_failed_request_is_not_remembered(self, store: MetadataStore) -> None:
        with pytest.raises(NotFound):
            await store.create("/dir/f", 1, request_id="r-1")
        await store.mkdir("/dir")
        assert (await store.create("/dir/f", 1, request_id="r-1")).path == "/dir/f"  # the retry runs
        with pytest.raises(NotFound):
            await store.undelete("/dir/f", request_id="r-2")
        await store.delete("/dir/f", False)
        assert (await store.undelete("/dir/f", request_id="r-2")).path == "/dir/f"
