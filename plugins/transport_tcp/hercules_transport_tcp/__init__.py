"""Transport ``tcp``: Hercules frames over asyncio TCP (uvloop when the role runs on it).

Framing and limits come from ``hercules_core.framing`` and the receive buffers from
``hercules_core.receiver``; this plugin moves bytes (``connection.TcpConnection``), optionally
over TLS (``tls``), and, when the cluster secret is set (``HERCULES_CLUSTER_SECRET``), hands a
connection on only after both ends proved they know it (``handshake``). Both are read at each
dial and listen from this process's environment and config file, since the client library
dials without a ``Config``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Iterator

from hercules_core.addresses import Address
from hercules_core.config import cluster_secret, plugin_options
from hercules_core.framing import FrameLimits
from hercules_core.plugins import hookimpl
from hercules_core.plugins.types import ConnectionHandler, FrameConnection, TransportSpec

from hercules_transport_tcp.connection import TcpConnection
from hercules_transport_tcp.handshake import prove_as_client, prove_as_server
from hercules_transport_tcp.tls import SETTINGS, TlsOptions, client_context, server_context

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


def _tls() -> TlsOptions:
    return TlsOptions.from_options(plugin_options(SPEC))


async def connect(address: Address, limits: FrameLimits) -> TcpConnection:
    tls = _tls()
    context: ssl.SSLContext | None = client_context(tls) if tls.enabled else None
    _, conn = await asyncio.get_running_loop().create_connection(
        lambda: TcpConnection(limits), address.host, address.port, ssl=context,
        server_hostname=address.host if context is not None else None)
    secret = cluster_secret()
    if secret:
        try:
            await prove_as_client(conn, secret)
        except BaseException:
            conn.close()
            raise
    return conn


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def warn_if_unprotected(address: Address, secret: bytes) -> bool:
    """Warn (and say so) when a listener beyond loopback would serve anyone: no cluster secret."""
    if secret or _loopback(address.bind_host()):
        return False
    log.warning("listening on %s without a cluster secret: anyone who reaches this port can act as a "
                "chunkserver or client (set HERCULES_CLUSTER_SECRET)", address)
    return True


async def serve(address: Address, handler: ConnectionHandler, limits: FrameLimits) -> TcpServer:
    loop = asyncio.get_running_loop()
    handlers: set[asyncio.Task[None]] = set()  # referenced until done, or they could be collected

    def handled(task: asyncio.Task[None]) -> None:
        handlers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("connection handler failed", exc_info=task.exception())

    secret = cluster_secret()
    tls = _tls()
    context = server_context(tls) if tls.enabled else None
    warn_if_unprotected(address, secret)

    async def serve_one(conn: FrameConnection) -> None:
        if not secret or await prove_as_server(conn, secret):
            await handler(conn)

    def on_made(conn: TcpConnection) -> None:
        task = loop.create_task(serve_one(conn))
        handlers.add(task)
        task.add_done_callback(handled)
        task.add_done_callback(lambda _t: conn.close())

    server = await loop.create_server(lambda: TcpConnection(limits, on_made), address.bind_host(), address.port,
                                      reuse_address=True, ssl=context)
    port = server.sockets[0].getsockname()[1]
    return TcpServer(server, Address(address.host, port))


SPEC = TransportSpec(name="tcp", connect=connect, serve=serve, settings=SETTINGS,
                     description="length-prefixed frames over asyncio TCP (BufferedProtocol), TLS optional")


@hookimpl
def hercules_transports() -> Iterator[TransportSpec]:
    yield SPEC
