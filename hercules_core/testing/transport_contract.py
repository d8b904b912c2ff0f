"""The behaviour every transport must show; transport plugins run it against themselves.

Subclass ``TransportContract`` in a test module under a name pytest collects (``Test...``) and
say which transport to test::

    from hercules_core.plugins import make_plugin_manager
    from hercules_core.testing.transport_contract import TransportContract

    class TestUnixTransport(TransportContract):
        def transport(self):
            return make_plugin_manager().transport("unix")

        def listen_address(self):  # optional: where ``serve`` is asked to listen
            return Address("127.0.0.1", 0)

Every test serves and dials for real on loopback (port 0: the server reports the port it took)
and runs with pytest-asyncio. What is checked is what the RPC layer relies on: whole frames in
order with their data untouched, writers that never interleave, per-frame limits enforced by the
receiver, a malformed frame that ends only its own connection, and clean close semantics (EOF
after the frames already sent, ``ConnectionError`` when writing to a closed connection).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from hercules_core.addresses import Address
from hercules_core.errors import ProtocolError
from hercules_core.framing import Frame, FrameLimits, Kind
from hercules_core.plugins.types import FrameConnection, FrameServer, PushFrameConnection, TransportSpec

GUARD = 20.0  # seconds: a bound that turns a hang into a failure, never a timing assertion
ENDED = (EOFError, ConnectionError, OSError, ProtocolError)  # how a read may learn its connection ended


def pattern(size: int, seed: int = 0) -> bytes:
    """Deterministic bytes that differ from frame to frame, so a mixed-up frame is noticed."""
    block = bytes((seed * 31 + i) % 251 for i in range(251))
    return (block * (size // len(block) + 1))[:size]


async def guarded(awaitable):  # noqa: ANN001, ANN201 - any awaitable, its result
    return await asyncio.wait_for(awaitable, GUARD)


class Served:
    """One running server: the connections it accepted and what their handlers saw."""

    def __init__(self) -> None:
        self.server: FrameServer | None = None
        self.accepted: list[FrameConnection] = []
        self.errors: list[BaseException] = []  # how each handler's reading ended, if not by EOF
        self.received: list[Frame] = []
        self.eofs = 0
        self.changed = asyncio.Condition()

    @property
    def address(self) -> Address:
        assert self.server is not None
        return self.server.address

    async def wait_for(self, predicate) -> None:  # noqa: ANN001 - a no-argument callable
        async def waiting() -> None:
            async with self.changed:
                await self.changed.wait_for(predicate)

        await guarded(waiting())

    async def note(self, **changes: object) -> None:
        async with self.changed:
            for name, value in changes.items():
                if name == "frame":
                    self.received.append(value)  # type: ignore[arg-type]
                elif name == "error":
                    self.errors.append(value)  # type: ignore[arg-type]
                elif name == "eof":
                    self.eofs += 1
            self.changed.notify_all()


class TransportContract:
    """Base class of the contract tests; override ``transport`` (and maybe ``listen_address``).

    Not collected itself (its name does not start with ``Test``); each subclass is.
    """

    pytestmark = pytest.mark.asyncio

    # -- what a subclass provides ---------------------------------------------------

    def transport(self) -> TransportSpec:
        """The ``TransportSpec`` under test, usually ``make_plugin_manager().transport(name)``."""
        raise NotImplementedError("subclass TransportContract and implement transport()")

    def listen_address(self) -> Address:
        """Where ``serve`` listens; port 0 asks for any free port (the server reports the real one)."""
        return Address("127.0.0.1", 0)

    # -- helpers ----------------------------------------------------------------------

    @asynccontextmanager
    async def serving(self, limits: FrameLimits = FrameLimits(), echo: bool = True) -> AsyncIterator[Served]:
        """A server whose handler reads until the connection ends, echoing each frame as a response."""
        served = Served()

        async def handler(conn: FrameConnection) -> None:
            served.accepted.append(conn)
            while True:
                try:
                    frame = await conn.read_frame()
                except EOFError:
                    await served.note(eof=True)
                    return
                except Exception as exc:  # noqa: BLE001 - recorded, the test judges it
                    await served.note(error=exc)
                    conn.close()
                    return
                await served.note(frame=frame)
                if echo:
                    await conn.write_frame(Frame(Kind.RESPONSE, frame.request_id, frame.meta, frame.data))

        served.server = await guarded(self.transport().serve(self.listen_address(), handler, limits))
        try:
            yield served
        finally:
            for conn in served.accepted:
                conn.close()
            served.server.close()
            await guarded(served.server.wait_closed())

    async def dial(self, served: Served, limits: FrameLimits = FrameLimits()) -> FrameConnection:
        return await guarded(self.transport().connect(served.address, limits))

    @asynccontextmanager
    async def connected(self, limits: FrameLimits = FrameLimits(),
                        echo: bool = True) -> AsyncIterator[tuple[Served, FrameConnection]]:
        """A server (see ``serving``) and one connection to it, closed on the way out."""
        async with self.serving(limits, echo) as served:
            conn = await self.dial(served, limits)
            try:
                yield served, conn
            finally:
                conn.close()

    @staticmethod
    async def call(conn: FrameConnection, frame: Frame) -> Frame:
        await guarded(conn.write_frame(frame))
        return await guarded(conn.read_frame())

    @staticmethod
    def assert_echo(sent: Frame, got: Frame) -> None:
        assert (got.kind, got.request_id, bytes(got.meta)) == (Kind.RESPONSE, sent.request_id, bytes(sent.meta))
        assert len(got.data) == len(sent.data)
        assert bytes(got.data) == bytes(sent.data), f"frame {sent.request_id}: data changed on the way"

    # -- connect and serve ------------------------------------------------------------

    async def test_serve_reports_where_it_listens_and_connect_dials_it(self) -> None:
        async with self.serving() as served:
            assert isinstance(served.server, FrameServer)
            assert served.address.port != 0, "serve on port 0 must report the port it took"
            conn = await self.dial(served)
            try:
                assert isinstance(conn, FrameConnection)
                assert isinstance(conn.peer, str) and conn.peer
                sent = Frame(Kind.REQUEST, 1, b"hello")
                self.assert_echo(sent, await self.call(conn, sent))
                assert isinstance(served.accepted[0], FrameConnection)
                assert isinstance(served.accepted[0].peer, str) and served.accepted[0].peer
            finally:
                conn.close()

    async def test_connect_where_nothing_listens_fails(self) -> None:
        async with self.serving() as served:
            address = served.address
        with pytest.raises(OSError):  # ConnectionRefusedError is one
            conn = await guarded(self.transport().connect(address, FrameLimits()))
            conn.close()

    async def test_a_closed_server_accepts_no_new_connection(self) -> None:
        async with self.serving() as served:
            assert served.server is not None
            served.server.close()
            await guarded(served.server.wait_closed())
            with pytest.raises(OSError):
                conn = await self.dial(served)
                try:  # a transport that accepts lazily must at least end the connection at once
                    await self.call(conn, Frame(Kind.REQUEST, 1, b"anyone?"))
                finally:
                    conn.close()

    # -- frames -----------------------------------------------------------------------

    @pytest.mark.parametrize("size", [0, 1, 1000, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, (1 << 20) + 3])
    async def test_frames_round_trip_with_their_data(self, size: int) -> None:
        async with self.connected() as (served, conn):
            for n, data in enumerate([pattern(size, 1), bytearray(pattern(size, 2)),
                                      memoryview(b"--" + pattern(size, 3) + b"--")[2:2 + size]]):
                sent = Frame(Kind.REQUEST, 1000 + n, b"meta-%d" % n, data)
                self.assert_echo(sent, await self.call(conn, sent))

    async def test_kind_request_id_and_meta_pass_unchanged(self) -> None:
        async with self.connected(echo=False) as (served, conn):
            sent = [Frame(Kind.REQUEST, 0, b"\x00"), Frame(Kind.RESPONSE, 2**32 - 1, bytes(range(256))),
                    Frame(Kind.REQUEST, 7, b"m" * (64 * 1024), b"d")]
            for frame in sent:
                await guarded(conn.write_frame(frame))
            await served.wait_for(lambda: len(served.received) == len(sent))
            assert [(f.kind, f.request_id, bytes(f.meta), bytes(f.data)) for f in served.received] == [
                (f.kind, f.request_id, f.meta, f.data) for f in sent]

    async def test_frames_arrive_in_the_order_they_were_written(self) -> None:
        async with self.connected() as (served, conn):
            frames = [Frame(Kind.REQUEST, n, b"%d" % n, pattern(n * 37, n)) for n in range(500)]
            for frame in frames:  # all written before any answer is read
                await guarded(conn.write_frame(frame))
            for frame in frames:
                self.assert_echo(frame, await guarded(conn.read_frame()))

    async def test_concurrent_writers_never_interleave_frames(self) -> None:
        async with self.connected() as (served, conn):
            async def writer(w: int) -> None:
                for n in range(10):
                    rid = w * 100 + n
                    await conn.write_frame(Frame(Kind.REQUEST, rid, b"w%d" % rid, pattern(100_000 + rid, rid)))

            await guarded(asyncio.gather(*(writer(w) for w in range(16))))
            answers = [await guarded(conn.read_frame()) for _ in range(160)]
            assert sorted(f.request_id for f in answers) == sorted(w * 100 + n for w in range(16) for n in range(10))
            for got in answers:
                rid = got.request_id
                self.assert_echo(Frame(Kind.REQUEST, rid, b"w%d" % rid, pattern(100_000 + rid, rid)), got)

    async def test_a_frame_at_the_limits_passes(self) -> None:
        limits = FrameLimits(max_meta=4096, max_data=2 << 20)
        async with self.serving(limits) as served:
            conn = await self.dial(served, limits)
            try:
                sent = Frame(Kind.REQUEST, 9, b"m" * limits.max_meta, pattern(limits.max_data, 9))
                self.assert_echo(sent, await self.call(conn, sent))
            finally:
                conn.close()

    async def test_many_connections_at_once(self) -> None:
        async with self.serving() as served:
            conns = [await self.dial(served) for _ in range(20)]
            try:
                frames = [Frame(Kind.REQUEST, n, b"c%d" % n, pattern(5000, n)) for n in range(len(conns))]
                answers = await guarded(asyncio.gather(*(self.call(c, f) for c, f in zip(conns, frames))))
                for sent, got in zip(frames, answers):
                    self.assert_echo(sent, got)
            finally:
                for conn in conns:
                    conn.close()

    # -- limits and malformed frames ------------------------------------------------------

    @pytest.mark.parametrize("bad", [
        Frame(Kind.REQUEST, 1, b"m", bytes(64 * 1024 + 1)),  # data over the receiver's limit
        Frame(Kind.REQUEST, 1, b"m" * 1025),  # meta over the receiver's limit
        Frame(Kind.REQUEST, 1, b""),  # a frame without a message
        Frame(9, 1, b"m"),  # type: ignore[arg-type] # an unknown kind
    ], ids=["data-over-limit", "meta-over-limit", "empty-meta", "unknown-kind"])
    async def test_a_malformed_frame_closes_only_its_connection(self, bad: Frame) -> None:
        limits = FrameLimits(max_meta=1024, max_data=64 * 1024)
        async with self.serving(limits) as served:
            good = await self.dial(served)
            bad_conn = await self.dial(served, FrameLimits(max_meta=1 << 20, max_data=1 << 20))
            try:
                ok = Frame(Kind.REQUEST, 2, b"fine", pattern(1000))
                self.assert_echo(ok, await self.call(good, ok))
                try:
                    await guarded(bad_conn.write_frame(bad))
                except (ConnectionError, ProtocolError):
                    pass  # refused before sending: fine too
                else:
                    await served.wait_for(lambda: served.errors)
                    assert isinstance(served.errors[0], ProtocolError), served.errors
                    with pytest.raises(ENDED):  # the connection ends: its reader is told
                        await guarded(bad_conn.read_frame())
                self.assert_echo(ok, await self.call(good, ok))  # the other connection is untouched
                again = await self.dial(served)  # and the server still accepts
                try:
                    self.assert_echo(ok, await self.call(again, ok))
                finally:
                    again.close()
            finally:
                good.close()
                bad_conn.close()

    # -- frames by callback (optional: ``PushFrameConnection``) ------------------------------

    async def test_delivered_frames_come_in_order_then_the_end_once(self) -> None:
        async with self.serving(echo=False) as served:
            conn = await self.dial(served)
            if not isinstance(conn, PushFrameConnection):
                conn.close()
                pytest.skip("this transport offers read_frame only (deliver is optional)")
            sent = [Frame(Kind.REQUEST, n, b"m%d" % n, pattern(n * 997 % 100_000, n)) for n in range(40)]
            for frame in sent:
                await guarded(conn.write_frame(frame))
            await served.wait_for(lambda: len(served.received) == len(sent))
            got: list[Frame] = []
            ends: list[BaseException] = []
            ended = asyncio.Event()
            for frame in served.received[:20]:  # 20 echoes queue before delivery starts, 20 after
                await guarded(served.accepted[0].write_frame(Frame(Kind.RESPONSE, frame.request_id, frame.meta,
                                                                   frame.data)))
            conn.deliver(got.append, lambda exc: (ends.append(exc), ended.set()))
            for frame in served.received[20:]:
                await guarded(served.accepted[0].write_frame(Frame(Kind.RESPONSE, frame.request_id, frame.meta,
                                                                   frame.data)))
            served.accepted[0].close()
            await guarded(ended.wait())
            assert len(got) == len(sent)
            for frame, echo in zip(sent, got):
                self.assert_echo(frame, echo)
            assert len(ends) == 1 and isinstance(ends[0], EOFError)
            conn.close()

    # -- close semantics ------------------------------------------------------------------

    async def test_close_is_eof_after_the_frames_already_written(self) -> None:
        async with self.serving(echo=False) as served:
            conn = await self.dial(served)
            for n in range(3):
                await guarded(conn.write_frame(Frame(Kind.REQUEST, n, b"last words", pattern(70_000, n))))
            conn.close()
            await guarded(conn.wait_closed())
            await served.wait_for(lambda: served.eofs == 1 or served.errors)
            assert served.errors == [] and served.eofs == 1
            assert [f.request_id for f in served.received] == [0, 1, 2]
            assert all(bytes(f.data) == pattern(70_000, f.request_id) for f in served.received)

    async def test_a_server_side_close_is_eof_at_the_client(self) -> None:
        async with self.connected(echo=False) as (served, conn):
            await guarded(conn.write_frame(Frame(Kind.REQUEST, 1, b"hi")))
            await served.wait_for(lambda: served.received)
            server_side = served.accepted[0]
            await guarded(server_side.write_frame(Frame(Kind.RESPONSE, 1, b"bye", b"data")))
            server_side.close()
            await guarded(server_side.wait_closed())
            got = await guarded(conn.read_frame())  # what was sent before the close arrives first
            assert (got.request_id, bytes(got.meta), bytes(got.data)) == (1, b"bye", b"data")
            with pytest.raises(EOFError):
                await guarded(conn.read_frame())

    async def test_writing_to_a_closed_connection_raises_connection_error(self) -> None:
        async with self.serving() as served:
            conn = await self.dial(served)
            conn.close()
            await guarded(conn.wait_closed())
            with pytest.raises(ConnectionError):
                await guarded(conn.write_frame(Frame(Kind.REQUEST, 1, b"too late")))

    async def test_close_twice_and_wait_closed_twice_are_harmless(self) -> None:
        async with self.serving() as served:
            conn = await self.dial(served)
            conn.close()
            conn.close()
            await guarded(conn.wait_closed())
            await guarded(conn.wait_closed())

    async def test_a_failing_handler_ends_only_its_connection(self) -> None:
        calls = 0

        async def handler(conn: FrameConnection) -> None:
            nonlocal calls
            calls += 1
            frame = await conn.read_frame()
            if calls == 1:
                raise RuntimeError("a handler bug")
            await conn.write_frame(Frame(Kind.RESPONSE, frame.request_id, frame.meta))
            try:
                await conn.read_frame()
            except ENDED:
                pass

        server = await guarded(self.transport().serve(self.listen_address(), handler, FrameLimits()))
        try:
            first = await guarded(self.transport().connect(server.address, FrameLimits()))
            await guarded(first.write_frame(Frame(Kind.REQUEST, 1, b"crash")))
            with pytest.raises(ENDED):  # the failed handler's connection is closed for it
                await guarded(first.read_frame())
            first.close()
            second = await guarded(self.transport().connect(server.address, FrameLimits()))
            try:
                sent = Frame(Kind.REQUEST, 2, b"still there?")
                self.assert_echo(sent, await self.call(second, sent))
            finally:
                second.close()
        finally:
            server.close()
            await guarded(server.wait_closed())


__all__ = ["TransportContract", "pattern"]
