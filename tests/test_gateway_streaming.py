"""Streaming through the gateway: bodies in odd-sized pieces, the pieces they are regrouped into."""

from __future__ import annotations

import asyncio
import http.client
import random
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from hercules_core.client.pieces import PieceAssembler, rechunk
from hercules_core.plugins.types import Buffer
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import MiB, Http, sha256


def _odd_parts(data: bytes, rng: random.Random) -> list[Buffer]:
    """``data`` cut at random places into bytes, bytearrays and memoryviews of 1 byte to 3 pieces."""
    parts: list[Buffer] = []
    pos = 0
    while pos < len(data):
        size = rng.choice([1, 7, 4095, 65537, rng.randrange(1, 300_000)])
        kind = rng.choice([bytes, bytearray, memoryview])
        parts.append(kind(data[pos:pos + size]))
        pos += size
    return parts


async def _aiter(parts: list[Buffer]) -> AsyncIterator[Buffer]:
    for part in parts:
        yield part


@pytest.mark.parametrize("seed", range(6))
def test_rechunk_gives_exact_pieces_of_odd_parts(seed: int) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(rng.randrange(0, 1_000_000))
    chunk, piece = 300_000, 65_536  # pieces never cross a chunk boundary, like the client's
    offset = rng.randrange(0, chunk)

    def next_size() -> int:
        return min(piece, chunk - offset % chunk)

    async def regroup() -> list[bytes]:
        nonlocal offset
        parts = _odd_parts(data, rng)
        out: list[bytes] = []
        async for got in rechunk(_aiter(parts) if seed % 2 else iter(parts), next_size):
            expected = next_size()
            assert len(got) == expected or len(got) < expected and offset + len(got) == start + len(data)
            out.append(bytes(got))
            offset += len(got)
        return out

    start = offset
    pieces = asyncio.run(regroup())
    assert b"".join(pieces) == data
    assert all(pieces)


def test_yielded_pieces_are_never_changed_by_later_parts() -> None:
    assembler = PieceAssembler(lambda: 8)
    source = bytearray(b"abcdefghijkl")
    first = list(assembler.add(source))
    source[:] = b"XXXXXXXXXXXX"  # the caller reuses its buffer
    later = list(assembler.add(b"mnop")) + [assembler.rest()]
    assert [bytes(p) for p in first] == [b"abcdefgh"]
    assert [bytes(p) for p in later] == [b"ijklmnop", b""]


def test_whole_bytes_pieces_are_passed_on_without_a_copy() -> None:
    part = bytes(range(16))
    pieces = list(PieceAssembler(lambda: 8).add(part))
    assert [bytes(p) for p in pieces] == [part[:8], part[8:]]
    assert all(isinstance(p, memoryview) and p.obj is part for p in pieces)


@pytest.mark.parametrize("total_error", [0, -1000, 1000])
def test_a_known_total_sizes_the_buffers_and_never_changes_the_bytes(total_error: int) -> None:
    rng = random.Random(total_error)
    data = rng.randbytes(20_000)
    assembler = PieceAssembler(lambda: 8192, total=len(data) + total_error)
    pieces = [bytes(p) for part in _odd_parts(data, rng) for p in assembler.add(part)]
    pieces.append(bytes(assembler.rest()))
    assert b"".join(pieces) == data
    if total_error == 0:  # the last piece's buffer is as small as what is left
        assert [len(p) for p in pieces] == [8192, 8192, 3616, 0]
    small = list(PieceAssembler(lambda: 4 << 20, total=4096).add(bytes(4096)))
    assert [len(p) for p in small] == [4096]  # a 4 KiB upload is one 4 KiB piece, not a 4 MiB buffer


def _send(url: str, method: str, path: str, parts: list[Buffer], length: int | None) -> tuple[int, bytes]:
    """One request whose body goes out part by part, chunked unless ``length`` is given."""
    where = urlsplit(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=120)
    try:
        headers = {"Content-Type": "application/octet-stream"}
        if length is not None:
            headers["Content-Length"] = str(length)
        conn.request(method, path, body=iter(parts), headers=headers, encode_chunked=length is None)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("chunked", [False, True])
