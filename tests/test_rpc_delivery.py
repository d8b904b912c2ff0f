"""Frames by callback: eager first steps, push delivery in the tcp transport, and the RPC layer on both
paths (``deliver`` and the read loop of transports without it), limits and ordering kept."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import hercules_transport_tcp as tcp
import pytest
import uvloop
from hercules_transport_tcp.connection import TcpConnection

from hercules_core import eager, messages as m
from hercules_core.addresses import Address
from hercules_core.errors import ProtocolError, Unavailable
from hercules_core.framing import Frame, FrameLimits, Kind
from hercules_core.plugins.types import FrameConnection, PushFrameConnection
from hercules_core.rpc import CallContext, Dispatcher, RpcConnection, ServeLimits

LIMITS = FrameLimits()
GUARD = 20.0  # a hang becomes a failure; never a timing assertion
VAR: contextvars.ContextVar[str] = contextvars.ContextVar("test_rpc_delivery", default="unset")


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    return asyncio.run if request.param == "asyncio" else uvloop.run  # type: ignore[return-value]


class ReadOnly:
    """A ``FrameConnection`` without ``deliver``: what a third-party transport may offer."""

    def __init__(self, inner: FrameConnection) -> None:
        self._inner = inner
        self.peer = inner.peer

    async def read_frame(self) -> Frame:
        return await self._inner.read_frame()

    async def write_frame(self, frame: Frame) -> None:
        await self._inner.write_frame(frame)

    def close(self) -> None:
        self._inner.close()

    async def wait_closed(self) -> None:
        await self._inner.wait_closed()


# -- eager ------------------------------------------------------------------------------------


def test_a_coroutine_that_does_not_suspend_finishes_without_a_task(run: Callable[..., Any]) -> None:
    async def main() -> None:
        seen: list[str] = []

        async def quick() -> None:
            seen.append("ran")

        before = len(asyncio.all_tasks())
        assert eager.start(quick(), asyncio.get_running_loop()) is None
        assert seen == ["ran"] and len(asyncio.all_tasks()) == before

    run(main())


def test_a_suspending_coroutine_carries_on_in_a_task_with_its_context(run: Callable[..., Any]) -> None:
    async def main() -> None:
        gate = asyncio.Event()

        async def slow() -> str:
            VAR.set("inside")
            await gate.wait()
            await asyncio.sleep(0)
            return VAR.get()

        task = eager.start(slow(), asyncio.get_running_loop())
        assert task is not None and not task.done()
        assert VAR.get() == "unset"  # the coroutine's context is its own
        gate.set()
        assert await asyncio.wait_for(task, GUARD) == "inside"

    run(main())


def test_cancelling_the_task_reaches_the_coroutine(run: Callable[..., Any]) -> None:
    async def main() -> None:
        cleaned: list[bool] = []

        async def forever() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                cleaned.append(True)

        task = eager.start(forever(), asyncio.get_running_loop())
        assert task is not None
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cleaned == [True]

    run(main())


# -- push delivery in the tcp transport -------------------------------------------------------


class Accepting:
    """A tcp server handing over the connections it accepts (reading nothing itself)."""

    async def __aenter__(self) -> Accepting:
        self.conns: asyncio.Queue[TcpConnection] = asyncio.Queue()
        self._done = asyncio.Event()
        self._server = await tcp.serve(Address("127.0.0.1", 0), self._handle, LIMITS)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._done.set()
        self._server.close()

    async def _handle(self, conn: FrameConnection) -> None:
        assert isinstance(conn, TcpConnection)
        await self.conns.put(conn)
        await self._done.wait()

    async def dial(self) -> tuple[TcpConnection, TcpConnection]:
        client = await tcp.connect(self._server.address, LIMITS)
        return client, await asyncio.wait_for(self.conns.get(), GUARD)


def test_delivered_frames_come_in_order_then_the_end_once(run: Callable[..., Any]) -> None:
    async def main() -> None:
        async with Accepting() as server:
            client, peer = await server.dial()
            assert isinstance(peer, PushFrameConnection)
            for i in range(3):  # queued before delivery starts: handed over first
                await client.write_frame(Frame(Kind.REQUEST, i, b"m", bytes([i]) * 10))
            while len(peer._rx.frames) < 3:
                await asyncio.sleep(0.01)
            got: list[Frame] = []
            ends: list[BaseException] = []
            ended = asyncio.Event()

            def on_end(exc: BaseException) -> None:
                ends.append(exc)
                ended.set()

            peer.deliver(got.append, on_end)
            for i in range(3, 500):
                await client.write_frame(Frame(Kind.REQUEST, i, b"m", bytes([i % 256]) * (i % 70_000)))
            client.close()
            await asyncio.wait_for(ended.wait(), GUARD)
            assert [f.request_id for f in got] == list(range(500))
            assert all(f.data == bytes([i % 256]) * (i % 70_000 if i >= 3 else 10) for i, f in enumerate(got))
            assert len(ends) == 1 and isinstance(ends[0], EOFError)
            with pytest.raises(EOFError):
                await peer.read_frame()

    run(main())


def test_paused_delivery_holds_frames_and_a_raising_callback_ends_the_stream(run: Callable[..., Any]) -> None:
    async def main() -> None:
        async with Accepting() as server:
            client, peer = await server.dial()
            got: list[Frame] = []
            ends: list[BaseException] = []

            def on_frame(frame: Frame) -> None:
                got.append(frame)
                if frame.request_id == 1:
                    peer.pause_delivery()
                if frame.request_id == 3:
                    raise ProtocolError("expected a request frame")

            peer.deliver(on_frame, ends.append)
            for i in range(1, 5):
                await client.write_frame(Frame(Kind.REQUEST, i, b"m"))
            while len(peer._rx.frames) < 3:
                await asyncio.sleep(0.01)
            assert [f.request_id for f in got] == [1]
            peer.resume_delivery()
            assert [f.request_id for f in got] == [1, 2, 3]  # frame 4 is dropped with the stream
            assert len(ends) == 1 and isinstance(ends[0], ProtocolError)
            with pytest.raises(ConnectionError):
                await asyncio.wait_for(_read_until_closed(client), GUARD)

    run(main())


async def _read_until_closed(conn: FrameConnection) -> None:
    while True:
        try:
            await conn.read_frame()
        except EOFError:
            raise ConnectionResetError from None


def test_frames_written_just_before_close_still_leave(run: Callable[..., Any]) -> None:
    async def main() -> None:
        async with Accepting() as server:
            client, peer = await server.dial()
            for i in range(50):
                await client.write_frame(Frame(Kind.REQUEST, i, b"m", b"x" * i))
            client.close()  # in the same turn of the loop: the corked frames must go first
            got = []
            with contextlib.suppress(EOFError):
                while True:
                    got.append(await asyncio.wait_for(peer.read_frame(), GUARD))
            assert [(f.request_id, bytes(f.data)) for f in got] == [(i, b"x" * i) for i in range(50)]

    run(main())


# -- the RPC layer on both paths --------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(dispatcher: Dispatcher, wrap: bool) -> AsyncIterator[Address]:
    async def handle(conn: FrameConnection) -> None:
        await dispatcher.serve_connection(ReadOnly(conn) if wrap else conn)

    server = await tcp.serve(Address("127.0.0.1", 0), handle, LIMITS)
    try:
        yield server.address
    finally:
        server.close()
        await dispatcher.aclose()


def echo_dispatcher(max_in_flight: int = 256) -> tuple[Dispatcher, asyncio.Event, list[int]]:
    """Ping answers with its data; ``b"slow..."`` waits for the event, and the open slow ones are counted."""
    dispatcher = Dispatcher("test")
    dispatcher.limits = ServeLimits(max_in_flight=max_in_flight)
    release = asyncio.Event()
    open_now = [0, 0]  # now, most seen

    @dispatcher.on(m.Ping)
    async def ping(msg: m.Ping, data: memoryview, ctx: CallContext) -> tuple[m.Pong, bytes]:
        if bytes(data).startswith(b"slow"):
            open_now[0] += 1
            open_now[1] = max(open_now)
            try:
                await release.wait()
            finally:
                open_now[0] -= 1
        return m.Pong("test"), bytes(data)

    return dispatcher, release, open_now


@pytest.mark.parametrize("wrap", [False, True], ids=["deliver", "read_frame"])
def test_inline_and_suspending_answers_match_their_calls(run: Callable[..., Any], wrap: bool) -> None:
    async def main() -> None:
        dispatcher, release, _ = echo_dispatcher()
        async with serving(dispatcher, wrap) as address:
            raw = await tcp.connect(address, LIMITS)
            conn = RpcConnection(ReadOnly(raw) if wrap else raw)
            payloads = [(b"slow%d" if i % 7 == 0 else b"quick%d") % i for i in range(300)]
            calls = [asyncio.ensure_future(conn.call(m.Ping(), p, timeout=GUARD)) for p in payloads]
            await asyncio.sleep(0.05)
            release.set()
            answers = await asyncio.wait_for(asyncio.gather(*calls), GUARD)
            assert [bytes(data) for _, data in answers] == payloads
            conn.close()

    run(main())


@pytest.mark.parametrize("wrap", [False, True], ids=["deliver", "read_frame"])
def test_requests_past_max_in_flight_wait_for_a_slot(run: Callable[..., Any], wrap: bool) -> None:
    async def main() -> None:
        dispatcher, release, open_now = echo_dispatcher(max_in_flight=4)
        async with serving(dispatcher, wrap) as address:
            conn = RpcConnection(await tcp.connect(address, LIMITS))
            calls = [asyncio.ensure_future(conn.call(m.Ping(), b"slow%d" % i, timeout=GUARD)) for i in range(20)]
            while open_now[0] < 4:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # anything still in flight lands; no fifth handler may start
            assert open_now == [4, 4]
            release.set()
            answers = await asyncio.wait_for(asyncio.gather(*calls), GUARD)
            assert [bytes(d) for _, d in answers] == [b"slow%d" % i for i in range(20)]
            assert open_now[1] == 4
            conn.close()

    run(main())


def test_closing_a_client_fails_its_waiting_calls_at_once(run: Callable[..., Any]) -> None:
    async def main() -> None:
        dispatcher, release, open_now = echo_dispatcher()
        async with serving(dispatcher, False) as address:
            conn = RpcConnection(await tcp.connect(address, LIMITS))
            waiting = asyncio.ensure_future(conn.call(m.Ping(), b"slow", timeout=GUARD))
            while open_now[0] < 1:
                await asyncio.sleep(0.01)
            conn.close()
            with pytest.raises(Unavailable, match="closed"):
                await asyncio.wait_for(waiting, GUARD)
            with pytest.raises(Unavailable, match="is closed"):
                await conn.call(m.Ping())
            release.set()

    run(main())


def test_a_response_frame_sent_to_a_server_closes_only_that_connection(run: Callable[..., Any]) -> None:
    async def main() -> None:
        dispatcher, _, _ = echo_dispatcher()
        async with serving(dispatcher, False) as address:
            bad = await tcp.connect(address, LIMITS)
            good = RpcConnection(await tcp.connect(address, LIMITS))
            await bad.write_frame(Frame(Kind.RESPONSE, 5, b"\x92\xa1x\x80"))
            with pytest.raises(EOFError):
                await asyncio.wait_for(bad.read_frame(), GUARD)
            assert await good.call(m.Ping(), b"still", timeout=GUARD) == (m.Pong("test"), b"still")
            good.close()

    run(main())


def test_a_connection_lost_while_a_request_is_written_leaves_no_unretrieved_error(run: Callable[..., Any]) -> None:
    """The read side may fail the call's future while its request is still being written; the
    call raises the write's error, and the future's must not surface later as an event-loop error."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        reported: list[str] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))
        accepted: asyncio.Future[asyncio.StreamWriter] = loop.create_future()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result(writer)  # reads nothing: the client's write stalls on a full buffer

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            conn = RpcConnection(await tcp.connect(Address("127.0.0.1", port), LIMITS))
            call = asyncio.ensure_future(conn.call(m.Ping(), bytes(32 << 20), timeout=GUARD))
            writer = await asyncio.wait_for(accepted, GUARD)
            await asyncio.sleep(0.2)
            writer.transport.abort()
            with pytest.raises(Unavailable):
                await asyncio.wait_for(call, GUARD)
            del call
            conn.close()
            await asyncio.sleep(0.05)
            gc.collect()
            await asyncio.sleep(0)
        finally:
            server.close()
        assert not [r for r in reported if "never retrieved" in r], reported

    run(main())
