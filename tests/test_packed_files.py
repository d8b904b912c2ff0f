"""Packed small files (docs/consistency.md, "Packed small files"): small whole-file uploads are
records in shared pack chunks, read back byte for byte; deleted ones' space comes back through
compaction; snapshots keep them; crashes lose nothing acknowledged; a corrupt pack is repaired."""

from __future__ import annotations

import asyncio
import random
import tracemalloc
from pathlib import Path

import pytest

from hercules_core import messages as m
from hercules_core.client import connect
from hercules_core.errors import HerculesError, InvalidArgument
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST, Http, chunk_files, replica_contents, wait_until

LANES = 4  # more than the default one open pack: appends spread over them, and compaction sees several
PACKED = {**FAST, "HERCULES_PACK_THRESHOLD": "65536", "HERCULES_TRASH_GRACE": "1", "HERCULES_PACK_LANES": str(LANES)}


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    with LocalCluster(tmp_path_factory.mktemp("packed"), settings=PACKED) as c:
        yield c


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


async def _extent(client, path: str) -> m.PackedExtent | None:  # noqa: ANN001
    located = await client._master(m.Locate(path, 0, 1))
    return located.extent


def test_small_files_written_concurrently_read_back_through_rest_and_client(packed: LocalCluster) -> None:
    files = {f"/many/f{n:03d}.bin": random.randbytes(random.choice([1, 100, 4096, 30_000, 65536]))
             for n in range(60)}

    async def write_and_read() -> None:
        async with await connect(packed.master_addr) as client:
            await asyncio.gather(*(client.upload(p, d) for p, d in list(files.items())[:40]))
            for path in list(files)[:40]:
                assert await _extent(client, path) is not None, f"{path} was not packed"
                info = await client.stat(path)
                assert (info.size, info.chunk_count) == (len(files[path]), 0)
            reads = await asyncio.gather(*(client.read(p) for p in files if p < "/many/f040"))
            assert reads == [files[p] for p in files if p < "/many/f040"]

    run(write_and_read())
    h = Http(packed.gateway_url)
    for path, data in list(files.items())[40:]:
        assert h.json("PUT", f"/api/v1/files{path}", data)[0] == 201
    for path, data in files.items():
        status, _, body = h.request("GET", f"/api/v1/files{path}")
        assert (status, body) == (200, data), path
    big = next(p for p, d in files.items() if len(d) == 65536 or len(d) == 30_000)
    status, _, body = h.request("GET", f"/api/v1/files{big}", headers={"Range": "bytes=10-2009"})
    assert (status, body) == (206, files[big][10:2010])
    h.close()


def test_an_overwrite_is_a_new_record_and_a_range_write_or_append_unpacks(packed: LocalCluster) -> None:
    async def go() -> None:
        async with await connect(packed.master_addr) as client:
            await client.upload("/edit/a", b"first version")
            await client.upload("/edit/a", b"second", overwrite=True)
            assert await client.read("/edit/a") == b"second"
            assert await _extent(client, "/edit/a") is not None
            await client.write("/edit/a", 3, b"XYZ!")
            assert await client.read("/edit/a") == b"secXYZ!"
            assert await _extent(client, "/edit/a") is None
            assert (await client.stat("/edit/a")).chunk_count == 1
            await client.upload("/edit/b", b"record:")
            await client.append("/edit/b", b"more")
            assert (await client.read("/edit/b")).startswith(b"record:")
            assert await _extent(client, "/edit/b") is None

    run(go())


def _pack_bytes(cluster: LocalCluster, handle: int) -> int:
    """Bytes on disk of every replica of pack ``handle`` (data files and their sidecars)."""
    total = 0
    for data in chunk_files(cluster, handle):
        total += sum(p.stat().st_blocks * 512 for p in data.parent.glob(f"{handle:016x}.*") if p.is_file())
    return total


