"""Transport ``tcp``: Hercules frames over asyncio TCP (uvloop when the role runs on it).

Framing and limits come from ``hercules_core.framing`` and the receive buffers from
``hercules_core.receiver``; this plugin only moves bytes (``connection.TcpConnection``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from hercules_core.addresses import Address
from hercules_core.framing import FrameLimits
from hercules_core.plugins import hookimpl
from hercules_core.plugins.types import ConnectionHandler, TransportSpec

from hercules_transport_tcp.connection import TcpConnection

__all__ = ["TcpConnection", "TcpServer", "connect", "serve"]

log = logging.getLogger(__name__)


class TcpServer:
    def __init__(self, server: asyncio.Server, address: Address) -> None:
        self._server = server
        self.address = address

    def close(self) -> None:
        self._server.close()

    async def wait_closed(self) -> None:
        await self._server.wait_closed()


async def connect(address: Address, limits: FrameLimits) -> TcpConnection:
    _, conn = await asyncio.get_running_loop().create_connection(
        lambda: TcpConnection(limits), address.host, address.port)
    return conn


async def serve(address: Address, handler: ConnectionHandler, limits: FrameLimits) -> TcpServer:
    loop = asyncio.get_running_loop()
    handlers: set[asyncio.Task[None]] = set()  # referenced until done, or they could be collected

    def handled(task: asyncio.Task[None]) -> None:
        handlers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("connection handler failed", exc_info=task.exception())

    def on_made(conn: TcpConnection) -> None:
        task = loop.create_task(handler(conn))
        handlers.add(task)
        task.add_done_callback(handled)
        task.add_done_callback(lambda _t: conn.close())

    server = await loop.create_server(lambda: TcpConnection(limits, on_made), address.bind_host(), address.port,
                                      reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    return TcpServer(server, Address(address.host, port))


@hookimpl
def hercules_transports() -> Iterator[TransportSpec]:
    yield TransportSpec(name="tcp", connect=connect, serve=serve,
                        description="length-prefixed frames over asyncio TCP (BufferedProtocol)")
