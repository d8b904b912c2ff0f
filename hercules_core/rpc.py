"""Request/response over frames: multiplexed calls, a pooled client, a dispatching server.

Many calls share one connection (each frame carries a request id); a pool keeps a
few connections per peer and re-dials only when one breaks. Replies that are errors
carry a code and come back as the matching ``HerculesError``.

Where the transport offers it (``deliver``, see ``PushFrameConnection``), frames come by
callback: a reply resolves its caller's future straight from the read callback, and a request
is answered in that callback too when its handler finishes without suspending (``eager``), so
neither side wakes a read-loop task, and the server starts no task for such a request. Other
transports are read by one task per connection, as before.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from hercules_core import codec, eager
from hercules_core.addresses import Address
from hercules_core.errors import HerculesError, ProtocolError, ResourceExhausted, Unavailable
from hercules_core.framing import Frame, FrameLimits, Kind
from hercules_core.messages import ErrorReply
from hercules_core.metrics.rpc import RpcMetrics
from hercules_core.plugins.types import Buffer, FrameConnection, PushFrameConnection, TransportSpec

log = logging.getLogger(__name__)

Reply = tuple[Any, Buffer]
Handler = Callable[[Any, memoryview, "CallContext"], Awaitable[Any | tuple[Any, Buffer]]]


@attrs.frozen
class CallContext:
    peer: str


@attrs.frozen
class ServeLimits:
    """What one role's dispatcher accepts: connections in all and from one client host (over
    either, the connection is refused with a ``resource_exhausted`` frame), and requests being
    answered at once on one connection (past it, reading that connection stops: backpressure)."""

    max_connections: int = 4096
    max_connections_per_address: int = 1024
    max_in_flight: int = 256


def _peer_host(peer: str) -> str:
    return peer.rpartition(":")[0] or peer


def _time_out(fut: asyncio.Future[Frame]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class RpcConnection:
    """Client side of one connection: many concurrent calls, matched by request id."""

    def __init__(self, conn: FrameConnection) -> None:
        self._conn = conn
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Frame]] = {}
        self._loop = asyncio.get_running_loop()
        self.closed = False
        self._reader: asyncio.Task[None] | None = None
        if isinstance(conn, PushFrameConnection):
            conn.deliver(self._on_frame, self._on_end)
        else:
            self._reader = self._loop.create_task(self._read_loop())

    def _on_frame(self, frame: Frame) -> None:
        fut = self._pending.pop(frame.request_id, None)
        if fut is not None:
            if not fut.done():
                fut.set_result(frame)
        elif frame.request_id == 0:  # the server refused the whole connection
            refusal = codec.decode(frame.meta)
            if isinstance(refusal, ErrorReply):
                self._fail(HerculesError.from_code(refusal.code, f"{self._conn.peer}: {refusal.message}"))

    def _on_end(self, exc: BaseException | None) -> None:
        if isinstance(exc, (EOFError, ConnectionError, OSError)):
            self._fail(Unavailable(f"connection to {self._conn.peer} lost: {exc or type(exc).__name__}"))
        elif isinstance(exc, ProtocolError):
            self._fail(exc)
        else:
            self._fail(Unavailable(f"connection to {self._conn.peer} closed"))

    async def _read_loop(self) -> None:
        end: BaseException | None = None
        try:
            while not self.closed:
                self._on_frame(await self._conn.read_frame())
        except (EOFError, ConnectionError, OSError, ProtocolError) as exc:
            end = exc
        except asyncio.CancelledError:
            pass
        finally:
            self._on_end(end)

    def _fail(self, error: BaseException) -> None:
        """No more replies: every call still waiting gets ``error``, and the connection closes."""
        self.closed = True
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(error)
        self._conn.close()

    async def call(self, msg: Any, data: Buffer = b"", timeout: float | None = 30.0) -> Reply:
        if self.closed:
            raise Unavailable(f"connection to {self._conn.peer} is closed")
        request_id = next(self._ids) & 0xFFFFFFFF
        fut: asyncio.Future[Frame] = self._loop.create_future()
        self._pending[request_id] = fut
        timer: asyncio.TimerHandle | None = None
        frame: Frame | None = None
        try:
            await self._conn.write_frame(Frame(Kind.REQUEST, request_id, codec.encode(msg), data))
            if timeout is not None:  # a timer handle, not wait_for: no extra task or future per call
                timer = self._loop.call_later(timeout, _time_out, fut)
            frame = await fut
        except TimeoutError:  # an OSError too: the connection is dropped, as for any other failure
            self.close()
            raise Unavailable(f"{self._conn.peer} did not answer {type(msg).__name__} in {timeout}s") from None
        except (ConnectionError, OSError) as exc:
            self.close()
            raise Unavailable(f"{self._conn.peer}: {exc}") from None
        finally:
            if timer is not None:
                timer.cancel()
            self._pending.pop(request_id, None)
            if frame is None and fut.done() and not fut.cancelled():
                fut.exception()  # failed (by ``_fail``) while the request was still being written
        assert frame is not None  # else the try raised
        reply = codec.decode(frame.meta)
        if isinstance(reply, ErrorReply):
            raise HerculesError.from_code(reply.code, reply.message)
        return reply, frame.data

    def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        self._fail(Unavailable(f"connection to {self._conn.peer} closed"))


class ConnectionPool:
    """A few multiplexed connections per peer, dialled once and reused."""

    def __init__(self, transport: TransportSpec, limits: FrameLimits, per_peer: int = 2,
                 connect_timeout: float = 5.0) -> None:
        self._transport = transport
        self._limits = limits
        self._per_peer = per_peer
        self._connect_timeout = connect_timeout
        self._conns: dict[str, list[RpcConnection | None]] = {}
        self._dialing: dict[tuple[str, int], asyncio.Task[RpcConnection]] = {}
        self._turn = itertools.count()

    async def _get(self, peer: str, slots: list[RpcConnection | None], slot: int) -> RpcConnection:
        key = (peer, slot)
        task = self._dialing.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._dial(peer))
            self._dialing[key] = task
            task.add_done_callback(lambda _t: self._dialing.pop(key, None))
        conn = await asyncio.shield(task)
        slots[slot] = conn
        return conn

    async def _dial(self, peer: str) -> RpcConnection:
        try:
            raw = await asyncio.wait_for(
                self._transport.connect(Address.parse(peer), self._limits), self._connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise Unavailable(f"cannot reach {peer}: {exc or type(exc).__name__}") from None
        return RpcConnection(raw)

    async def call(self, peer: str, msg: Any, data: Buffer = b"", timeout: float | None = 30.0) -> Reply:
        slots = self._conns.get(peer)
        if slots is None:
            slots = self._conns[peer] = [None] * self._per_peer
        slot = next(self._turn) % self._per_peer
        conn = slots[slot]
        if conn is None or conn.closed:
            conn = await self._get(peer, slots, slot)
        return await conn.call(msg, data, timeout)

    def drop(self, peer: str) -> None:
        for conn in self._conns.pop(peer, []):
            if conn is not None:
                conn.close()

    async def close(self) -> None:
        for peer in list(self._conns):
            self.drop(peer)


class Dispatcher:
    """Server side: route each request to the handler registered for its message type."""

    def __init__(self, role: str, metrics: RpcMetrics | None = None) -> None:
        self.role = role
        self.metrics = metrics  # set by the role's start function; every answer is recorded in it
        self.limits = ServeLimits()  # set from config by ``assembly.serve_dispatcher``
        self._handlers: dict[type, Handler] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: dict[str, int] = {}  # open connections per client host
        self._connection_count = 0

    def on(self, msg_type: type) -> Callable[[Handler], Handler]:
        """Register a handler. Its code up to its first ``await`` of something pending may run in
        the transport's read callback, outside any task (see ``eager``): no ``asyncio.timeout``
        or ``TaskGroup`` before that point."""

        def wrap(fn: Handler) -> Handler:
            self._handlers[msg_type] = fn
            return fn

        return wrap

    async def serve_connection(self, conn: FrameConnection) -> None:
        """Answer requests until the peer leaves; a bad frame closes only this connection."""
        host = _peer_host(conn.peer)
        refusal = self._admit(host)
        if refusal is not None:
            await self._refuse(conn, refusal)
            return
        self._connection_count += 1
        self._connections[host] = self._connections.get(host, 0) + 1
        ctx = CallContext(conn.peer)
        try:
            if isinstance(conn, PushFrameConnection):
                await self._serve_pushed(conn, ctx)
            else:
                await self._serve_read(conn, ctx)
        except (EOFError, ConnectionError, OSError, asyncio.CancelledError):
            pass
        except ProtocolError as exc:
            log.warning("%s: closing connection from %s: %s", self.role, conn.peer, exc)
        finally:
            self._connection_count -= 1
            left = self._connections.pop(host) - 1
            if left:
                self._connections[host] = left
            conn.close()

    async def _serve_pushed(self, conn: PushFrameConnection, ctx: CallContext) -> None:
        """Answer each request from the read callback; a task only for a handler that suspends.
        Past ``max_in_flight`` unanswered requests, delivery (and then reading) pauses."""
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[BaseException] = loop.create_future()
        most, in_flight = self.limits.max_in_flight, 0

        def answered(_task: object = None) -> None:
            nonlocal in_flight
            in_flight -= 1
            if in_flight == most - 1:
                conn.resume_delivery()

        def on_frame(frame: Frame) -> None:
            nonlocal in_flight
            if frame.kind is not Kind.REQUEST:
                raise ProtocolError("expected a request frame")
            in_flight += 1
            if in_flight >= most:
                conn.pause_delivery()
            task = eager.start(self._answer(conn, frame, ctx), loop)
            if task is None:
                answered()
            else:
                self._keep(task)
                task.add_done_callback(answered)

        def on_end(exc: BaseException) -> None:
            if not ended.done():
                ended.set_result(exc)

        conn.deliver(on_frame, on_end)
        raise await ended

    async def _serve_read(self, conn: FrameConnection, ctx: CallContext) -> None:
        """Transports without ``deliver``: one task per request (its first step must not run in
        this reading task, which ``asyncio.current_task`` would report)."""
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self.limits.max_in_flight)
        while True:
            await slots.acquire()  # while the peer has max_in_flight requests open, read no more
            frame = await conn.read_frame()
            if frame.kind is not Kind.REQUEST:
                raise ProtocolError("expected a request frame")
            task = loop.create_task(self._answer(conn, frame, ctx))
            self._keep(task)
            task.add_done_callback(lambda _t: slots.release())

    def _keep(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _admit(self, host: str) -> ResourceExhausted | None:
        limits = self.limits
        if self._connection_count >= limits.max_connections:
            return ResourceExhausted(f"{self.role} serves at most {limits.max_connections} connections")
        if self._connections.get(host, 0) >= limits.max_connections_per_address:
            return ResourceExhausted(f"{self.role} serves at most {limits.max_connections_per_address} "
                                     f"connections from {host}")
        return None

    async def _refuse(self, conn: FrameConnection, error: ResourceExhausted) -> None:
        """Tell the peer why (request id 0 answers no call: the client fails all of them with it)."""
        log.warning("%s: refusing a connection from %s: %s", self.role, conn.peer, error.message)
        try:
            await conn.write_frame(Frame(Kind.RESPONSE, 0, codec.encode(ErrorReply(error.code, error.message))))
        except (ConnectionError, OSError):
            pass
        finally:
            conn.close()

    async def _answer(self, conn: FrameConnection, frame: Frame, ctx: CallContext) -> None:
        started = time.perf_counter()
        data: Buffer = b""
        operation, outcome = "undecodable", "ok"
        try:
            msg = codec.decode(frame.meta)
            operation = type(msg).__name__
            handler = self._handlers.get(type(msg))
            if handler is None:
                raise ProtocolError(f"{self.role} does not handle {operation}")
            result = await handler(msg, memoryview(frame.data), ctx)
            reply, data = result if isinstance(result, tuple) else (result, b"")
        except HerculesError as exc:
            reply, outcome = ErrorReply(exc.code, exc.message), exc.code
        except Exception as exc:  # noqa: BLE001 - report, never kill the connection
            log.exception("%s: handler failed", self.role, extra={"code": "internal"})
            reply, outcome = ErrorReply("internal", f"{type(exc).__name__}: {exc}"), "internal"
        try:
            await conn.write_frame(Frame(Kind.RESPONSE, frame.request_id, codec.encode(reply), data))
        except (ConnectionError, OSError):
            conn.close()
            outcome = "disconnected"
        if self.metrics is not None:
            self.metrics.observe(operation, outcome, time.perf_counter() - started, len(frame.data), len(data))

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
