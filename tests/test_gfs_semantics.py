"""GFS semantics under concurrency and failure, with real processes and real fault injection."""

from __future__ import annotations

import asyncio
import random
import signal
import struct
import time
from pathlib import Path

import crc32c

from hercules_core import messages as m
from hercules_core.client import connect
from hercules_core.errors import HerculesError
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import (
    GFS,
    MiB,
    Http,
    chunk_files,
    disk_usage,
    file_handles,
    flip_byte,
    replica_contents,
    sha256,
    wait_until,
)

MAGIC = b"REC!"
HEADER = struct.Struct("!4sII")  # magic, payload length, crc32c of payload


def record(payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, len(payload), crc32c.crc32c(payload)) + payload


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


async def all_replicas_identical(master: str, path: str) -> int:
    client = await connect(master)
    try:
        handles = await file_handles(client, path)
        for handle in handles:
            contents = await replica_contents(client, handle)
            assert len(contents) == 3, (handle, list(contents))
            assert len(set(contents.values())) == 1, f"replicas of chunk {handle} differ"
        return len(handles)
    finally:
        await client.close()


def test_concurrent_overlapping_writers_leave_replicas_identical(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, settings=GFS) as c:
        async def writer(n: int, rng: random.Random) -> None:
            client = await connect(c.master_addr)
            try:
                for _ in range(25):
                    offset = rng.randrange(0, 3 * MiB)
                    await client.write("/shared", offset, bytes([n]) * rng.randrange(1, 300_000))
            finally:
                await client.close()

        async def main() -> int:
            client = await connect(c.master_addr)
            await client.create("/shared")
            await client.write("/shared", 0, bytes(3 * MiB))
            await client.close()
            await asyncio.gather(*(writer(n, random.Random(n)) for n in range(1, 9)))
            return await all_replicas_identical(c.master_addr, "/shared")

        assert run(main()) >= 3


