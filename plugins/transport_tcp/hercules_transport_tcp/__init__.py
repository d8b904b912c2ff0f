"""Transport ``tcp``: Hercules frames over asyncio TCP streams (uvloop when the role runs on it).

Framing and limits come from ``hercules_core.framing``; this plugin only moves bytes.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

from hercules_core.addresses import Address
from hercules_core.errors import ProtocolError
from hercules_core.framing import HEADER_SIZE, Frame, FrameLimits, parse_header
from hercules_core.plugins import hookimpl
from hercules_core.plugins.types import ConnectionHandler, TransportSpec

STREAM_LIMIT = 8 << 20  # reader buffer high-water mark: large frames arrive without stalls
WRITE_PIECE = 4 << 20  # big buffers go to the socket in pieces, not one huge copy
SMALL_FRAME = 64 << 10  # up to this much data is joined with the header into one write


class TcpConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limits: FrameLimits) -> None:
        self._reader = reader
        self._writer = writer
        self._limits = limits
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    async def read_frame(self) -> Frame:
        try:
            header = parse_header(await self._reader.readexactly(HEADER_SIZE), self._limits)
            meta = await self._reader.readexactly(header.meta_len)
            data = await self._reader.readexactly(header.data_len) if header.data_len else b""
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise ProtocolError(f"connection from {self.peer} closed inside a frame") from None
            raise EOFError from None
        return Frame(header.kind, header.request_id, meta, data)

    async def write_frame(self, frame: Frame) -> None:
        # Everything is queued before the first await, so concurrent callers never interleave frames.
        # Small frames go out as one buffer (one send); bulk data follows in pieces, never copied whole.
        view = memoryview(frame.data)
        if len(view) <= SMALL_FRAME:
            self._writer.write(b"".join((frame.header(), frame.meta, view)))
        else:
            self._writer.write(frame.header() + frame.meta)
            for start in range(0, len(view), WRITE_PIECE):
                self._writer.write(view[start:start + WRITE_PIECE])
        await self._writer.drain()

    def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()

    async def wait_closed(self) -> None:
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass


class TcpServer:
    def __init__(self, server: asyncio.Server, address: Address) -> None:
        self._server = server
        self.address = address

    def close(self) -> None:
        self._server.close()

    async def wait_closed(self) -> None:
        await self._server.wait_closed()


async def connect(address: Address, limits: FrameLimits) -> TcpConnection:
    reader, writer = await asyncio.open_connection(address.host, address.port, limit=STREAM_LIMIT)
    return TcpConnection(reader, writer, limits)


async def serve(address: Address, handler: ConnectionHandler, limits: FrameLimits) -> TcpServer:
    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await handler(TcpConnection(reader, writer, limits))

    server = await asyncio.start_server(on_connect, address.bind_host(), address.port,
                                        limit=STREAM_LIMIT, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    return TcpServer(server, Address(address.host, port))


@hookimpl
def hercules_transports() -> Iterator[TransportSpec]:
    yield TransportSpec(name="tcp", connect=connect, serve=serve,
                        description="length-prefixed frames over asyncio TCP streams")
