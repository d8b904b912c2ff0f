"""Request/response over frames: multiplexed calls, a pooled client, a dispatching server.

Many calls share one connection (each frame carries a request id); a pool keeps a
few connections per peer and re-dials only when one breaks. Replies that are errors
carry a code and come back as the matching ``HerculesError``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from hercules_core import codec
from hercules_core.addresses import Address
from hercules_core.errors import HerculesError, ProtocolError, Unavailable
from hercules_core.framing import Frame, FrameLimits, Kind
from hercules_core.messages import ErrorReply
from hercules_core.plugins.types import Buffer, FrameConnection, TransportSpec

log = logging.getLogger(__name__)

Reply = tuple[Any, Buffer]
Handler = Callable[[Any, memoryview, "CallContext"], Awaitable[Any | tuple[Any, Buffer]]]


@attrs.frozen
class CallContext:
    peer: str


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
        self._reader = self._loop.create_task(self._read_loop())
        self.closed = False

    async def _read_loop(self) -> None:
        error: BaseException = Unavailable(f"connection to {self._conn.peer} closed")
        try:
            while True:
                frame = await self._conn.read_frame()
                fut = self._pending.pop(frame.request_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(frame)
        except (EOFError, ConnectionError, OSError) as exc:
            error = Unavailable(f"connection to {self._conn.peer} lost: {exc or type(exc).__name__}")
        except ProtocolError as exc:
            error = exc
        except asyncio.CancelledError:
            pass
        finally:
            self.closed = True
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(error)
            self._pending.clear()
            self._conn.close()

    async def call(self, msg: Any, data: Buffer = b"", timeout: float | None = 30.0) -> Reply:
        if self.closed:
            raise Unavailable(f"connection to {self._conn.peer} is closed")
        request_id = next(self._ids) & 0xFFFFFFFF
        fut: asyncio.Future[Frame] = self._loop.create_future()
        self._pending[request_id] = fut
        timer: asyncio.TimerHandle | None = None
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
        reply = codec.decode(frame.meta)
        if isinstance(reply, ErrorReply):
            raise HerculesError.from_code(reply.code, reply.message)
        return reply, frame.data

    def close(self) -> None:
        self.closed = True
        self._reader.cancel()
        self._conn.close()


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

    def __init__(self, role: str) -> None:
        self.role = role
        self._handlers: dict[type, Handler] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def on(self, msg_type: type) -> Callable[[Handler], Handler]:
        def wrap(fn: Handler) -> Handler:
            self._handlers[msg_type] = fn
            return fn

        return wrap

    async def serve_connection(self, conn: FrameConnection) -> None:
        """Answer requests until the peer leaves; a bad frame closes only this connection."""
        ctx = CallContext(conn.peer)
        loop = asyncio.get_running_loop()
        try:
            while True:
                frame = await conn.read_frame()
                if frame.kind is not Kind.REQUEST:
                    raise ProtocolError("expected a request frame")
                task = loop.create_task(self._answer(conn, frame, ctx))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (EOFError, ConnectionError, OSError, asyncio.CancelledError):
            pass
        except ProtocolError as exc:
            log.warning("%s: closing connection from %s: %s", self.role, conn.peer, exc)
        finally:
            conn.close()

    async def _answer(self, conn: FrameConnection, frame: Frame, ctx: CallContext) -> None:
        data: Buffer = b""
        try:
            msg = codec.decode(frame.meta)
            handler = self._handlers.get(type(msg))
            if handler is None:
                raise ProtocolError(f"{self.role} does not handle {type(msg).__name__}")
            result = await handler(msg, memoryview(frame.data), ctx)
            reply, data = result if isinstance(result, tuple) else (result, b"")
        except HerculesError as exc:
            reply = ErrorReply(exc.code, exc.message)
        except Exception as exc:  # noqa: BLE001 - report, never kill the connection
            log.exception("%s: handler failed", self.role)
            reply = ErrorReply("internal", f"{type(exc).__name__}: {exc}")
        try:
            await conn.write_frame(Frame(Kind.RESPONSE, frame.request_id, codec.encode(reply), data))
        except (ConnectionError, OSError):
            conn.close()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
