"""The SQLite store's directory path cache never answers from a stale directory id: the same
random namespace operations (renames and deletes of directories among them, some failing, many
sharing a commit) give the same answers with the cache as without it."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from hercules_core.builtin.metadata_sqlite.pathcache import PathCache, ReaderView, WriterView
from hercules_core.builtin.metadata_sqlite.store import SqliteMetadataStore
from hercules_core.messages import FileInfo

NAMES = ["a", "b", "c"]


def some_path(rng: random.Random) -> str:
    return "/" + "/".join(rng.choice(NAMES) for _ in range(rng.randint(1, 3)))


def outcome(result: Any) -> Any:
    """What must match between the stores (times differ, ids and layout must not)."""
    if isinstance(result, BaseException):
        return type(result).__name__
    if isinstance(result, FileInfo):
        return (result.path, result.file_id, result.is_dir, result.size, result.chunk_count)
    if isinstance(result, tuple) and result and isinstance(result[0], list):  # a listing page
        return [outcome(e) for e in result[0]]
    if isinstance(result, tuple):
        return tuple(outcome(r) for r in result)
    return getattr(result, "handles", result)


def mutation(store: SqliteMetadataStore, rng: random.Random) -> Any:
    kind = rng.choice(["mkdir", "create", "create", "rename", "rename", "delete", "undelete", "snapshot"])
    p, q = some_path(rng), some_path(rng)
    if kind == "mkdir":
        return store.mkdir(p)
    if kind == "create":
        return store.create(p, 1)
    if kind == "rename":
        return store.rename(p, q, rng.random() < 0.3)
    if kind == "delete":
        return store.delete(p, True)
    if kind == "undelete":
        return store.undelete(p)
    return store.snapshot(p, q)


async def lookups(store: SqliteMetadataStore, paths: list[str]) -> list[Any]:
    found = []
    for p in paths:
        for call in (store.stat(p), store.list(p, False, 100, "")):
            try:
                found.append(outcome(await call))
            except Exception as exc:  # noqa: BLE001 - the error is the answer compared
                found.append(outcome(exc))
    return found


async def test_cached_and_uncached_stores_answer_alike(tmp_path: Path) -> None:
    stores = [SqliteMetadataStore(tmp_path / "cached" / "m.sqlite3"),
              SqliteMetadataStore(tmp_path / "plain" / "m.sqlite3", path_cache=0)]
    for store in stores:
        await store.open()
    try:
        every = sorted({"/" + "/".join(p) for p in
                        [(x,) for x in NAMES] + [(x, y) for x in NAMES for y in NAMES]
                        + [(x, y, z) for x in NAMES for y in NAMES for z in NAMES]})
        for round_ in range(60):
            seed = random.Random(round_).random()
            answers = []
            for store in stores:
                rng = random.Random(seed)
                # many at once: they share commits, and the failing ones roll back only their savepoint
                results = await asyncio.gather(*(mutation(store, rng) for _ in range(12)), return_exceptions=True)
                answers.append(([outcome(r) for r in results], await lookups(store, every)))
            assert answers[0] == answers[1], f"round {round_}"
        assert stores[0]._paths.ids, "the cached store should have remembered directories"
    finally:
        for store in stores:
            await store.close()


async def test_a_renamed_or_deleted_directory_is_not_found_at_its_old_path(tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "m.sqlite3")
    await store.open()
    try:
        await store.mkdir("/x/y")
        made = await store.create("/x/y/f", 1)
        assert (await store.stat("/x/y/f")).file_id == made.file_id  # learns /x and /x/y
        await store.rename("/x", "/z", False)
        assert [type(e).__name__ for e in await asyncio.gather(store.stat("/x/y/f"), return_exceptions=True)] \
            == ["NotFound"]
        assert (await store.stat("/z/y/f")).file_id == made.file_id
        await store.mkdir("/x/y")  # a new directory where the old one was: another id
        other = await store.create("/x/y/f", 1)
        assert (await store.stat("/x/y/f")).file_id == other.file_id != made.file_id
        await store.delete("/z", True)
        assert isinstance((await asyncio.gather(store.stat("/z/y/f"), return_exceptions=True))[0], Exception)
        assert (await store.undelete("/z")).is_dir
        assert (await store.stat("/z/y/f")).file_id == made.file_id
    finally:
        await store.close()


def test_nothing_is_learnt_while_a_directory_move_is_uncommitted() -> None:
    cache = PathCache()
    writer, reader = WriterView(cache), ReaderView(cache)
    reader.start(bypass=False)
    reader.learn("/a", 5)
    assert cache.ids == {"/a": 5}
    started = reader.start(bypass=False)
    writer.invalidate()  # the writer moves /a in its open transaction
    assert not reader.valid(started), "a lookup that overlapped the move must run again"
    reader.start(bypass=False)
    reader.learn("/a", 5)  # the committed layout is about to change: not remembered
    writer.learn("/b", 5)
    assert cache.ids == {}
    writer.committed()
    assert cache.ids == {"/b": 5}
    writer.learn("/c", 6)
    writer.op_failed()  # its savepoint rolled back
    writer.invalidate()
    writer.rolled_back()
    assert cache.ids == {} and not cache.held
