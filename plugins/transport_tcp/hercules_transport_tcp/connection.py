"""One TCP connection as an ``asyncio.BufferedProtocol`` that moves whole frames.

The event loop reads straight into ``FrameReceiver``'s buffers (no stream reader copying every
segment twice). Complete frames wait in a deque: ``read_frame`` returns one without suspending
when it is already there, and reading pauses while too many are unread. The RPC layer instead
asks for them by callback (``deliver``): each frame is handed over as soon as it is parsed,
without waking a reader task first, and ``pause_delivery`` holds them in the same deque.

Writes are queued whole before the first await, so concurrent writers never interleave frames,
and wait only while the transport's buffer is over its high-water mark. Small frames are corked:
those written in one turn of the event loop (replies to the requests one read brought, calls of
many tasks sharing a connection) leave in one ``writelines``, i.e. one ``send``, at the end of
the delivery that produced them or, failing that, in a callback soon after.

On the serving side (``on_made`` given) the limits' timeouts are enforced by one timer per
connection: a peer silent for ``idle_timeout`` is disconnected, and one that started a frame but
has not finished it within ``frame_timeout`` (a slowloris peer) is cut off with a ``ProtocolError``.
Time spent with reading paused by our own backpressure does not count against the peer.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import cast

from hercules_core.errors import ProtocolError
from hercules_core.framing import Frame, FrameLimits
from hercules_core.receiver import FrameReceiver

WRITE_PIECE = 4 << 20  # big buffers go to the socket in pieces, not one huge copy
SMALL_FRAME = 64 << 10  # up to this much data is joined with the header into one write
WRITE_HIGH = 1 << 20  # writers wait while more than this is queued in the transport
MAX_UNREAD_FRAMES = 256  # reading pauses while more frames than this are unread...
MAX_UNREAD_BYTES = 32 << 20  # ...or while they hold more bytes than this
CORK_BYTES = 64 << 10  # corked small frames are sent at once past this much

FrameCallback = Callable[[Frame], None]
EndCallback = Callable[[BaseException], None]


class TcpConnection(asyncio.BufferedProtocol):
    """A ``FrameConnection``; ``on_made`` is told once the connection is up (servers use it)."""

    def __init__(self, limits: FrameLimits, on_made: Callable[[TcpConnection], None] | None = None) -> None:
        self.peer = "?"
        self._rx = FrameReceiver(limits)
        self._limits = limits
        self._last_activity = time.monotonic()
        self._frame_started = 0.0  # when the frame now part-received began arriving
        self._timer: asyncio.TimerHandle | None = None
        self._on_made = on_made
        self._transport: asyncio.Transport | None = None
        self._end: BaseException | None = None  # raised by read_frame once queued frames are read
        self._lost = False
        self._reader: asyncio.Future[None] | None = None
        self._read_paused = False
        self._write_paused = False
        self._drain_waiters: deque[asyncio.Future[None]] = deque()
        self._loop = asyncio.get_running_loop()
        self._closed = self._loop.create_future()
        self._on_frame: FrameCallback | None = None  # push mode (``deliver``)
        self._on_end: EndCallback | None = None
        self._delivery_paused = False
        self._delivering = False
        self._cork: list[bytes] = []  # small frames not yet handed to the transport
        self._corked = 0
        self._flush_due = False

    @property
    def reading_paused(self) -> bool:
        """Whether reading stopped because the unread frames reached their limit."""
        return self._read_paused

    @property
    def unread_bytes(self) -> int:
        """Meta and data bytes of the frames received but not yet read."""
        return self._rx.queued_bytes

    # --- asyncio protocol callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        transport.set_write_buffer_limits(high=WRITE_HIGH)
        if self._on_made is not None:
            if self._limits.idle_timeout > 0 or self._limits.frame_timeout > 0:
                self._arm_timer()
            self._on_made(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._rx.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        rx = self._rx
        was_inside = rx.inside_frame
        self._last_activity = now = time.monotonic()
        try:
            rx.buffer_updated(nbytes)
            if not was_inside and rx.inside_frame:
                self._frame_started = now
        except ProtocolError as exc:
            self._finish(exc)
            self.close()
            self._wake_reader()
        if rx.frames:
            if self._on_frame is not None:
                self._deliver()
            if not self._read_paused and (len(rx.frames) > MAX_UNREAD_FRAMES or rx.queued_bytes > MAX_UNREAD_BYTES):
                transport = self._transport
                if transport is not None and not transport.is_closing():
                    self._read_paused = True
                    transport.pause_reading()
            self._wake_reader()

    def eof_received(self) -> bool:
        self._ended()
        return True  # the peer may still read our answers; the owner closes after read_frame's EOFError

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._timer is not None:
            self._timer.cancel()
        if exc is not None:
            self._finish(exc)
        self._ended()
        self._wake_writers()
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()

    # --- FrameConnection --------------------------------------------------------------

    async def read_frame(self) -> Frame:
        frames = self._rx.frames
        while not frames:
            if self._end is not None:
                raise self._end
            if self._reader is not None or self._on_frame is not None:
                raise RuntimeError("read_frame is already being awaited, or frames go to a callback")
            self._reader = self._loop.create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        return self._pop()

    def deliver(self, on_frame: FrameCallback, on_end: EndCallback) -> None:
        """From now on hand every frame to ``on_frame`` as it arrives (those already queued first),
        and the reason the stream ended to ``on_end``, once, after the last frame. ``on_frame``
        runs inside the event loop's read callback: it must not block; an exception it raises
        ends the connection with that exception (a ``ProtocolError`` for a frame out of place)."""
        if self._reader is not None or self._on_frame is not None:
            raise RuntimeError("frames of this connection are already being read")
        self._on_frame, self._on_end = on_frame, on_end
        self._deliver()

    def pause_delivery(self) -> None:
        """Hold further frames (they queue, and reading pauses past the unread limits)."""
        self._delivery_paused = True

    def resume_delivery(self) -> None:
        self._delivery_paused = False
        self._deliver()

    async def write_frame(self, frame: Frame) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError(f"connection to {self.peer} is closed")
        data = frame.data
        size = len(data)
        self._last_activity = time.monotonic()
        if size <= SMALL_FRAME:
            piece = b"".join((frame.header(), frame.meta, data))
            self._cork.append(piece)
            self._corked += len(piece)
            if self._corked >= CORK_BYTES:
                self._flush()
            elif not self._delivering and not self._flush_due:
                self._flush_due = True
                self._loop.call_soon(self._flush)
        else:
            self._flush()
            view = memoryview(data)
            transport.writelines([frame.header() + frame.meta,
                                  *(view[start:start + WRITE_PIECE] for start in range(0, size, WRITE_PIECE))])
        while self._write_paused:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            try:
                await waiter
            finally:
                self._drain_waiters.remove(waiter)
        if self._lost:
            raise ConnectionResetError(f"connection to {self.peer} lost")

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._flush()  # frames written before close still go, as with a plain transport.write
            self._transport.close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    # --- internals --------------------------------------------------------------------

    def _pop(self) -> Frame:
        frames = self._rx.frames
        frame = frames.popleft()
        self._rx.queued_bytes -= len(frame.meta) + len(frame.data)
        if self._read_paused and len(frames) <= MAX_UNREAD_FRAMES // 2 \
                and self._rx.queued_bytes <= MAX_UNREAD_BYTES // 2:
            self._read_paused = False
            self._frame_started = self._last_activity = time.monotonic()  # our pause is not the peer's delay
            if self._transport is not None and not self._transport.is_closing():
                self._transport.resume_reading()
        return frame

    def _deliver(self) -> None:
        """Push mode: hand queued frames over until paused, then the end once the queue is empty.
        Replies written meanwhile are corked and leave together when this returns."""
        if self._delivering:  # re-entered from a callback: the outer call carries on
            return
        self._delivering = True
        frames = self._rx.frames
        try:
            while frames and not self._delivery_paused and self._on_frame is not None:
                self._on_frame(self._pop())
        except Exception as exc:  # noqa: BLE001 - the consumer's verdict on the stream
            frames.clear()
            self._rx.queued_bytes = 0
            self._end = exc
            self.close()
        finally:
            self._delivering = False
        self._flush()
        if not frames and self._end is not None and self._on_end is not None:
            on_end, self._on_end, self._on_frame = self._on_end, None, None
            on_end(self._end)

    def _flush(self) -> None:
        """Hand the corked small frames to the transport, in one call."""
        self._flush_due = False
        cork = self._cork
        if not cork:
            return
        self._cork, self._corked = [], 0
        transport = self._transport
        if transport is None or transport.is_closing():
            return  # a closed connection: its writers were told, or are told by ``_lost``
        if len(cork) == 1:
            transport.write(cork[0])
        else:
            transport.writelines(cork)

    def _arm_timer(self) -> None:
        limits = self._limits
        period = min(t for t in (limits.idle_timeout, limits.frame_timeout) if t > 0) / 4
        self._timer = asyncio.get_running_loop().call_later(period, self._check_timeouts)

    def _check_timeouts(self) -> None:
        """Cut off a peer that is too slow with its frame or silent for too long."""
        if self._lost:
            return
        now, limits = time.monotonic(), self._limits
        if self._rx.inside_frame:
            if limits.frame_timeout > 0 and not self._read_paused \
                    and now - self._frame_started > limits.frame_timeout:
                self._finish(ProtocolError(f"{self.peer} did not complete a frame within {limits.frame_timeout}s"))
                self.close()
                self._wake_reader()
                return
        elif limits.idle_timeout > 0 and not self._rx.frames and now - self._last_activity > limits.idle_timeout:
            self._finish(EOFError())
            self.close()
            self._wake_reader()
            return
        self._arm_timer()

    def _finish(self, exc: BaseException) -> None:
        """Remember the first reason the stream ended; read_frame raises it after the queued frames."""
        if self._end is None:
            self._end = exc

    def _ended(self) -> None:
        """No more bytes will come: EOF, or a protocol error if it cut a frame short."""
        if self._rx.inside_frame:
            self._finish(ProtocolError(f"connection from {self.peer} closed inside a frame"))
        else:
            self._finish(EOFError())
        self._wake_reader()

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)
        elif self._on_end is not None and self._end is not None:
            self._deliver()

    def _wake_writers(self) -> None:
        self._write_paused = False if self._lost else self._write_paused
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
