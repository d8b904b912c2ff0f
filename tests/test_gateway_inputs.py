"""The gateway's input handling: bodies that arrive slowly, short or empty, sizes past the maximum
file size, and hostile inputs (surrogates, deep JSON, huge integers, bad encodings) answered 400."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import time
from collections.abc import Iterator

import pytest

from hercules_core import messages as m
from hercules_core.client import connect
from hercules_core.config import MAX_FILE_SIZE
from hercules_core.errors import InvalidArgument
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import Http

KiB = 1 << 10
TIMEOUT = 60.0  # a socket read that never answers fails the test instead of hanging it


@pytest.fixture(scope="module", autouse=True)
def folders(cluster: LocalCluster) -> None:
    h = Http(cluster.gateway_url)
    for folder in ("/slow", "/empty", "/big", "/hostile"):
        assert h.json("POST", "/api/v1/mkdir", {"path": folder})[0] == 201
    h.close()


def _head(method: str, target: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
             *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _answer(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of the one answer on ``sock`` (the gateway closes after it)."""
    data = b""
    while True:
        got = sock.recv(65536)
        if not got:
            break
        data += got
    head, _, body = data.partition(b"\r\n\r\n")
    assert head, "the gateway closed the connection without answering"
    return int(head.split()[1]), json.loads(body) if body else {}


