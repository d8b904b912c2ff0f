"""What the metadata-store contract tests stand on: what a store's test class provides, the
fixtures and the helpers every section uses (``metadata_contract`` holds the sections)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
import pytest_asyncio

from hercules_core.errors import AlreadyExists, NotFound
from hercules_core.master.store import MetadataStore
from hercules_core.plugins.types import MetadataContext, MetadataStoreSpec

# Every method of the protocol, as the master calls them.
METHODS = tuple(name for name in vars(MetadataStore) if not name.startswith("_"))


async def creates_some_failing(store: MetadataStore, count: int = 200) -> set[str]:
    """``count`` concurrent creates and mkdirs under ``/d``, one in five failing (half
    ``AlreadyExists``, half ``NotFound``); return the paths that were made."""
    await store.mkdir("/d")
    await store.create("/d/taken", 1)

    async def one(i: int) -> str:
        if i % 10 == 3:
            await store.create("/d/taken", 1)  # AlreadyExists
        elif i % 10 == 7:
            await store.create(f"/missing/f{i}", 1)  # NotFound
        elif i % 10 == 9:
            await store.mkdir(f"/d/sub{i}")
            return f"/d/sub{i}"
        else:
            await store.create(f"/d/f{i:03d}", 1)
        return f"/d/f{i:03d}"

    results = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    made = {r for r in results if isinstance(r, str)}
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == count // 5, failed[:3]
    assert all(isinstance(e, (AlreadyExists, NotFound)) for e in failed)
    assert len(made) == count - count // 5
    return made


class ContractBase:
    """What each section of the contract stands on; a store's tests subclass ``MetadataStoreContract``."""

    kill_after = 300  # acknowledged creates before the writer is killed

    # -- what a subclass provides ---------------------------------------------------

    def store_spec(self) -> MetadataStoreSpec:
        """Your descriptor, e.g. ``make_plugin_manager().metadata_store("mine")``."""
        raise NotImplementedError("subclass MetadataStoreContract and implement store_spec()")

    def context(self, root_dir: Path) -> MetadataContext:
        """What ``open`` gets; by default ``root_dir`` and your settings' defaults."""
        return MetadataContext(root_dir, {s.name: s.default for s in self.store_spec().settings})

    def corrupt(self, root_dir: Path) -> Path:
        """Damage the closed store's durable files so they cannot be read as they were
        (e.g. overwrite a header); return the file the error on opening must name."""
        raise NotImplementedError("subclass MetadataStoreContract and implement corrupt()")

    def remove(self, root_dir: Path) -> Path:
        """Delete the closed store's main file, leaving whatever else it keeps beside it;
        return the path deleted, which the error on opening must name."""
        raise NotImplementedError("subclass MetadataStoreContract and implement remove()")

    # -- helpers ----------------------------------------------------------------------

    def open_store(self, root_dir: Path) -> AbstractAsyncContextManager[MetadataStore]:
        return self.store_spec().open(self.context(root_dir))

    @pytest.fixture
    def root_dir(self, tmp_path: Path) -> Path:
        return tmp_path / "meta"

    @pytest_asyncio.fixture
    async def store(self, root_dir: Path) -> AsyncIterator[MetadataStore]:
        async with self.open_store(root_dir) as store:
            yield store

    @staticmethod
    async def names(store: MetadataStore, path: str) -> set[str]:
        found: set[str] = set()
        cursor = ""
        while True:
            entries, cursor = await store.list(path, False, 0, cursor)
            found.update(e.path for e in entries)
            if not cursor:
                return found

    @staticmethod
    async def file_with_chunks(store: MetadataStore, path: str, chunks: int = 2) -> tuple[int, list[int]]:
        info = await store.create(path, 3)
        handles = [(await store.add_chunk(info.file_id, i)).handle for i in range(chunks)]
        for handle in handles:
            await store.set_version(handle, 1)
        return info.file_id, handles

    async def test_store_has_every_method_of_the_protocol(self, store: MetadataStore) -> None:
        missing = [name for name in METHODS if not callable(getattr(store, name, None))]
        assert not missing, f"the store lacks {', '.join(missing)}"