def test_deleted_files_space_comes_back_through_compaction_and_a_snapshot_keeps_its_bytes(tmp_path: Path) -> None:
    kept = {f"/c/keep{n}": random.randbytes(30_000) for n in range(4)}
    gone = {f"/c/gone{n}": random.randbytes(30_000) for n in range(20)}
    snap = {f"/s/f{n}": random.randbytes(5_000) for n in range(6)}
    with LocalCluster(tmp_path, settings=PACKED) as c:
        async def go() -> None:
            async with await connect(c.master_addr) as client:
                for path, data in {**kept, **gone, **snap}.items():
                    await client.upload(path, data)
                olds = {(await _extent(client, p)).handle for p in [*kept, *gone, *snap]}
                assert 1 < len(olds) <= LANES  # appends spread over the open packs
                before = sum(_pack_bytes(c, old) for old in olds)
                assert before >= 3 * 30_000 * 24, before
                await client.snapshot("/s", "/s-copy")
                for n, path in enumerate(snap):
                    if n % 2:
                        await client.delete(path)
                    else:
                        await client.upload(path, b"new bytes", overwrite=True)
                for path in gone:
                    await client.delete(path)
                await client.purge_trash()
                done = await client.compact_packs()
                # the kept files, the snapshot's six (the originals' records) and the three overwrites
                assert done.packs == len(olds) and done.records_moved == len(kept) + len(snap) + 3, done
                assert done.bytes_freed >= 30_000 * 20, done
                wait_until(lambda: not any(chunk_files(c, old) for old in olds), 30, f"packs {olds}' replicas deleted")
                live = [*kept, *(p.replace("/s/", "/s-copy/") for p in snap), *list(snap)[::2]]
                news = {(await _extent(client, p)).handle for p in live}  # every pack still holding a file
                assert not news & olds
                after = sum(_pack_bytes(c, new) for new in news)
                assert after < before / 2, (after, before)
                for path, data in kept.items():
                    assert await client.read(path) == data
                for path, data in snap.items():
                    assert await client.read(path.replace("/s/", "/s-copy/")) == data
                assert await client.read("/s/f0") == b"new bytes"

        run(go())


def test_compaction_never_moves_a_record_into_a_pack_it_freed(tmp_path: Path) -> None:
    """Nemesis seed 3141592653 (packing on): the master's appender kept the location of a pack the
    compaction before had filled; this round freed that pack whole, then appended the next pack's
    live records into its chunk, and the files naming them read as zeros."""
    files = {f"/q/f{n:02d}": random.randbytes(20_000) for n in range(24)}
    with LocalCluster(tmp_path, settings=PACKED) as c:
        async def go() -> None:
            async with await connect(c.master_addr) as client:
                for path, data in files.items():
                    await client.upload(path, data)
                for path in list(files)[::3]:  # two of each lane's six: every pack has garbage
                    await client.delete(path)
                    del files[path]
                await client.purge_trash()
                assert (await client.compact_packs(1e-9)).records_moved == len(files)
                by_pack: dict[int, list[str]] = {}
                for path in files:
                    by_pack.setdefault((await _extent(client, path)).handle, []).append(path)
                first = min(by_pack)
                # the lowest pack is compacted (freed whole) first, then the others' records move
                for path in [*by_pack[first], *(paths[0] for handle, paths in by_pack.items() if handle != first)]:
                    await client.delete(path)
                    del files[path]
                await client.purge_trash()
                await client.compact_packs(1e-9)
                for path, data in files.items():
                    extent = await _extent(client, path)
                    assert extent is not None and extent.handle != first, (path, extent)
                    assert await client.read(path) == data, path

        run(go())


