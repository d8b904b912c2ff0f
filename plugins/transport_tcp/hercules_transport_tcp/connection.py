"""One TCP connection as an ``asyncio.BufferedProtocol`` that moves whole frames.

The event loop reads straight into ``FrameReceiver``'s buffers (no stream reader copying every
segment twice). Complete frames wait in a deque: ``read_frame`` returns one without suspending
when it is already there, and reading pauses while too many are unread. Writes are queued whole
before the first await, so concurrent writers never interleave frames, and wait only while the
transport's buffer is over its high-water mark.
"""

from __future__ import annotations

import asyncio
import socket
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


class TcpConnection(asyncio.BufferedProtocol):
    """A ``FrameConnection``; ``on_made`` is told once the connection is up (servers use it)."""

    def __init__(self, limits: FrameLimits, on_made: Callable[[TcpConnection], None] | None = None) -> None:
        self.peer = "?"
        self._rx = FrameReceiver(limits)
        self._on_made = on_made
        self._transport: asyncio.Transport | None = None
        self._end: BaseException | None = None  # raised by read_frame once queued frames are read
        self._lost = False
        self._reader: asyncio.Future[None] | None = None
        self._read_paused = False
        self._write_paused = False
        self._drain_waiters: deque[asyncio.Future[None]] = deque()
        self._closed = asyncio.get_running_loop().create_future()

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
            self._on_made(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._rx.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        rx = self._rx
        try:
            rx.buffer_updated(nbytes)
        except ProtocolError as exc:
            self._finish(exc)
            self.close()
            self._wake_reader()
        if rx.frames:
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
            if self._reader is not None:
                raise RuntimeError("read_frame is already being awaited")
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        frame = frames.popleft()
        self._rx.queued_bytes -= len(frame.meta) + len(frame.data)
        if self._read_paused and len(frames) <= MAX_UNREAD_FRAMES // 2 \
                and self._rx.queued_bytes <= MAX_UNREAD_BYTES // 2:
            self._read_paused = False
            if self._transport is not None and not self._transport.is_closing():
                self._transport.resume_reading()
        return frame

    async def write_frame(self, frame: Frame) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError(f"connection to {self.peer} is closed")
        data = frame.data
        size = len(data)
        if size <= SMALL_FRAME:
            transport.write(b"".join((frame.header(), frame.meta, data)))
        else:
            view = memoryview(data)
            transport.writelines([frame.header() + frame.meta,
                                  *(view[start:start + WRITE_PIECE] for start in range(0, size, WRITE_PIECE))])
        while self._write_paused:
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            try:
                await waiter
            finally:
                self._drain_waiters.remove(waiter)
        if self._lost:
            raise ConnectionResetError(f"connection to {self.peer} lost")

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    # --- internals --------------------------------------------------------------------

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

    def _wake_writers(self) -> None:
        self._write_paused = False if self._lost else self._write_paused
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
