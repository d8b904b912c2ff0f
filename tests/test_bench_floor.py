"""The floor server of ``hercules bench --peer`` (``hercules_bench.peer_floor``), in its own process.

It must store what is PUT and give it back byte for byte (the bench verifies the floor's reads
as any side's), speak HTTP/1.1 as the bench's client and a raw socket use it (keep-alive,
pipelining, a body in several packets) and leave no process behind. No timing is asserted.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import crc32c
import pytest

pytest.importorskip("httptools")
from hercules_bench.http import Gateway, GatewayError  # noqa: E402
from hercules_bench.peer_floor import FloorServer  # noqa: E402

FILES = "/api/v1/files"


@pytest.fixture(scope="module")
def floor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FloorServer]:
    server = FloorServer(tmp_path_factory.mktemp("floor")).start()
    try:
        yield server
    finally:
        server.stop()


def _connect(floor: FloorServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", floor.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_response(stream: BinaryIO) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer from ``stream``: status, headers (lower-cased names), body."""
    status = int(stream.readline().split()[1])
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, stream.read(int(headers["content-length"]))


def _put_request(path: str, body: bytes) -> bytes:
    return f"PUT {FILES}/{path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


async def test_put_then_get_gives_the_same_bytes(floor: FloorServer) -> None:
    small, large = os.urandom(4096), os.urandom(8 << 20)
    gw = Gateway(floor.url, connections=2, timeout=30)
    try:
        assert await gw.health() == {}
        assert (await gw.put("/t/small.bin", small, replication=3))["size"] == len(small)
        assert (await gw.put("/t/dir/large file.bin", large, stream=True))["size"] == len(large)  # 1 MiB pieces
        assert await gw.get("/t/small.bin") == small
        assert await gw.get("/t/dir/large file.bin") == large
        assert await gw.get_verify("/t/dir/large file.bin", len(large), crc32c.crc32c(large)) == len(large)
        await gw.put("/t/small.bin", b"again")  # a PUT replaces the file
        assert await gw.get("/t/small.bin") == b"again"
        await gw.delete("/t", recursive=True)  # how the bench drops a round's files
        with pytest.raises(GatewayError, match="404"):
            await gw.get("/t/dir/large file.bin")
    finally:
        await gw.close()


async def test_missing_file_is_404_naming_the_path(floor: FloorServer) -> None:
    gw = Gateway(floor.url, connections=1, timeout=30)
    try:
        with pytest.raises(GatewayError, match=r"HTTP 404: .*no such file: /no/such thing\.bin"):
            await gw.get("/no/such thing.bin")
    finally:
        await gw.close()


def test_pipelined_requests_on_one_connection_are_answered_in_order(floor: FloorServer) -> None:
    body = os.urandom(4096)
    with _connect(floor) as sock, sock.makefile("rb") as stream:
        sock.sendall(_put_request("pipe/a", body) + f"GET {FILES}/pipe/a HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, _, answer = _read_response(stream)
        assert status == 201 and json.loads(answer) == {"size": 4096}
        status, headers, answer = _read_response(stream)
        assert status == 200 and answer == body and headers["content-length"] == "4096"
        sock.sendall(f"GET {FILES}/pipe/missing HTTP/1.1\r\nHost: x\r\n\r\n"  # the connection is still open
                     f"DELETE {FILES}/pipe/a HTTP/1.1\r\nHost: x\r\n\r\nPOST /health HTTP/1.1\r\nHost: x\r\n"
                     f"Content-Length: 0\r\n\r\n".encode())
        assert [_read_response(stream)[0] for _ in range(3)] == [404, 200, 405]


def test_body_split_across_several_sends(floor: FloorServer) -> None:
    body = os.urandom(300_000)
    request = _put_request("split/b", body)
    with _connect(floor) as sock, sock.makefile("rb") as stream:
        cuts = [0, 20, 70, 1000, 150_000, len(request)]  # the head itself cut in two, then the body in pieces
        for start, end in zip(cuts, cuts[1:]):
            sock.sendall(request[start:end])
            time.sleep(0.02)  # pacing only, so the pieces arrive apart; nothing is timed
        status, _, answer = _read_response(stream)
        assert status == 201 and json.loads(answer) == {"size": len(body)}
        sock.sendall(f"GET {FILES}/split/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        status, headers, answer = _read_response(stream)
        assert status == 200 and answer == body and headers.get("connection") == "close"
        assert stream.read() == b""  # closed after the answer it was asked to close after


def test_process_is_gone_after_stop(tmp_path: Path) -> None:
    server = FloorServer(tmp_path).start()
    (pid,) = server.pids.values()
    assert server.running() == [pid] and b"peer_floor" in Path(f"/proc/{pid}/cmdline").read_bytes()
    server.stop()
    assert server.running() == []
    assert not Path(f"/proc/{pid}").exists()  # reaped by stop, not a zombie
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
