"""End to end: master, 3 chunkservers and a gateway as real processes on loopback."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import time
from pathlib import Path

import pytest

from hercules_core.client import connect
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST, MiB, Http, chunk_files, disk_usage, sha256


def _handles(gw: Http, path: str, count: int) -> list[int]:
    handles = []
    for index in range(count):
        status, body = gw.json("GET", f"/api/v1/chunk/handle?path={path}&index={index}")
        assert status == 200, body
        handles.append(body["handle"])
    return handles


def test_health(gw: Http) -> None:
    status, body = gw.json("GET", "/health")
    assert status == 200
    assert body == {"status": "ok", "master": "reachable", "chunkservers_alive": 3}


def test_64mib_upload_through_gateway_is_replicated_on_3_distinct_servers(cluster: LocalCluster, gw: Http) -> None:
    data = random.randbytes(64 * MiB)
    started = time.perf_counter()
    status, body = gw.json("PUT", "/api/v1/files/big/gateway.bin", data)
    up = time.perf_counter() - started
    assert status == 201, body
    assert (body["size"], body["chunk_count"], body["replication"]) == (64 * MiB, 64, 3)
    started = time.perf_counter()
    status, headers, got = gw.request("GET", "/api/v1/files/big/gateway.bin")
    down = time.perf_counter() - started
    assert status == 200 and headers["content-length"] == str(64 * MiB)
    assert sha256(got) == sha256(data)
    print(f"\n64 MiB via gateway: upload {64 / up:.0f} MiB/s, download {64 / down:.0f} MiB/s")
    for handle in _handles(gw, "/big/gateway.bin", 64):
        files = chunk_files(cluster, handle)
        servers = {f.relative_to(cluster.root).parts[0] for f in files}
        assert len(servers) == 3, (handle, files)
        status, loc = gw.json("GET", f"/api/v1/chunk/servers?handle={handle}")
        assert status == 200 and len(set(loc["replicas"])) == 3


def test_64mib_through_client_library(cluster: LocalCluster) -> None:
    data = random.randbytes(64 * MiB)

    async def run() -> tuple[bytes, float, float]:
        client = await connect(cluster.master_addr)
        try:
            started = time.perf_counter()
            info = await client.upload("/big/client.bin", data)
            up = time.perf_counter() - started
            assert info.size == len(data) and info.chunk_count == 64
            started = time.perf_counter()
            got = await client.read("/big/client.bin")
            return got, up, time.perf_counter() - started
        finally:
            await client.close()

    got, up, down = asyncio.run(run())
    print(f"\n64 MiB via client library: upload {64 / up:.0f} MiB/s, download {64 / down:.0f} MiB/s")
    assert sha256(got) == sha256(data)


def test_write_at_offset_and_read_back(gw: Http) -> None:
    assert gw.json("POST", "/api/v1/create", {"path": "/rw/file"})[0] == 404  # no parent directory yet
    assert gw.json("POST", "/api/v1/mkdir", {"path": "/rw"})[0] == 201
    assert gw.json("POST", "/api/v1/create", {"path": "/rw/file"})[0] == 201
    first = random.randbytes(3 * MiB + 100)
    status, body = gw.json("POST", "/api/v1/write?path=/rw/file&offset=0", first)
    assert status == 200 and body["written"] == len(first)
    patch = b"HERCULES" * 1000
    offset = MiB - 3000  # straddles a chunk boundary
    assert gw.json("POST", f"/api/v1/write?path=/rw/file&offset={offset}", patch)[0] == 200
    expected = bytearray(first)
    expected[offset:offset + len(patch)] = patch
    status, _, got = gw.request("GET", f"/api/v1/read?path=/rw/file&offset={offset - 10}&length={len(patch) + 20}")
    assert status == 200 and got == bytes(expected[offset - 10:offset + len(patch) + 10])
    status, _, tail = gw.request("GET", f"/api/v1/read?path=/rw/file&offset={len(first) - 5}&length=100")
    assert status == 200 and tail == bytes(expected[-5:])  # a read past the end returns what exists
    status, _, nothing = gw.request("GET", f"/api/v1/read?path=/rw/file&offset={len(first) + 10}&length=100")
    assert status == 200 and nothing == b""
    status, info = gw.json("GET", "/api/v1/fileinfo?path=/rw/file")
    assert info["size"] == len(first) and info["chunk_count"] == 4
    status, _, whole = gw.request("GET", "/api/v1/files/rw/file")
    assert whole == bytes(expected)


def test_ranges_and_head(gw: Http) -> None:
    data = random.randbytes(2 * MiB + 7)
    assert gw.json("PUT", "/api/v1/files/ranges/r.bin", data)[0] == 201
    status, headers, got = gw.request("GET", "/api/v1/files/ranges/r.bin", headers={"Range": "bytes=1048570-1048580"})
    assert status == 206 and got == data[1048570:1048581]
    assert headers["content-range"] == f"bytes 1048570-1048580/{len(data)}"
    status, headers, got = gw.request("GET", "/api/v1/files/ranges/r.bin", headers={"Range": "bytes=-5"})
    assert status == 206 and got == data[-5:]
    status, headers, _ = gw.request("GET", "/api/v1/files/ranges/r.bin", headers={"Range": f"bytes={len(data)}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{len(data)}"
    status, headers, body = gw.request("HEAD", "/api/v1/files/ranges/r.bin")
    assert status == 200 and headers["content-length"] == str(len(data)) and body == b""
    assert gw.json("PUT", "/api/v1/files/ranges/r.bin", b"x")[0] == 409
    status, body = gw.json("PUT", "/api/v1/files/ranges/r.bin?overwrite=true", b"new")
    assert status == 201 and body["size"] == 3
    assert gw.request("GET", "/api/v1/files/ranges/r.bin")[2] == b"new"
    assert gw.json("DELETE", "/api/v1/files/ranges/r.bin")[0] == 200
    assert gw.request("HEAD", "/api/v1/files/ranges/r.bin")[0] == 404


def test_concurrent_appends_from_4_clients_keep_every_record(cluster: LocalCluster, gw: Http) -> None:
    assert gw.json("POST", "/api/v1/create", {"path": "/log"})[0] == 201
    records: dict[int, bytes] = {}

    async def appender(n: int) -> None:
        client = await connect(cluster.master_addr)
        try:
            for i in range(40):
                record = f"<client {n} record {i} ".encode() + random.randbytes(random.randint(10, 60_000)) + b">"
                offset = await client.append("/log", record)
                records[offset] = record
        finally:
            await client.close()

    async def run() -> None:
        await asyncio.gather(*(appender(n) for n in range(4)))

    asyncio.run(run())
    assert len(records) == 160
    status, _, content = gw.request("GET", "/api/v1/files/log")
    assert status == 200
    for offset, record in records.items():
        assert content[offset:offset + len(record)] == record
    spans = sorted((o, o + len(r)) for o, r in records.items())
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:])), "records overlap"
    status, body = gw.json("PATCH", "/api/v1/append?path=/log", b"tail-record")
    assert status == 200 and body["length"] == 11
    assert gw.request("GET", f"/api/v1/read?path=/log&offset={body['offset']}&length=11")[2] == b"tail-record"


def test_namespace_operations(gw: Http) -> None:
    assert gw.json("POST", "/api/v1/mkdir", {"path": "/ns/a/b"})[0] == 201
    assert gw.json("POST", "/api/v1/mkdir", {"path": "/ns/a/b"})[0] == 201  # mkdir -p is idempotent
    assert gw.json("POST", "/api/v1/create", {"path": "/ns/a/b/f1", "replication": 2})[0] == 201
    assert gw.json("PUT", "/api/v1/files/ns/a/f2", b"hello")[0] == 201
    status, body = gw.json("GET", "/api/v1/list?path=/ns/a")
    assert status == 200
    assert [(e["name"], e["is_dir"], e["size"]) for e in body["entries"]] == [("b", True, 0), ("f2", False, 5)]
    status, body = gw.json("GET", "/api/v1/list?path=/ns&recursive=true")
    assert [e["path"] for e in body["entries"]] == ["/ns/a", "/ns/a/b", "/ns/a/b/f1", "/ns/a/f2"]
    status, page = gw.json("GET", "/api/v1/list?path=/ns&recursive=true&limit=3")
    assert len(page["entries"]) == 3 and page["next_cursor"]
    status, rest = gw.json("GET", f"/api/v1/list?path=/ns&recursive=true&limit=3&cursor={page['next_cursor']}")
    assert [e["path"] for e in rest["entries"]] == ["/ns/a/f2"]
    status, info = gw.json("GET", "/api/v1/fileinfo?path=/ns/a/b/f1")
    assert info["replication"] == 2 and info["is_dir"] is False
    assert gw.json("PATCH", "/api/v1/rename", {"source": "/ns/a", "target": "/ns/moved"})[0] == 200
    assert gw.request("GET", "/api/v1/files/ns/moved/f2")[2] == b"hello"
    assert gw.json("GET", "/api/v1/fileinfo?path=/ns/a")[0] == 404
    assert gw.json("PATCH", "/api/v1/rename", {"source": "/ns/moved/f2", "target": "/ns/f3"})[0] == 200
    assert gw.json("DELETE", "/api/v1/delete", {"path": "/ns/moved"})[0] == 409
    assert gw.json("DELETE", "/api/v1/delete?path=/ns/moved&recursive=true")[0] == 200
    assert gw.json("DELETE", "/api/v1/delete", {"path": "/ns/f3"})[0] == 200
    status, body = gw.json("GET", "/api/v1/list?path=/ns")
    assert body["entries"] == []


@pytest.mark.parametrize(("method", "path", "body", "status", "code", "words"), [
    ("POST", "/api/v1/mkdir", {"path": "relative/dir"}, 400, "invalid_argument", "not absolute"),
    ("POST", "/api/v1/mkdir", {"path": ""}, 400, "invalid_argument", "empty"),
    ("POST", "/api/v1/mkdir", {"path": "/a/../b"}, 400, "invalid_argument", "'..' segment"),
    ("POST", "/api/v1/mkdir", {"path": "/a\u0000b"}, 400, "invalid_argument", "NUL"),
    ("POST", "/api/v1/mkdir", {"path": "/" + "x" * 4100}, 400, "invalid_argument", "4096"),
    ("POST", "/api/v1/mkdir", b"{not json", 400, "invalid_argument", "not valid JSON"),
    ("POST", "/api/v1/mkdir", {"dir": "/x"}, 400, "invalid_argument", "'path'"),
    ("POST", "/api/v1/mkdir", [1, 2], 400, "invalid_argument", "JSON object"),
    ("POST", "/api/v1/mkdir", {"path": "/errors/file/sub"}, 409, "already_exists", "file is in the way"),
    ("POST", "/api/v1/create", {"path": "/errors/file"}, 409, "already_exists", "already exists"),
    ("POST", "/api/v1/create", {"path": "/errors/missing/file"}, 404, "not_found", "/errors/missing"),
    ("POST", "/api/v1/create", {"path": "/errors/r", "replication": 9}, 201, None, ""),
    ("POST", "/api/v1/create", {"path": "/errors/r2", "replication": "3"}, 400, "invalid_argument", "replication"),
    ("DELETE", "/api/v1/delete?path=/errors/nothing", None, 404, "not_found", "/errors/nothing"),
    ("DELETE", "/api/v1/delete", None, 400, "invalid_argument", "path"),
    ("PATCH", "/api/v1/rename", {"source": "/errors/nothing", "target": "/errors/x"}, 404, "not_found", "nothing"),
    ("PATCH", "/api/v1/rename", {"source": "/errors/file", "target": "/errors/dir"}, 409, "already_exists", "exists"),
    ("PATCH", "/api/v1/rename", {"source": "/errors/dir", "target": "/errors/dir/sub/x"}, 400, "invalid_argument",
     "into itself"),
    ("GET", "/api/v1/list?path=/errors/nothing", None, 404, "not_found", "nothing"),
    ("GET", "/api/v1/list", None, 400, "invalid_argument", "'path'"),
    ("GET", "/api/v1/list?path=/&limit=-1", None, 400, "invalid_argument", "limit"),
    ("GET", "/api/v1/read?path=/errors/file&offset=-1", None, 400, "invalid_argument", "offset"),
    ("GET", "/api/v1/read?path=/errors/file&offset=abc", None, 400, "invalid_argument", "offset must be an integer"),
    ("GET", "/api/v1/read?path=/errors/dir", None, 400, "invalid_argument", "directory"),
    ("POST", "/api/v1/write?path=/errors/file&offset=-5", b"x", 400, "invalid_argument", "offset"),
    ("POST", "/api/v1/write?path=/errors/nothing&offset=0", b"x", 404, "not_found", "nothing"),
    ("PATCH", "/api/v1/append?path=/errors/file", b"x" * (300 * 1024), 400, "invalid_argument", "at most"),
    ("PATCH", "/api/v1/append?path=/errors/file", b"", 400, "invalid_argument", "empty"),
    ("GET", "/api/v1/chunk/handle?path=/errors/file&index=7", None, 404, "not_found", "chunk 7"),
    ("GET", "/api/v1/chunk/handle?path=/errors/file", None, 400, "invalid_argument", "index"),
    ("GET", "/api/v1/chunk/servers?handle=999999", None, 404, "not_found", "999999"),
    ("GET", "/api/v1/chunk/servers?handle=x", None, 400, "invalid_argument", "handle"),
    ("PUT", "/api/v1/files/errors/file", b"x", 409, "already_exists", "/errors/file: already exists"),
    ("PUT", "/api/v1/files/errors/dir", b"x", 409, "is_a_directory", "/errors/dir: already exists"),
    ("PUT", "/api/v1/files/errors/file/sub", b"x", 409, "not_a_directory", "a parent is a file"),
    ("GET", "/api/v1/files/errors/nothing", None, 404, "not_found", "nothing"),
    ("GET", "/api/v1/files/errors/dir", None, 400, "invalid_argument", "directory"),
    ("GET", "/api/v1/nope", None, 404, "not_found", "/api/v1/nope"),
    ("POST", "/api/v1/list?path=/", None, 405, "method_not_allowed", ""),
])
def test_error_statuses(gw: Http, method: str, path: str, body: object, status: int, code: str | None,
                        words: str) -> None:
    gw.json("POST", "/api/v1/mkdir", {"path": "/errors/dir/sub"})
    gw.json("PUT", "/api/v1/files/errors/file", b"content")
    got_status, got = gw.json(method, path, body)
    assert got_status == status, got
    if code is not None:
        assert got["error"]["code"] == code
        assert words in got["error"]["message"]


def test_upload_protocol_checks_first_and_leaves_nothing_behind(cluster: LocalCluster) -> None:
    from hercules_core import messages as m
    from hercules_core.errors import AlreadyExists, HerculesError, InvalidArgument, NotFound

    async def run() -> None:
        client = await connect(cluster.master_addr)
        try:
            # pack=False: these go through BeginUpload and PublishUpload, not as records in a pack
            first = await client.upload("/uproto/deep/new/a.bin", b"a" * 5000, pack=False)  # parents made on publish
            assert (first.path, first.size, first.chunk_count) == ("/uproto/deep/new/a.bin", 5000, 1)
            with pytest.raises(AlreadyExists):  # refused before any data moves
                await client.upload("/uproto/deep/new/a.bin", b"b", pack=False)
            second = await client.upload("/uproto/deep/new/a.bin", b"c" * 10, overwrite=True, pack=False)
            assert (second.size, await client.read("/uproto/deep/new/a.bin")) == (10, b"c" * 10)
            # a retried BeginUpload (same request id) gets the same hidden file
            begin = m.BeginUpload("/uproto/b.bin", None, False, "retry-1", size_hint=10)
            started = await client._master(begin)
            temp, chunk0 = started.temp, started.first_chunk
            assert chunk0 is not None and chunk0.index == 0 and chunk0.primary and len(chunk0.replicas) == 3
            again = await client._master(begin)
            assert (again.temp, again.first_chunk.handle, again.first_chunk.version) == \
                (temp, chunk0.handle, chunk0.version)
            assert temp.path.startswith("/.hercules/uploads/")
            assert (await client._master(m.BeginUpload("/uproto/z.bin", None, False, "no-hint"))).first_chunk is None
            published = await client._master(m.PublishUpload(temp.path, "/uproto/b.bin", 0, False, "pub-1"))
            assert published.path == "/uproto/b.bin" and published.file_id == temp.file_id
            with pytest.raises(InvalidArgument, match="not an upload in progress"):
                await client._master(m.PublishUpload("/uproto/b.bin", "/uproto/c.bin", 0, False, ""))
            with pytest.raises(InvalidArgument, match="request id"):
                await client._master(m.BeginUpload("/uproto/d.bin", None, False, "../../escape"))
            with pytest.raises(NotFound):
                await client._master(m.PublishUpload("/.hercules/uploads/none", "/uproto/e.bin", 0, False, ""))
            with pytest.raises(HerculesError) as refused:  # the internal tree is the master's alone
                await client.list("/.hercules/uploads")
            assert refused.value.code == "forbidden"
            with pytest.raises(HerculesError) as refused:
                await client.delete("/.hercules/uploads/no-hint")
            assert refused.value.code == "forbidden"
            # the published upload left the uploads directory; the one without data is still there
            with pytest.raises(NotFound):
                await client._master(m.PublishUpload(temp.path, "/uproto/b2.bin", 0, False, ""))
            leftover = await client._master(m.PublishUpload("/.hercules/uploads/no-hint", "/uproto/z.bin", 0,
                                                            False, ""))
            assert leftover.path == "/uproto/z.bin"
        finally:
            await client.close()

    asyncio.run(run())


def test_locate_opens_a_file_with_its_first_chunk_locations(cluster: LocalCluster) -> None:
    from hercules_core import messages as m
    from hercules_core.errors import InvalidArgument, NotFound

    async def run() -> None:
        client = await connect(cluster.master_addr)
        try:
            size = 2 * MiB + 5  # FAST settings: 1 MiB chunks, so 3 chunks
            info = await client.upload("/locate/f.bin", b"L" * size)
            located = await client._master(m.Locate("/locate/f.bin", 1, 8))
            assert located.info == info
            assert [c.index for c in located.chunks] == [1, 2]  # stops at the end of the file
            assert all(c.exists and len(c.replicas) == 3 for c in located.chunks)
            assert (await client._master(m.Locate("/locate", 0, 8))).chunks == []
            assert (await client._master(m.Locate("/locate/f.bin", 0, 0))).chunks == []
            with pytest.raises(InvalidArgument, match="count"):
                await client._master(m.Locate("/locate/f.bin", 0, 100_000))
            with pytest.raises(InvalidArgument, match="negative"):
                await client._master(m.Locate("/locate/f.bin", -1, 1))
            with pytest.raises(NotFound):
                await client._master(m.Locate("/locate/none", 0, 1))
            assert await client.read("/locate/f.bin", MiB - 2, 4) == b"LLLL"  # across a chunk boundary
        finally:
            await client.close()

    asyncio.run(run())


def test_too_few_chunkservers_for_the_replication_is_503(gw: Http) -> None:
    status, body = gw.json("PUT", "/api/v1/files/errors/wide.bin?replication=5", b"data")
    assert status == 503 and body["error"]["code"] == "too_few_chunkservers"
    assert "only 3 live chunkservers" in body["error"]["message"]
    assert gw.json("GET", "/api/v1/fileinfo?path=/errors/wide.bin")[0] == 404  # nothing half-made is visible


def test_garbage_frames_are_refused_and_roles_keep_serving(cluster: LocalCluster, gw: Http) -> None:
    ports = [cluster.master_port, *cluster.chunk_ports]
    for port in ports:
        for garbage in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"HF\x01\x01" + b"\xff" * 12, os.urandom(64)):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(garbage)
                sock.settimeout(5)
                try:
                    rest = sock.recv(100)
                except ConnectionResetError:
                    rest = b""
                assert rest == b"", f"port {port} answered garbage with {rest!r}"
    status, _, _ = gw.request("POST", "/api/v1/mkdir", b"\xff\xfe garbage")
    assert status == 400
    assert gw.json("GET", "/health")[1]["chunkservers_alive"] == 3
    assert gw.json("PUT", "/api/v1/files/after-garbage", b"still serving")[0] == 201
    assert gw.request("GET", "/api/v1/files/after-garbage")[2] == b"still serving"


def test_zstd_store_uses_clearly_less_disk_for_compressible_data(tmp_path: Path) -> None:
    lines = b"".join(b'{"ts": %d, "level": "info", "msg": "request served", "path": "/api/v1/files/%d"}\n'
                     % (i, i % 97) for i in range(200_000))[: 12 * MiB]
    usage = {}
    for store in ("fs", "zstd"):
        with LocalCluster(tmp_path / store, store=store, settings=FAST) as c:
            h = Http(c.gateway_url)
            assert h.json("PUT", "/api/v1/files/logs.json", lines)[0] == 201
            assert sha256(h.request("GET", "/api/v1/files/logs.json")[2]) == sha256(lines)
            usage[store] = disk_usage([c.chunk_dir(i) for i in range(3)])
            h.close()
    print(f"\n12 MiB of JSON lines on disk (3 replicas): fs {usage['fs'] / MiB:.1f} MiB, "
          f"zstd {usage['zstd'] / MiB:.1f} MiB")
    assert usage["zstd"] * 3 < usage["fs"]


def test_reads_survive_a_killed_chunkserver(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, settings=FAST) as c:
        h = Http(c.gateway_url)
        files = h.put_files({f"/k/{n}.bin": random.randbytes(random.randint(1, 5) * MiB + n) for n in range(4)})
        c.procs["chunk2"].signal(signal.SIGKILL)
        for path, data in files.items():
            status, _, got = h.request("GET", f"/api/v1/files{path}")
            assert status == 200 and sha256(got) == sha256(data), path
        deadline = time.monotonic() + 15
        while h.json("GET", "/health")[1]["chunkservers_alive"] != 2:
            assert time.monotonic() < deadline, "the master never noticed the dead chunkserver"
            time.sleep(0.2)
        status, cluster_info = h.json("GET", "/api/v1/cluster")
        states = {s["address"]: s["state"] for s in cluster_info["chunkservers"]}
        assert states[c.chunk_addr(1)] == "dead"
        status, body = h.json("PUT", "/api/v1/files/k/after.bin", b"x")  # rf 3 with 2 live servers
        assert status == 503 and body["error"]["code"] == "too_few_chunkservers"
        h.close()
