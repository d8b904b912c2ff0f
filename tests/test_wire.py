"""Codec round trips, frame parsing limits, the frame receiver and the tcp transport on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import hercules_transport_tcp as tcp
import pytest
import uvloop
from hercules_transport_tcp import connection as tcp_connection
from hercules_transport_tcp.connection import TcpConnection

from hercules_core import codec, messages as m
from hercules_core.addresses import Address
from hercules_core.errors import NotFound, ProtocolError, Unavailable
from hercules_core.framing import HEADER_SIZE, Frame, FrameLimits, Kind, parse_header
from hercules_core.plugins.types import FrameConnection
from hercules_core.receiver import DIRECT_DATA, FrameReceiver
from hercules_core.rpc import CallContext, Dispatcher, RpcConnection

T = TypeVar("T")

SAMPLES = [
    m.Ok(),
    m.ErrorReply("not_found", "gone"),
    m.Create("/a/b", 2, True),
    m.ListDir("/a", recursive=True, limit=10, cursor="x"),
    m.Register("abc", "127.0.0.1:8081", 10, 5, [m.ChunkReport(1, 2, 3), m.ChunkReport(4, 5, 6)]),
    m.Heartbeat("abc", 1, 2, 3, added=[m.ChunkReport(7, 1, 0)], removed=[9], lease_extensions=[7]),
    m.HeartbeatReply(True, [1, 2], [m.LeaseExtension(7, 3, 60.0)]),
    m.ChunkLocation(12, 0, 3, ["a:1", "b:2"], "a:1", 123.5),
    m.Listing([m.FileInfo("/x", 2, False, 10, 3, 1, 1.0, 2.0)], "x"),
    m.Pong("master", {"chunk_size": 1 << 20}),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda msg: type(msg).__name__)
def test_round_trip(msg: object) -> None:
    assert codec.decode(codec.encode(msg)) == msg


@pytest.mark.parametrize("raw", [b"\x00", b"\x92\xa4nope\x80", b"\x92\xa4stat\x80", b"\x92\xa4stat\x81\xa4path\x05",
                                 b"\xc1", b""])
def test_malformed_messages_raise_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        codec.decode(raw)


def test_header_round_trip_and_limits() -> None:
    limits = FrameLimits(max_meta=100, max_data=1000)
    frame = Frame(Kind.REQUEST, 7, b"x" * 10, b"y" * 1000)
    header = parse_header(frame.header(), limits)
    assert (header.kind, header.request_id, header.meta_len, header.data_len) == (Kind.REQUEST, 7, 10, 1000)
    with pytest.raises(ProtocolError, match="exceeds the 1000-byte frame limit"):
        parse_header(Frame(Kind.REQUEST, 1, b"x", b"y" * 1001).header(), limits)
    with pytest.raises(ProtocolError, match="outside 1..100"):
        parse_header(Frame(Kind.REQUEST, 1, b"x" * 101).header(), limits)
    with pytest.raises(ProtocolError, match="bad frame magic"):
        parse_header(b"GET / HTTP/1.1\r\n"[:HEADER_SIZE], limits)


# --- receiving frames: the sans-I/O receiver ------------------------------------------------------


def _frames(count: int, data_size: int = 0) -> list[Frame]:
    return [Frame(Kind.REQUEST, i, b"m%d" % i, bytes([i % 251]) * data_size) for i in range(count)]


def _wire(frames: list[Frame]) -> bytes:
    return b"".join(f.header() + f.meta + bytes(f.data) for f in frames)


def _feed(rx: FrameReceiver, raw: bytes, step: int) -> None:
    """Push ``raw`` through the receiver as the event loop would, at most ``step`` bytes per read."""
    pos = 0
    while pos < len(raw):
        buf = rx.get_buffer()
        n = min(len(buf), step, len(raw) - pos)
        buf[:n] = raw[pos:pos + n]
        rx.buffer_updated(n)
        pos += n


@pytest.mark.parametrize("step", [1, 7, HEADER_SIZE, 4096, 1 << 30])
@pytest.mark.parametrize("data_size", [0, 100, DIRECT_DATA - 1, DIRECT_DATA, 300_000])
def test_receiver_reassembles_frames_however_the_bytes_arrive(step: int, data_size: int) -> None:
    sent = _frames(5, data_size)
    rx = FrameReceiver(FrameLimits(), buffer_size=64 << 10)
    if step == 1 and data_size > 1000:
        step = 997  # byte by byte through the big frames takes too long; an odd size still splits headers
    _feed(rx, _wire(sent), step)
    assert list(rx.frames) == sent
    assert rx.queued_bytes == sum(len(f.meta) + len(f.data) for f in sent)
    assert not rx.inside_frame


def test_large_data_is_received_in_place_into_its_own_buffer() -> None:
    frame = Frame(Kind.RESPONSE, 9, b"meta", bytes(range(256)) * 4096)  # 1 MiB
    rx = FrameReceiver(FrameLimits())
    raw = _wire([frame])
    _feed(rx, raw[:HEADER_SIZE + 4 + 10], 1 << 30)
    target = rx.get_buffer()
    assert len(target) == len(frame.data) - 10  # exactly the rest of the data part: nothing else lands there
    target[:] = raw[HEADER_SIZE + 4 + 10:]
    rx.buffer_updated(len(target))
    (got,) = rx.frames
    assert isinstance(got.data, bytearray) and got.data == frame.data and got.meta == b"meta"


def test_frames_never_alias_the_reused_buffer() -> None:
    rx = FrameReceiver(FrameLimits(), buffer_size=64 << 10)
    first, second = _frames(1, 1000), [Frame(Kind.REQUEST, 5, b"zz", b"\xff" * 1000)] * 200
    _feed(rx, _wire(first), 1 << 30)
    kept = rx.frames.popleft()
    _feed(rx, _wire(second), 1 << 30)  # wraps around the 64 KiB buffer several times
    assert kept == first[0]


def test_outsized_message_grows_the_buffer_then_it_shrinks_back() -> None:
    rx = FrameReceiver(FrameLimits(), buffer_size=64 << 10)
    big = Frame(Kind.REQUEST, 1, b"x" * (200 << 10))
    _feed(rx, _wire([big, *_frames(3)]), 1 << 30)
    assert list(rx.frames) == [big, *_frames(3)]
    assert len(rx.get_buffer()) == 64 << 10


def test_receiver_rejects_a_malformed_header_after_the_good_frames() -> None:
    rx = FrameReceiver(FrameLimits())
    with pytest.raises(ProtocolError, match="bad frame magic"):
        _feed(rx, _wire(_frames(2)) + b"GET / HTTP/1.1\r\n\r\n", 1 << 30)
    assert list(rx.frames) == _frames(2)


# --- the tcp transport over real sockets, on both event loops -------------------------------------

LIMITS = FrameLimits()


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, T]], T]:
    return asyncio.run if request.param == "asyncio" else uvloop.run  # type: ignore[return-value]


class Collector:
    """A tcp server that hands over every connection it accepts and reads nothing itself."""

    async def __aenter__(self) -> Collector:
        self._conns: asyncio.Queue[FrameConnection] = asyncio.Queue()
        self._done = asyncio.Event()
        self._server = await tcp.serve(Address("127.0.0.1", 0), self._handle, LIMITS)
        self.address = self._server.address
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._done.set()
        self._server.close()

    async def _handle(self, conn: FrameConnection) -> None:
        await self._conns.put(conn)
        await self._done.wait()

    async def accept(self) -> TcpConnection:
        conn = await self._conns.get()
        assert isinstance(conn, TcpConnection)
        return conn


@contextlib.asynccontextmanager
async def serving(dispatcher: Dispatcher) -> AsyncIterator[Address]:
    server = await tcp.serve(Address("127.0.0.1", 0), dispatcher.serve_connection, LIMITS)
    try:
        yield server.address
    finally:
        server.close()
        await dispatcher.aclose()


async def _read_all(conn: FrameConnection) -> list[Frame]:
    frames = []
    try:
        while True:
            frames.append(await conn.read_frame())
    except EOFError:
        return frames


def test_many_frames_in_one_segment_and_one_frame_over_many(run: Callable[..., Any]) -> None:
    sent = _frames(300, 10) + [Frame(Kind.REQUEST, 999, b"big", bytes(range(256)) * 1000)]

    async def main() -> list[Frame]:
        async with Collector() as server:
            sock = socket.create_connection(("127.0.0.1", server.address.port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = await server.accept()
            raw = _wire(sent)
            sock.sendall(raw[:-(256 * 1000 + 19)])  # 300 frames in one send
            for i in range(len(raw) - (256 * 1000 + 19), len(raw), 4099):  # the last in many small ones
                sock.sendall(raw[i:i + 4099])
                await asyncio.sleep(0)
            sock.shutdown(socket.SHUT_WR)
            got = await _read_all(conn)
            sock.close()
        return got

    assert run(main()) == sent


def test_big_frame_round_trip_owns_its_data(run: Callable[..., Any]) -> None:
    payload = bytes(range(256)) * (40 << 10)  # 10 MiB: several write pieces, read in place

    async def main() -> None:
        async with Collector() as server:
            client = await tcp.connect(server.address, LIMITS)
            peer = await server.accept()
            await client.write_frame(Frame(Kind.REQUEST, 1, b"m", memoryview(payload)))
            await client.write_frame(Frame(Kind.REQUEST, 2, b"n", b"\x00" * len(payload)))
            first = await peer.read_frame()
            second = await peer.read_frame()
            assert (first.request_id, first.meta, second.request_id) == (1, b"m", 2)
            assert isinstance(first.data, bytearray) and len(first.data) == len(payload)
            assert first.data == payload and second.data == b"\x00" * len(payload)
            client.close()
            await client.wait_closed()
            with pytest.raises(EOFError):
                await peer.read_frame()

    run(main())


def test_eof_inside_a_frame_is_a_protocol_error(run: Callable[..., Any]) -> None:
    async def main() -> None:
        async with Collector() as server:
            sock = socket.create_connection(("127.0.0.1", server.address.port))
            conn = await server.accept()
            sock.sendall(_wire(_frames(1, 100))[:-5])
            sock.shutdown(socket.SHUT_WR)
            with pytest.raises(ProtocolError, match="closed inside a frame"):
                await conn.read_frame()
            sock.close()

    run(main())


def test_a_half_closed_peer_still_gets_answers(run: Callable[..., Any]) -> None:
    async def main() -> bytes:
        async with Collector() as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.address.port)
            conn = await server.accept()
            writer.write(_wire(_frames(1)))
            writer.write_eof()
            assert await _read_all(conn) == _frames(1)  # the request, then EOF
            answer = Frame(Kind.RESPONSE, 0, b"answer", b"data")
            await conn.write_frame(answer)
            conn.close()
            got = await reader.read()
            writer.close()
            return got

    assert run(main()) == _wire([Frame(Kind.RESPONSE, 0, b"answer", b"data")])


def test_malformed_header_closes_only_that_connection(run: Callable[..., Any]) -> None:
    async def main() -> None:
        dispatcher = Dispatcher("test")

        @dispatcher.on(m.Ping)
        async def ping(msg: m.Ping, data: memoryview, ctx: CallContext) -> tuple[m.Pong, bytes]:
            return m.Pong("test"), bytes(data)

        async with serving(dispatcher) as address:
            good = RpcConnection(await tcp.connect(address, LIMITS))
            assert await good.call(m.Ping(), b"hi") == (m.Pong("test"), b"hi")
            bad_reader, bad_writer = await asyncio.open_connection("127.0.0.1", address.port)
            bad_writer.write(_wire([Frame(Kind.REQUEST, 1, codec.encode(m.Ping()))]) + b"GET / HTTP/1.1\r\n\r\n")
            await bad_reader.read()  # returns at EOF: the server closed this connection
            assert await good.call(m.Ping(), b"still") == (m.Pong("test"), b"still")
            bad_writer.close()
            good.close()

    run(main())


def test_backpressure_bounds_unread_frames_and_blocks_the_writer(
        run: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcp_connection, "MAX_UNREAD_BYTES", 1 << 20)
    piece = 256 << 10
    count = 128  # 32 MiB: more than the kernel's socket buffers, the write buffer and the unread limit

    async def main() -> None:
        async with Collector() as server:
            client = await tcp.connect(server.address, LIMITS)
            peer = await server.accept()

            async def write_all() -> None:
                for i in range(count):
                    await client.write_frame(Frame(Kind.REQUEST, i, b"m", bytes([i]) * piece))

            writer = asyncio.ensure_future(write_all())
            while not peer.reading_paused:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # anything still in flight lands; the writer must not get further
            assert peer.unread_bytes <= (1 << 20) + piece
            assert not writer.done()
            for i in range(count):  # reading resumes the transfer, and every frame arrives intact
                frame = await peer.read_frame()
                assert frame.request_id == i and frame.data == bytes([i]) * piece
            await writer
            client.close()

    run(main())


def test_rpc_error_mapping_and_timeout(run: Callable[..., Any]) -> None:
    async def main() -> None:
        dispatcher = Dispatcher("test")
        release = asyncio.Event()

        @dispatcher.on(m.Ping)
        async def ping(msg: m.Ping, data: memoryview, ctx: CallContext) -> m.Pong:
            if data == b"slow":
                await release.wait()
            if data == b"missing":
                raise NotFound("no such thing")
            return m.Pong("test")

        async with serving(dispatcher) as address:
            conn = RpcConnection(await tcp.connect(address, LIMITS))
            with pytest.raises(NotFound, match="no such thing"):
                await conn.call(m.Ping(), b"missing")
            assert (await conn.call(m.Ping()))[0] == m.Pong("test")
            with pytest.raises(Unavailable, match="did not answer Ping in 0.05s"):
                await conn.call(m.Ping(), b"slow", timeout=0.05)
            assert conn.closed  # a peer that does not answer in time is re-dialled by the pool
            release.set()

    run(main())