def _send_in_parts(cluster: LocalCluster, method: str, target: str, body: bytes, *, parts: int = 2,
                   pause: float = 0.3, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """Send ``body`` in ``parts`` TCP writes ``pause`` seconds apart, as a slow client does."""
    with socket.create_connection(("127.0.0.1", cluster.gateway_port), timeout=TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(_head(method, target, {"Content-Length": str(len(body)), **(headers or {})}))
        step = -(-len(body) // parts)
        for start in range(0, len(body), step):
            if start:
                time.sleep(pause)  # the gap between the client's writes is what is being tested
            sock.sendall(body[start:start + step])
        return _answer(sock)


def _send_short(cluster: LocalCluster, method: str, target: str, promised: int, body: bytes) -> bytes:
    """Promise ``promised`` bytes, send ``body`` (fewer), then end the request stream; what came back."""
    with socket.create_connection(("127.0.0.1", cluster.gateway_port), timeout=TIMEOUT) as sock:
        sock.sendall(_head(method, target, {"Content-Length": str(promised)}) + body)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while got := sock.recv(65536):
            data += got
        return data


def _size_stays(gw: Http, path: str, size: int, seconds: float = 2.0) -> None:
    """The file keeps ``size`` bytes for ``seconds`` (a handler that wrongly goes on acts within this)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, info = gw.json("GET", f"/api/v1/fileinfo?path={path}")
        assert status == 200 and info["size"] == size, info
        time.sleep(0.1)


# -- bodies that arrive in parts, short or empty ----------------------------------------------------


def test_append_body_in_two_writes_is_stored_whole(cluster: LocalCluster, gw: Http) -> None:
    assert gw.json("POST", "/api/v1/create", {"path": "/slow/log"})[0] == 201
    record = bytes(range(256)) * (200 * KiB // 256)
    status, body = _send_in_parts(cluster, "PATCH", "/api/v1/append?path=/slow/log", record)
    assert status == 200, body
    assert body == {"path": "/slow/log", "offset": 0, "length": 200 * KiB}
    status, _, stored = gw.request("GET", "/api/v1/read?path=/slow/log")
    assert status == 200 and stored == record


def test_write_body_in_parts_is_stored_whole(cluster: LocalCluster, gw: Http) -> None:
    assert gw.json("POST", "/api/v1/create", {"path": "/slow/range"})[0] == 201
    data = bytes(range(251)) * (1200 * KiB // 251)  # crosses a 1 MiB chunk boundary
    status, body = _send_in_parts(cluster, "POST", "/api/v1/write?path=/slow/range&offset=10", data, parts=3)
    assert (status, body) == (200, {"path": "/slow/range", "written": len(data)})
    status, _, stored = gw.request("GET", "/api/v1/read?path=/slow/range")
    assert status == 200 and stored == bytes(10) + data


def test_whole_file_body_in_parts_is_stored_whole(cluster: LocalCluster, gw: Http) -> None:
    data = bytes(range(253)) * (300 * KiB // 253)
    status, body = _send_in_parts(cluster, "PUT", "/api/v1/files/slow/whole.bin", data, parts=3)
    assert status == 201 and body["size"] == len(data), body
    status, _, stored = gw.request("GET", "/api/v1/files/slow/whole.bin")
    assert status == 200 and stored == data


@pytest.mark.parametrize("target, body, status", [
    ("/api/v1/create", {"path": "/slow/json-created", "replication": 2}, 201),
    ("/api/v1/mkdir", {"path": "/slow/json-dir"}, 201),
])
def test_json_body_in_parts_is_read_whole(cluster: LocalCluster, gw: Http, target: str, body: dict,
                                          status: int) -> None:
    got_status, got = _send_in_parts(cluster, "POST", target, json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    assert got_status == status, got
    assert got["path"] == body["path"]
    if "replication" in body:
        assert got["replication"] == body["replication"]


def test_chunked_bodies_in_parts_are_stored_whole(cluster: LocalCluster, gw: Http) -> None:
    parts = [bytes([i]) * size for i, size in enumerate([1, 70_000, 0x10000, 5, 130_000])]
    with socket.create_connection(("127.0.0.1", cluster.gateway_port), timeout=TIMEOUT) as sock:
        sock.sendall(_head("PUT", "/api/v1/files/slow/chunked.bin", {"Transfer-Encoding": "chunked"}))
        for part in parts:
            sock.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
            time.sleep(0.05)  # each HTTP chunk in its own TCP write
        sock.sendall(b"0\r\n\r\n")
        status, body = _answer(sock)
    assert status == 201 and body["size"] == sum(map(len, parts)), body
    assert gw.request("GET", "/api/v1/files/slow/chunked.bin")[2] == b"".join(parts)


def test_short_append_body_stores_nothing(cluster: LocalCluster, gw: Http) -> None:
    assert gw.json("POST", "/api/v1/create", {"path": "/slow/short"})[0] == 201
    answer = _send_short(cluster, "PATCH", "/api/v1/append?path=/slow/short", 200 * KiB, b"r" * (100 * KiB))
    assert b" 200 " not in answer.split(b"\r\n", 1)[0], answer  # never acknowledged
    _size_stays(gw, "/slow/short", 0)


def test_short_whole_file_body_publishes_nothing(cluster: LocalCluster, gw: Http) -> None:
    answer = _send_short(cluster, "PUT", "/api/v1/files/slow/short.bin", 300 * KiB, b"w" * (100 * KiB))
    assert b" 201 " not in answer.split(b"\r\n", 1)[0], answer
    status, body = gw.json("GET", "/api/v1/fileinfo?path=/slow/short.bin")
    assert status == 404, body


def test_empty_uploads_answer_and_the_gateway_stays_up(cluster: LocalCluster, gw: Http) -> None:
    assert gw.json("POST", "/api/v1/create", {"path": "/empty/target"})[0] == 201
    requests = [("PUT", "/api/v1/files/empty/a", {"Content-Length": "0"}, 201),
                ("PUT", "/api/v1/files/empty/b", {"Content-Length": "0"}, 201),
                ("PUT", "/api/v1/files/empty/c", {}, 201),  # no Content-Length: no body
                ("POST", "/api/v1/write?path=/empty/target", {"Content-Length": "0"}, 200),
                ("POST", "/api/v1/write?path=/empty/target", {}, 200)]
    for method, target, headers, status in requests:
        with socket.create_connection(("127.0.0.1", cluster.gateway_port), timeout=TIMEOUT) as sock:
            sock.sendall(_head(method, target, headers))
            got_status, body = _answer(sock)
        assert got_status == status, (target, body)
    for name in "abc":
        status, info = gw.json("GET", f"/api/v1/fileinfo?path=/empty/{name}")
        assert (status, info["size"]) == (200, 0), info
    status, body = gw.json("GET", "/health")
    assert status == 200 and body["status"] == "ok", body


def test_valid_gzip_body_is_stored_decoded(gw: Http) -> None:
    data = b"hercules " * 5000
    status, body = gw.json("PUT", "/api/v1/files/enc/plain.txt", gzip.compress(data),
                           headers={"Content-Encoding": "gzip"})
    assert status == 201 and body["size"] == len(data), body
    assert gw.request("GET", "/api/v1/files/enc/plain.txt")[2] == data


# -- the maximum file size ----------------------------------------------------------------------------


@pytest.mark.parametrize("method, target", [
    ("POST", f"/api/v1/write?path=/big/f&offset={1 << 62}"),
    ("POST", f"/api/v1/write?path=/big/f&offset={MAX_FILE_SIZE - 1}"),  # one byte fits, two do not
    ("GET", f"/api/v1/read?path=/big/f&offset={MAX_FILE_SIZE + 1}"),
    ("GET", f"/api/v1/read?path=/big/f&length={MAX_FILE_SIZE + 1}"),
])
def test_offsets_past_the_maximum_file_size_are_refused(gw: Http, method: str, target: str) -> None:
    gw.json("POST", "/api/v1/create", {"path": "/big/f"})
    status, body = gw.json(method, target, b"xy" if method == "POST" else None)
    assert status == 400, body
    assert body["error"]["code"] == "invalid_argument"
    assert "maximum file size" in body["error"]["message"]
    status, info = gw.json("GET", "/api/v1/fileinfo?path=/big/f")
    assert (status, info["size"]) == (200, 0), info


def test_a_write_ending_at_the_maximum_file_size_is_accepted(gw: Http) -> None:
    assert gw.json("POST", "/api/v1/create", {"path": "/big/edge"})[0] == 201
    status, body = gw.json("POST", f"/api/v1/write?path=/big/edge&offset={MAX_FILE_SIZE - 1}", b"z")
    assert (status, body) == (200, {"path": "/big/edge", "written": 1})
    status, _, got = gw.request("GET", f"/api/v1/read?path=/big/edge&offset={MAX_FILE_SIZE - 1}")
    assert (status, got) == (200, b"z")
    assert gw.json("GET", "/api/v1/fileinfo?path=/big/edge")[1]["size"] == MAX_FILE_SIZE


def test_native_client_and_master_refuse_sizes_past_the_maximum(cluster: LocalCluster) -> None:
    async def run() -> None:
        client = await connect(cluster.master_addr)
        try:
            info = await client.create("/big/native")
            with pytest.raises(InvalidArgument, match="maximum file size"):
                await client.write("/big/native", 1 << 62, b"x")
            with pytest.raises(InvalidArgument, match="maximum file size"):
                await client.write_stream("/big/native", MAX_FILE_SIZE - 1, [b"ab"])
            past = MAX_FILE_SIZE // client.chunk_size + 1
            for msg in (m.GetChunk(info.file_id, past, for_write=True), m.GetChunk(info.file_id, 1 << 62),
                        m.ExtendSize(info.file_id, 1 << 62), m.ExtendSize(info.file_id, MAX_FILE_SIZE + 1),
                        m.Locate("/big/native", 1 << 62, 1)):
                with pytest.raises(InvalidArgument, match="maximum file size"):
                    await client._master(msg)
            assert (await client.stat("/big/native")).size == 0
        finally:
            await client.close()

    asyncio.run(run())


# -- hostile inputs: each a 400 with our JSON error ---------------------------------------------------

HUGE = [1 << 63, 1 << 64, (1 << 64) * 7]
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
JSON = {"Content-Type": "application/json"}


def _hostile() -> Iterator[tuple[str, str, bytes | None, dict[str, str], str]]:
    for target in ("/api/v1/mkdir", "/api/v1/create", "/api/v1/undelete"):
        yield "POST", target, b'{"path": "/x\\ud800"}', JSON, "not valid UTF-8"
    yield "PATCH", "/api/v1/rename", b'{"source": "/hostile/a", "target": "/\\udfff"}', JSON, "target"
    yield "POST", "/api/v1/snapshot", b'{"source": "/\\ud800", "target": "/s"}', JSON, "source"
    yield "DELETE", "/api/v1/delete", b'{"path": "/\\ud800"}', JSON, "not valid UTF-8"
    for target in ("/api/v1/mkdir", "/api/v1/create", "/api/v1/rename", "/api/v1/snapshot"):
        method = "PATCH" if target.endswith("rename") else "POST"
        yield method, target, DEEP, JSON, "nested too deeply"
        yield method, target, DEEP_OBJECT, JSON, "nested too deeply"
    for value in HUGE:
        yield "GET", f"/api/v1/read?path=/hostile/a&offset={value}", None, {}, "offset"
        yield "GET", f"/api/v1/read?path=/hostile/a&length={value}", None, {}, "length"
        yield "POST", f"/api/v1/write?path=/hostile/a&offset={value}", b"x", {}, "offset"
        yield "GET", f"/api/v1/list?path=/&limit={value}", None, {}, "limit"
        yield "GET", f"/api/v1/chunk/handle?path=/hostile/a&index={value}", None, {}, "index"
        yield "GET", f"/api/v1/chunk/servers?handle={value}", None, {}, "handle"
        yield "PUT", f"/api/v1/files/hostile/r?replication={value}", b"x", {}, "replication"
        for sign in (1, -1):
            body = json.dumps({"path": "/hostile/r", "replication": sign * value}).encode()
            yield "POST", "/api/v1/create", body, JSON, "replication"
    yield "GET", f"/api/v1/chunk/handle?path=/hostile/a&index={-(1 << 64)}", None, {}, "index"
    many_digits = b'{"path": "/hostile/r", "replication": ' + b"9" * 5000 + b"}"
    yield "POST", "/api/v1/create", many_digits, JSON, "not valid JSON"
    yield "GET", f"/api/v1/read?path=/hostile/a&offset={'9' * 5000}", None, {}, "offset must be an integer"
    for encoding in ("gzip", "deflate"):
        bad = {"Content-Encoding": encoding}
        yield "POST", "/api/v1/create", b'{"path": "/hostile/gz"}', {**JSON, **bad}, encoding
        yield "PUT", "/api/v1/files/hostile/gz", b"not compressed at all", bad, encoding
        yield "POST", "/api/v1/write?path=/hostile/a", b"not compressed at all", bad, encoding
        yield "PATCH", "/api/v1/append?path=/hostile/a", b"not compressed at all", bad, encoding


@pytest.mark.parametrize("method, target, body, headers, words", list(_hostile()))
def test_hostile_inputs_are_400_with_our_error(gw: Http, method: str, target: str, body: bytes | None,
                                               headers: dict[str, str], words: str) -> None:
    gw.json("POST", "/api/v1/create", {"path": "/hostile/a"})
    status, got_headers, data = gw.request(method, target, body, headers)
    assert status == 400, data[:500]
    assert got_headers["content-type"].startswith("application/json"), data[:500]
    error = json.loads(data)["error"]
    assert error["code"] == "invalid_argument", error
    assert words in error["message"], error
    assert gw.json("GET", "/health")[0] == 200
    status, info = gw.json("GET", "/api/v1/fileinfo?path=/hostile/a")
    assert (status, info["size"]) == (200, 0), info