def test_put_in_odd_pieces_stores_exact_content(cluster: LocalCluster, gw: Http, chunked: bool) -> None:
    rng = random.Random(7)
    data = rng.randbytes(5 * MiB + 12345)  # 1 MiB chunks: pieces end at chunk boundaries
    parts = _odd_parts(data, rng)
    status, body = _send(cluster.gateway_url, "PUT", f"/api/v1/files/odd/{chunked}.bin", parts,
                         None if chunked else len(data))
    assert status == 201, body
    status, headers, got = gw.request("GET", f"/api/v1/files/odd/{chunked}.bin")
    assert status == 200 and headers["content-length"] == str(len(data))
    assert sha256(got) == sha256(data)
    status, headers, got = gw.request("GET", f"/api/v1/files/odd/{chunked}.bin",
                                      headers={"Range": f"bytes={MiB - 5}-{3 * MiB + 7}"})
    assert status == 206 and got == data[MiB - 5:3 * MiB + 8]


def test_write_in_odd_pieces_at_an_offset_and_holes_read_as_zeros(cluster: LocalCluster, gw: Http) -> None:
    rng = random.Random(8)
    status, body = gw.json("POST", "/api/v1/create", {"path": "/odd/holes.bin"})
    assert status == 201, body
    head = rng.randbytes(1000)
    status, body = _send(cluster.gateway_url, "POST", "/api/v1/write?path=/odd/holes.bin&offset=0",
                         _odd_parts(head, rng), len(head))
    assert status == 200 and body and b'"written": 1000' in body
    tail = rng.randbytes(2 * MiB + 333)
    at = 3 * MiB + 100  # chunk 0 holds 1000 bytes, chunks 1 and 2 are never written
    status, body = _send(cluster.gateway_url, "POST", f"/api/v1/write?path=/odd/holes.bin&offset={at}",
                         _odd_parts(tail, rng), None)
    assert status == 200 and f'"written": {len(tail)}'.encode() in body
    status, _, got = gw.request("GET", "/api/v1/files/odd/holes.bin")
    assert status == 200
    assert got == head + bytes(at - len(head)) + tail
    status, _, got = gw.request("GET", f"/api/v1/read?path=/odd/holes.bin&offset=900&length={MiB}")
    assert status == 200 and got == head[900:] + bytes(MiB - 100)


def test_transfers_beyond_the_limit_wait_their_turn(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With HERCULES_GATEWAY_MAX_INFLIGHT=1 a download waits while an upload is streaming, then
    completes; the gateway's data in flight is bounded by the number of transfers."""
    import threading
    import time

    from tests.helpers import FAST

    settings = {**FAST, "HERCULES_GATEWAY_MAX_INFLIGHT": "1"}
    with LocalCluster(tmp_path_factory.mktemp("limited"), settings=settings) as limited:
        front = Http(limited.gateway_url)
        assert front.json("PUT", "/api/v1/files/limit/a.bin", b"a" * 1000)[0] == 201
        url = urlsplit(limited.gateway_url)
        slow = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        body = random.randbytes(2 * MiB)
        slow.putrequest("PUT", "/api/v1/files/limit/slow.bin")
        slow.putheader("Content-Length", str(len(body)))
        slow.endheaders()
        slow.send(body[:MiB])  # the upload holds the only transfer slot until the rest arrives
        got: dict[str, object] = {}

        def download() -> None:
            reader = Http(limited.gateway_url)
            got["response"] = reader.request("GET", "/api/v1/files/limit/a.bin")
            got["at"] = time.monotonic()
            reader.close()

        thread = threading.Thread(target=download)
        thread.start()
        thread.join(1.5)
        assert "response" not in got  # waiting for the slot
        finished_upload = time.monotonic()
        slow.send(body[MiB:])
        response = slow.getresponse()
        assert response.status == 201, response.read()
        thread.join(30)
        status, _, data = got["response"]  # type: ignore[misc]
        assert (status, data) == (200, b"a" * 1000)
        assert got["at"] >= finished_upload  # type: ignore[operator]
        assert front.request("GET", "/api/v1/files/limit/slow.bin")[2] == body
        slow.close()
        front.close()
