"""Streaming a download to an HTTP client that may stop reading, for every route set that sends files.

Each step that waits on the client (the status line, every piece, the end of the body) is bounded
by ``http_write_timeout``: a client that takes nothing for that long has its connection reset and
the transfer slot, the chunk reads and the socket buffers it held given back at once. aiohttp drains only once more than
64 KiB is buffered, so the final drain (``write_eof``) waits on the client too and is bounded alike.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncGenerator, Awaitable

from aiohttp import web

from hercules_core.gateway.app import CONTEXT_KEY
from hercules_core.plugins.types import Buffer


WHOLE_BODY = 64 << 10  # a body up to this size is sent whole (``send_file``)


class ClientStalled(ConnectionAbortedError):
    """The gateway cut a response its client stopped reading (a ``ConnectionError``: nobody to answer)."""


async def send_file(request: web.Request, status: int, headers: dict[str, str], length: int,
                    pieces: AsyncGenerator[Buffer, None]) -> web.StreamResponse:
    """``length`` bytes of ``pieces`` as the body: streamed (``stream``), or, up to ``WHOLE_BODY``,
    read first and sent whole with the headers in one write. aiohttp waits on the client only past
    64 KiB buffered, so a small body needs none of the streaming steps and their timers."""
    if length > WHOLE_BODY:
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = length
        return await stream(request, response, pieces)
    try:
        # bytes, not views: aiohttp sends bytes with the headers at once, a view as a separate payload
        body = b"".join([bytes(piece) async for piece in pieces])  # one piece: itself, no copy
    finally:
        await pieces.aclose()
    return web.Response(status=status, headers=headers, body=body)


async def stream(request: web.Request, response: web.StreamResponse,
                 pieces: AsyncGenerator[bytes, None]) -> web.StreamResponse:
    """Send ``pieces`` as the body of ``response`` (status and headers set, not yet prepared), each
    step bounded by the gateway's ``http_write_timeout``, whichever of its applications serves it.

    The first piece is read before the status line goes out, so a failing read is still answered
    as an error; ``pieces`` is closed however this ends (its read-ahead stops at once).
    """
    timeout = request.app[CONTEXT_KEY].config.http_write_timeout
    try:
        first = await anext(pieces, b"")
        await _bounded(request, response.prepare(request), timeout)
        if first:
            await _bounded(request, response.write(first), timeout)
        async for piece in pieces:
            await _bounded(request, response.write(piece), timeout)
    finally:
        await pieces.aclose()
    await _bounded(request, response.write_eof(), timeout)
    return response


async def _bounded(request: web.Request, step: Awaitable[object], timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):  # inline, not a task per piece as wait_for makes in 3.11
            await step
    except TimeoutError:
        reset(request)
        raise ClientStalled(f"the client read nothing for {timeout:g} s") from None


def reset(request: web.Request) -> None:
    """Abort the request's connection with a reset: a plain close would leave the unsent body in
    the kernel (megabytes per client) until the peer read it, or the kernel gave up minutes later."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:  # already closed by the peer: nothing is left to drop
            pass
    transport.abort()