def test_concurrent_record_appends_are_atomic_and_at_least_once(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, settings=GFS) as c:
        found: dict[int, bytes] = {}

        async def appender(n: int) -> None:
            rng = random.Random(n)
            client = await connect(c.master_addr)
            try:
                for i in range(300):
                    payload = f"{n}:{i}:".encode() + rng.randbytes(rng.randrange(16, 6000))
                    data = record(payload)
                    found[await client.append("/records", data)] = data
            finally:
                await client.close()

        async def main() -> bytes:
            client = await connect(c.master_addr)
            await client.create("/records")
            await asyncio.gather(*(appender(n) for n in range(8)))
            content = await client.read("/records")
            await client.close()
            return content

        content = run(main())
        assert len(found) == 2400
        for offset, data in found.items():
            assert content[offset:offset + len(data)] == data
        # Scan the whole file: records and chunk-end padding only, never a torn record.
        pos, seen, chunk = 0, 0, MiB
        while pos < len(content):
            if content[pos:pos + 4] == MAGIC:
                magic, size, crc = HEADER.unpack_from(content, pos)
                payload = content[pos + HEADER.size:pos + HEADER.size + size]
                assert len(payload) == size and crc32c.crc32c(payload) == crc, f"torn record at {pos}"
                assert (pos % chunk) + HEADER.size + size <= chunk, f"record at {pos} straddles chunks"
                pos += HEADER.size + size
                seen += 1
            else:
                boundary = (pos // chunk + 1) * chunk
                assert content[pos:boundary].strip(b"\0") == b"", f"garbage at {pos}"
                pos = boundary
        assert seen >= 2400
        assert run(all_replicas_identical(c.master_addr, "/records")) >= 6


def test_stale_replica_of_a_paused_chunkserver_is_never_served_and_is_replaced(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, settings=GFS) as c:
        h = Http(c.gateway_url)
        old, new = random.randbytes(2 * MiB), random.randbytes(2 * MiB)
        assert h.json("PUT", "/api/v1/files/data.bin", old)[0] == 201

        async def locations() -> list[m.ChunkLocation]:
            client = await connect(c.master_addr)
            try:
                return [await client.chunk_servers(hd) for hd in await file_handles(client, "/data.bin")]
            finally:
                await client.close()

        before = run(locations())
        paused = c.chunk_addr(2)
        assert all(paused in loc.replicas for loc in before)
        c.procs["chunk3"].signal(signal.SIGSTOP)
        try:
            status, body = h.json("POST", "/api/v1/write?path=/data.bin&offset=0", new)
            assert status == 200, body
        finally:
            c.procs["chunk3"].signal(signal.SIGCONT)

        async def read_stale() -> list[str]:
            client = await connect(c.master_addr)
            outcomes = []
            try:
                for loc in before:  # a client that cached the old locations and versions
                    try:
                        _, data = await client.pool.call(paused, m.ReadChunk(loc.handle, loc.version, 0, MiB))
                        outcomes.append("served")
                        assert bytes(data) != old[:MiB] and bytes(data) != old[MiB:], "stale data served"
                    except HerculesError as exc:
                        outcomes.append(exc.code)
            finally:
                await client.close()
            return outcomes

        assert "served" not in run(read_stale())
        assert sha256(h.request("GET", "/api/v1/files/data.bin")[2]) == sha256(new)

        def healed() -> bool:
            locs = run(locations())
            return all(len(loc.replicas) == 3 and loc.version > b.version for loc, b in zip(locs, before))

        wait_until(healed, 30, "stale replicas to be deleted and re-replicated")
        assert run(all_replicas_identical(c.master_addr, "/data.bin")) == 2
        h.close()


def test_killed_chunkserver_is_re_replicated_within_bounded_time(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, chunkservers=4, settings=GFS) as c:
        h = Http(c.gateway_url)
        files = h.put_files({f"/f{n}": random.randbytes(3 * MiB + n) for n in range(4)})
        counts = h.json("GET", "/api/v1/cluster")[1]["chunkservers"]
        victim = max(range(4), key=lambda i: next(s["chunk_count"] for s in counts if s["address"] == c.chunk_addr(i)))
        killed_at = time.monotonic()
        c.procs[f"chunk{victim + 1}"].signal(signal.SIGKILL)

        async def replica_sets() -> list[list[str]]:
            client = await connect(c.master_addr)
            try:
                return [(await client.chunk_servers(hd)).replicas
                        for path in files for hd in await file_handles(client, path)]
            finally:
                await client.close()

        def recovered() -> bool:
            return all(len(r) == 3 and c.chunk_addr(victim) not in r for r in run(replica_sets()))

        wait_until(recovered, 60, "every chunk back at 3 live replicas")
        took = time.monotonic() - killed_at
        print(f"\nall chunks back at 3 live replicas {took:.1f}s after SIGKILL")
        status, info = h.json("GET", "/api/v1/cluster")
        assert info["under_replicated"] == 0
        dead = next(s for s in info["chunkservers"] if s["address"] == c.chunk_addr(victim))
        assert dead["state"] == "dead" and dead["phi"] >= 8
        for path, data in files.items():
            assert sha256(h.request("GET", f"/api/v1/files{path}")[2]) == sha256(data)
        h.close()


def test_corrupt_replicas_are_detected_by_reads_and_by_the_scrubber_and_replaced(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, settings=GFS) as c:
        h = Http(c.gateway_url)
        read_data, idle_data = random.randbytes(MiB), random.randbytes(MiB)
        assert h.json("PUT", "/api/v1/files/read.bin", read_data)[0] == 201
        assert h.json("PUT", "/api/v1/files/idle.bin", idle_data)[0] == 201
        read_handle = h.json("GET", "/api/v1/chunk/handle?path=/read.bin&index=0")[1]["handle"]
        idle_handle = h.json("GET", "/api/v1/chunk/handle?path=/idle.bin&index=0")[1]["handle"]
        corrupted = {}
        for handle in (read_handle, idle_handle):
            files = sorted(chunk_files(c, handle))
            for f in files:  # flip one byte on every replica's disk for the read test, one for scrub
                flip_byte(f, 70_000)
                corrupted.setdefault(handle, []).append(f)
                if handle == idle_handle or len(corrupted[handle]) == 2:
                    break
        # Two of three replicas of read.bin are bad: reads still return the right bytes.
        for _ in range(3):
            status, _, got = h.request("GET", "/api/v1/files/read.bin")
            assert status == 200 and got == read_data

        def repaired(handle: int, data: bytes) -> bool:
            async def check() -> bool:
                client = await connect(c.master_addr)
                try:
                    contents = await replica_contents(client, handle)
                except HerculesError:
                    return False
                finally:
                    await client.close()
                return len(contents) == 3 and set(contents.values()) == {data}

            return run(check())

        wait_until(lambda: repaired(read_handle, read_data), 30, "read-detected corruption repaired")
        wait_until(lambda: repaired(idle_handle, idle_data), 30, "scrub-detected corruption repaired")
        h.close()


def test_delete_restore_and_garbage_collection_reclaim_disk(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, settings=GFS) as c:
        h = Http(c.gateway_url)
        data = random.randbytes(4 * MiB)
        assert h.json("PUT", "/api/v1/files/docs/big.bin", data)[0] == 201
        handles = [h.json("GET", f"/api/v1/chunk/handle?path=/docs/big.bin&index={i}")[1]["handle"] for i in range(4)]
        chunk_dirs = [c.chunk_dir(i) for i in range(3)]
        before = disk_usage(chunk_dirs)
        assert h.json("DELETE", "/api/v1/delete?path=/docs&recursive=true")[0] == 200
        assert h.json("GET", "/api/v1/fileinfo?path=/docs/big.bin")[0] == 404
        trash = h.json("GET", "/api/v1/trash")[1]["entries"]
        assert [e["original_path"] for e in trash] == ["/docs"]
        status, body = h.json("POST", "/api/v1/undelete", {"path": "/docs"})
        assert status == 200, body
        assert h.request("GET", "/api/v1/files/docs/big.bin")[2] == data
        assert h.json("DELETE", "/api/v1/files/docs/big.bin")[0] == 200
        assert all(chunk_files(c, hd) for hd in handles)  # still on disk during the grace period
        wait_until(lambda: not any(chunk_files(c, hd) for hd in handles), 30, "chunk files to be collected")
        after = disk_usage(chunk_dirs)
        print(f"\ndisk used by chunk dirs: {before / MiB:.1f} MiB before, {after / MiB:.1f} MiB after GC")
        assert before - after >= 3 * 4 * MiB * 0.95
        assert h.json("GET", "/api/v1/trash")[1]["entries"] == []
        assert h.json("POST", "/api/v1/undelete", {"path": "/docs/big.bin"})[0] == 404
        h.close()


def test_orphan_chunks_reported_by_a_returning_chunkserver_are_deleted(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, settings=GFS) as c:
        h = Http(c.gateway_url)
        assert h.json("PUT", "/api/v1/files/gone.bin", random.randbytes(2 * MiB))[0] == 201
        handles = [h.json("GET", f"/api/v1/chunk/handle?path=/gone.bin&index={i}")[1]["handle"] for i in range(2)]
        c.procs["chunk3"].stop()  # away while the file is deleted and collected
        assert h.json("DELETE", "/api/v1/files/gone.bin")[0] == 200
        wait_until(lambda: not any(f for hd in handles for f in chunk_files(c, hd)
                                   if f.is_relative_to(c.chunk_dir(0)) or f.is_relative_to(c.chunk_dir(1))),
                   30, "the live chunkservers to collect the chunks")
        c.procs["master"].stop()  # and the master forgets it ever asked chunk3 to delete them
        c.start_master()
        assert all(chunk_files(c, hd) for hd in handles)  # only chunk3 still has them
        c.start_chunkserver(2)
        wait_until(lambda: not any(chunk_files(c, hd) for hd in handles), 30, "the orphan chunks to be deleted")
        h.close()


def test_snapshot_is_copy_on_write(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, settings=GFS) as c:
        h = Http(c.gateway_url)
        a, b = random.randbytes(2 * MiB + 5), random.randbytes(MiB // 2)
        assert h.json("PUT", "/api/v1/files/proj/a.bin", a)[0] == 201
        assert h.json("PUT", "/api/v1/files/proj/sub/b.log", b)[0] == 201
        status, body = h.json("POST", "/api/v1/snapshot", {"source": "/proj", "target": "/proj-snap"})
        assert status == 201, body
        shared = h.json("GET", "/api/v1/chunk/handle?path=/proj-snap/a.bin&index=0")[1]["handle"]
        assert shared == h.json("GET", "/api/v1/chunk/handle?path=/proj/a.bin&index=0")[1]["handle"]
        patch = b"NEW!" * 1000
        assert h.json("POST", "/api/v1/write?path=/proj/a.bin&offset=100", patch)[0] == 200
        assert h.json("PATCH", "/api/v1/append?path=/proj/sub/b.log", b"appended")[0] == 200
        expected_a = a[:100] + patch + a[100 + len(patch):]
        assert h.request("GET", "/api/v1/files/proj/a.bin")[2] == expected_a
        assert h.request("GET", "/api/v1/files/proj-snap/a.bin")[2] == a
        assert h.request("GET", "/api/v1/files/proj-snap/sub/b.log")[2] == b
        assert h.request("GET", "/api/v1/files/proj/sub/b.log")[2].startswith(b)
        assert h.json("GET", "/api/v1/chunk/handle?path=/proj/a.bin&index=0")[1]["handle"] != shared
        # Writing to the snapshot copies too, leaving the live file alone.
        assert h.json("POST", "/api/v1/write?path=/proj-snap/a.bin&offset=0", b"SNAP")[0] == 200
        assert h.request("GET", "/api/v1/files/proj/a.bin")[2] == expected_a
        assert h.json("POST", "/api/v1/snapshot", {"source": "/proj", "target": "/proj/inner"})[0] == 400
        assert h.json("POST", "/api/v1/snapshot", {"source": "/nope", "target": "/x"})[0] == 404
        assert h.json("POST", "/api/v1/snapshot", {"source": "/proj", "target": "/proj-snap"})[0] == 409
        h.close()


def test_new_chunkserver_receives_chunks_until_usage_evens_out(tmp_path: Path) -> None:
    settings = {**GFS, "HERCULES_CAPACITY_BYTES": "40MiB"}
    with LocalCluster(tmp_path, settings=settings) as c:
        h = Http(c.gateway_url)
        files = h.put_files({f"/load/{n}": random.randbytes(4 * MiB) for n in range(5)})
        c.add_chunkserver()

        def spread() -> float | None:
            servers = h.json("GET", "/api/v1/cluster")[1]["chunkservers"]
            usage = [s["used_bytes"] / s["capacity_bytes"] for s in servers if s["state"] == "alive"]
            if len(usage) < 4:
                return None
            return max(usage) - min(usage) if max(usage) - min(usage) <= 0.15 else None

        wait_until(lambda: spread() is not None, 60, "usage to even out across 4 chunkservers")
        servers = h.json("GET", "/api/v1/cluster")[1]["chunkservers"]
        newcomer = next(s for s in servers if s["address"] == c.chunk_addr(3))
        assert newcomer["chunk_count"] >= 10
        for path, data in files.items():
            assert sha256(h.request("GET", f"/api/v1/files{path}")[2]) == sha256(data)
        h.close()


def test_abandoned_uploads_are_removed_after_the_upload_timeout(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, settings={**GFS, "HERCULES_UPLOAD_TIMEOUT": "1"}) as c:
        async def main() -> None:
            client = await connect(c.master_addr)
            try:
                # a client that died mid-upload: its hidden file holds a chunk of data, never published
                started = await client._master(m.BeginUpload("/abandoned.bin", None, False, "abandoned", size_hint=7))
                client.locations.leased(started.temp.file_id, started.first_chunk)
                await client._write_into(started.temp.file_id, b"partial")
                deadline = time.monotonic() + 20
                while True:
                    try:
                        await client._master(m.FindChunk(started.first_chunk.handle))
                    except HerculesError as exc:
                        assert exc.code == "not_found"
                        return
                    assert time.monotonic() < deadline, "abandoned upload was never removed"
                    await asyncio.sleep(0.2)
            finally:
                await client.close()

        run(main())


def test_a_failed_upload_drops_its_hidden_file_and_chunks_at_once(tmp_path: Path) -> None:
    """The hidden file of an upload whose source fails is dropped by the client's AbortUpload,
    not left for the abandoned-upload sweep (an hour by default)."""
    with LocalCluster(tmp_path, settings=GFS) as c:
        async def main() -> None:
            client = await connect(c.master_addr)
            handles: list[int] = []
            real_write_piece = client._write_piece

            async def write_piece(file_id: int, offset: int, data) -> None:  # noqa: ANN001
                await real_write_piece(file_id, offset, data)
                loc = client.locations.lease(file_id, offset // client.chunk_size)
                handles.append(loc.handle)

            client._write_piece = write_piece

            async def failing_source():  # noqa: ANN202
                for _ in range(3):  # whole chunks, so pieces are written before the failure
                    yield b"x" * client.chunk_size
                deadline = time.monotonic() + 30
                while not handles and time.monotonic() < deadline:  # let a piece land first
                    await asyncio.sleep(0.05)
                raise OSError("the local disk went away")

            try:
                try:
                    await client.upload("/failed.bin", failing_source())
                except OSError:
                    pass
                else:
                    raise AssertionError("the upload did not fail")
                assert handles, "the upload wrote no chunk before failing"
                for handle in handles:
                    try:
                        await client._master(m.FindChunk(handle))
                    except HerculesError as exc:
                        assert exc.code == "not_found"
                    else:
                        raise AssertionError(f"chunk {handle} of the failed upload is still known")
                try:
                    await client.stat("/failed.bin")
                except HerculesError as exc:
                    assert exc.code == "not_found"
                else:
                    raise AssertionError("a failed upload was published")
                try:  # aborting twice (or after the sweep) is harmless
                    await client._master(m.AbortUpload("/.hercules/uploads/gone"))
                    await client._master(m.AbortUpload("/elsewhere"))
                except HerculesError as exc:
                    assert exc.code == "invalid_argument"
                else:
                    raise AssertionError("AbortUpload accepted a path outside the uploads")
            finally:
                await client.close()

        run(main())