def test_a_corrupt_replica_of_a_pack_is_read_around_reported_and_repaired(tmp_path: Path) -> None:
    data = random.randbytes(20_000)
    with LocalCluster(tmp_path, settings=PACKED) as c:
        async def go() -> None:
            async with await connect(c.master_addr) as client:
                await client.upload("/rot.bin", data)
                extent = await _extent(client, "/rot.bin")
                loc = await client.chunk_servers(extent.handle)
                bad = loc.replicas[0]
                c.corrupt(extent.handle, bad, block=extent.offset // (64 << 10))
                for good in loc.replicas[1:]:  # the bad replica is read first
                    client.locations.avoid(good)
                assert await client.read("/rot.bin") == data  # from a healthy replica

                async def healed() -> bool:
                    try:
                        found = await replica_contents(client, extent.handle)
                    except HerculesError:
                        return False
                    return len(found) == 3 and len(set(found.values())) == 1

                for _ in range(150):
                    if await healed():
                        break
                    await asyncio.sleep(0.2)
                else:
                    raise AssertionError(f"pack {extent.handle} was not repaired")
            async with await connect(c.master_addr) as fresh:
                assert await fresh.read("/rot.bin") == data

        run(go())


def test_kill_9_of_a_chunkserver_and_of_the_master_mid_writes_loses_nothing_acknowledged(tmp_path: Path) -> None:
    acknowledged: dict[str, bytes] = {}
    with LocalCluster(tmp_path, settings=PACKED) as c:
        async def writer(n: int, client, stop: asyncio.Event) -> None:  # noqa: ANN001
            i = 0
            while not stop.is_set():
                path, data = f"/k/w{n}/f{i}", random.randbytes(random.randint(1, 8000))
                try:
                    await client.upload(path, data, overwrite=True)
                except HerculesError:
                    continue  # not acknowledged: nothing is promised
                acknowledged[path] = data
                i += 1

        async def go() -> None:
            async with await connect(c.master_addr) as client:
                stop = asyncio.Event()
                tasks = [asyncio.create_task(writer(n, client, stop)) for n in range(4)]

                async def written(count: int) -> None:
                    while len(acknowledged) < count:
                        await asyncio.sleep(0.05)

                await written(20)
                await asyncio.to_thread(c.kill, "chunk2")
                await written(len(acknowledged) + 20)
                await asyncio.to_thread(c.restart, "chunk2")
                await asyncio.to_thread(c.kill, "master")
                await asyncio.to_thread(c.restart, "master")
                await written(len(acknowledged) + 20)
                stop.set()
                await asyncio.gather(*tasks)
            async with await connect(c.master_addr) as fresh:
                for path, data in acknowledged.items():
                    assert await fresh.read(path) == data, path

        run(go())


def test_compose_refuses_a_packed_source_so_the_caller_copies(packed: LocalCluster) -> None:
    async def go() -> None:
        async with await connect(packed.master_addr) as client:
            await client.upload("/cmp/part", b"a small part")
            with pytest.raises(InvalidArgument, match="packed"):
                await client.compose("/cmp/whole", ["/cmp/part"], remove_sources=False)
            assert await client.read("/cmp/part") == b"a small part"

    run(go())


def test_a_version_2_database_gains_the_pack_tables_and_packed_entries_survive_a_reopen(tmp_path: Path) -> None:
    import sqlite3

    from hercules_core.plugins.manager import make_plugin_manager
    from hercules_core.plugins.types import MetadataContext

    def store():  # noqa: ANN202
        return make_plugin_manager().metadata_store("sqlite").open(MetadataContext(tmp_path, {}))

    async def first() -> None:
        async with store() as s:
            await s.mkdir("/d")

    async def second() -> None:
        async with store() as s:
            file_id, ref = await s.open_pack(3)
            await s.set_version(ref.handle, 1)
            info, _ = await s.publish_packed("/d/f", m.PackedExtent(ref.handle, 0, 5, 123), 3, False)
            assert (info.size, info.chunk_count) == (5, 0)
        async with store() as s:
            extent, pack = await s.extent((await s.stat("/d/f")).file_id)
            assert (extent, pack.handle, pack.version) == (m.PackedExtent(ref.handle, 0, 5, 123), ref.handle, 1)
            assert await s.open_pack(3) == (file_id, pack)  # still the open one after a restart
            assert await s.extent((await s.stat("/d")).file_id) is None

    run(first())
    db = sqlite3.connect(tmp_path / "metadata.sqlite3")
    db.executescript("DROP TABLE packs; DROP TABLE packed; PRAGMA user_version=2;")
    db.close()
    run(second())


def test_the_master_allocates_no_chunk_into_a_packed_file(packed: LocalCluster) -> None:
    async def go() -> None:
        async with await connect(packed.master_addr) as client:
            info = await client.upload("/guard/f", b"packed bytes")
            for msg in (m.GetChunk(info.file_id, 0, for_write=True), m.LastChunk(info.file_id)):
                with pytest.raises(InvalidArgument, match="packed"):
                    await client._master(msg)
            assert await client.read("/guard/f") == b"packed bytes"

    run(go())


def test_an_upload_refused_by_the_namespace_says_the_same_packed_or_not(packed: LocalCluster) -> None:
    """A small PUT onto a directory, over a file without overwrite, or below a file fails the way a
    large one does: the same status, code and message, whether or not it was to be a record."""
    h = Http(packed.gateway_url)
    try:
        assert h.json("POST", "/api/v1/mkdir", {"path": "/refused/dir"})[0] == 201
        h.put_files({"/refused/file": b"x"})
        for target in ("/refused/dir", "/refused/file", "/refused/file/below"):
            answers = [h.json("PUT", f"/api/v1/files{target}", b"s" * size) for size in (100, 65536 + 1)]
            assert answers[0][0] == 409 and answers[0] == answers[1], (target, answers)
    finally:
        h.close()


def test_packing_is_on_by_default_up_to_1_mib_or_a_quarter_chunk(cluster: LocalCluster) -> None:
    """A cluster given no pack setting (``make run``, docker-compose) packs whole uploads of up to
    1 MiB, or a quarter of its chunk size if that is less (this cluster's 1 MiB chunks: 256 KiB);
    one byte more gets a chunk of its own."""
    h = Http(cluster.gateway_url)
    try:
        h.put_files({"/default/small": b"s" * (256 << 10), "/default/large": b"l" * ((256 << 10) + 1)})
    finally:
        h.close()

    async def go() -> None:
        async with await connect(cluster.master_addr) as client:
            assert (await client._master(m.Ping())).info["pack_threshold"] == 1 << 20
            assert client.pack_threshold == 256 << 10
            assert await _extent(client, "/default/small") is not None
            assert (await client.stat("/default/small")).chunk_count == 0
            assert await _extent(client, "/default/large") is None
            assert (await client.stat("/default/large")).chunk_count == 1

    run(go())


def test_a_small_streamed_upload_is_gathered_in_a_buffer_of_its_own_size(cluster: LocalCluster) -> None:
    """A 4 KiB upload from a stream (as the gateway gives a request body), with a pack threshold
    of 256 KiB, is gathered into 4 KiB, not into a buffer the threshold's size: that was a
    zeroed threshold-sized allocation, and a heap grown and trimmed back, on every small PUT."""
    data = random.randbytes(4096)

    async def parts():  # noqa: ANN202
        for at in range(0, len(data), 1000):
            yield data[at:at + 1000]

    async def go() -> int:
        async with await connect(cluster.master_addr) as client:
            assert client.pack_threshold == 256 << 10
            await client.upload("/gathered/warm", data)
            tracemalloc.start()
            try:
                await client.upload("/gathered/small", parts(), size=len(data))
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert await _extent(client, "/gathered/small") is not None
            assert await client.read("/gathered/small") == data
            return peak

    peak = run(go())
    assert peak < 128 << 10, f"a 4 KiB upload peaked at {peak} bytes allocated"


def test_a_packed_record_is_read_into_one_buffer_not_copied_again(cluster: LocalCluster) -> None:
    """A download of a 256 KiB packed file hands on the buffer its answer arrived in: peak
    allocation about the record once, not twice."""
    data = random.randbytes(256 << 10)

    async def go() -> int:
        async with await connect(cluster.master_addr) as client:
            await client.upload("/once/r", data)
            assert await _extent(client, "/once/r") is not None
            await client.read("/once/r")  # the connection and its buffers are there before counting
            tracemalloc.start()
            try:
                got = [bytes(piece[:16]) + bytes(piece[-16:]) async for piece in client.download("/once/r")]
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert got == [data[:16] + data[-16:]]
            return peak

    peak = run(go())
    assert peak < len(data) * 3 // 2, f"a {len(data)}-byte record peaked at {peak} bytes allocated"
