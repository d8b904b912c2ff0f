"""Sans-I/O frame receiver: where received bytes go, for transports on ``asyncio.BufferedProtocol``.

The event loop asks ``get_buffer`` where to put the next read and reports it with
``buffer_updated``; complete frames collect in ``frames``. Small frames are parsed out of one
reused buffer and copied out, so a frame never aliases memory that a later read overwrites. A
large data part is received straight into a ``bytearray`` the frame then owns, so a handler may
keep the data after the call (chunkservers hold pushed data until the write that uses it arrives).

Memory follows the bytes that arrived, never what a header declares: the reused buffer starts
small and grows only while reads fill it (an idle connection holds a few KiB, not 256), and a
large data part starts at ``DATA_PIECE`` and doubles as it fills, up to the declared size (a
30-byte header announcing 16 MiB costs 1 MiB until the peer actually sends more).
"""

from __future__ import annotations

from collections import deque

from hercules_core.framing import HEADER_SIZE, Frame, FrameLimits, Header, parse_header_from

RECV_BUFFER = 256 << 10  # the reused buffer: one read can bring many small frames
DIRECT_DATA = 64 << 10  # data parts of this size or more skip the reused buffer
MIN_READ = 16 << 10  # move a partial frame to the front rather than offer the kernel less room
FIRST_BUFFER = 16 << 10  # the reused buffer's size until reads fill it; it grows to ``buffer_size``
DATA_PIECE = 1 << 20  # a large data part's first allocation; it doubles as bytes arrive


class FrameReceiver:
    """Turns reads into frames; ``ProtocolError`` from ``buffer_updated`` means the stream is unusable."""

    def __init__(self, limits: FrameLimits, buffer_size: int = RECV_BUFFER) -> None:
        self.frames: deque[Frame] = deque()
        self.queued_bytes = 0  # meta and data bytes of the frames in ``frames``
        self._limits = limits
        self._size = buffer_size
        self._target = min(FIRST_BUFFER, buffer_size)  # grows towards ``_size`` while reads fill the buffer
        self._buf = bytearray(0)  # allocated at the first read: a connection that never sends holds none
        self._view = memoryview(self._buf)
        self._offered = 0  # room the last ``get_buffer`` offered in the reused buffer
        self._start = 0  # first byte not yet parsed
        self._end = 0  # end of the bytes received
        self._header: Header | None = None  # parsed, its frame not yet complete
        self._meta = b""
        self._data: bytearray | None = None  # the large data part being received in place
        self._filled = 0

    @property
    def inside_frame(self) -> bool:
        """Whether the stream stopped part way into a frame."""
        return self._header is not None or self._end > self._start

    def get_buffer(self) -> memoryview:
        """Where the next read goes: the rest of a large data part, else free room in the buffer."""
        data = self._data
        if data is not None:
            if self._filled == len(data):  # full so far: double it, never past the declared size
                assert self._header is not None
                grown = bytearray(min(2 * len(data), self._header.data_len))
                grown[:self._filled] = data
                self._data = data = grown
            return memoryview(data)[self._filled:]
        held = self._end - self._start
        if held == 0:
            self._start = self._end = 0
            if len(self._buf) > self._size:  # shrink back after an outsized message
                self._replace(bytearray(self._target), 0)
        wanted = max(self._unit() - held, MIN_READ)
        if len(self._buf) - self._end < wanted:
            self._make_room(held, wanted)
        self._offered = len(self._buf) - self._end
        return self._view[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        """Account for ``nbytes`` just received; complete frames are appended to ``frames``."""
        if self._data is None:
            self._end += nbytes
            if nbytes >= self._offered and self._target < self._size:  # a busy peer: a bigger buffer
                self._target = min(4 * self._target, self._size)
            self._parse()
            return
        self._filled += nbytes
        header = self._header
        assert header is not None
        if self._filled == header.data_len:
            data = self._data
            assert data is not None
            self._header, self._data = None, None
            self._emit(header, self._meta, data)

    def _unit(self) -> int:
        """Bytes from ``_start`` that the next step of parsing needs in the buffer."""
        header = self._header
        if header is None:
            return HEADER_SIZE
        return header.meta_len + (header.data_len if header.data_len < DIRECT_DATA else 0)

    def _make_room(self, held: int, wanted: int) -> None:
        """Move the partial frame to the front, into a bigger buffer if it needs one."""
        size = max(self._target, held + wanted)
        if size > len(self._buf):
            self._replace(bytearray(size), held)
        elif held:
            self._buf[:held] = self._buf[self._start:self._end]  # the slice is a copy: overlap is safe
        self._start, self._end = 0, held

    def _replace(self, buf: bytearray, held: int) -> None:
        buf[:held] = self._view[self._start:self._start + held]
        self._buf, self._view = buf, memoryview(buf)

    def _emit(self, header: Header, meta: bytes, data: bytes | bytearray) -> None:
        self.frames.append(Frame(header.kind, header.request_id, meta, data))
        self.queued_bytes += len(meta) + len(data)

    def _parse(self) -> None:
        view, start, end, header = self._view, self._start, self._end, self._header
        try:
            while True:
                if header is None:
                    if end - start < HEADER_SIZE:
                        return
                    header = parse_header_from(self._buf, start, self._limits)
                    start += HEADER_SIZE
                mid = start + header.meta_len
                data_len = header.data_len
                if data_len < DIRECT_DATA:
                    stop = mid + data_len
                    if stop > end:
                        return
                    self._emit(header, view[start:mid].tobytes(), view[mid:stop].tobytes() if data_len else b"")
                    start, header = stop, None
                    continue
                if mid > end:
                    return
                meta = view[start:mid].tobytes()
                start = min(end, mid + data_len)
                data = bytearray(max(min(data_len, DATA_PIECE), start - mid))
                data[:start - mid] = view[mid:start]
                if start - mid == data_len:
                    self._emit(header, meta, data)
                    header = None
                    continue
                self._meta, self._data, self._filled = meta, data, start - mid
                return
        finally:
            self._start, self._header = start, header
