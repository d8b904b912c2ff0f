"""What every role's start function shares: frame limits from config, the native-protocol
listener, the outbound connection pool and background tasks, each tied to the role's exit stack.

A role's start function (``master/role.py``, ``chunkserver/role.py``, ``gateway/role.py``)
enters its plugins' factories in one ``AsyncExitStack``; these helpers push the matching
cleanup onto it, so the stack unwinds a role in the reverse order it was built.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextlib import AsyncExitStack

from hercules_core.config import Config
from hercules_core.framing import FrameLimits
from hercules_core.plugins.manager import PluginManager
from hercules_core.rpc import ConnectionPool, Dispatcher, ServeLimits


def frame_limits(config: Config) -> FrameLimits:
    return FrameLimits(max_data=config.max_frame_data, idle_timeout=config.idle_timeout,
                       frame_timeout=config.frame_timeout)


def serve_limits(config: Config) -> ServeLimits:
    return ServeLimits(max_connections=config.max_connections,
                       max_connections_per_address=config.max_connections_per_address,
                       max_in_flight=config.max_in_flight_per_connection)


async def serve_dispatcher(stack: AsyncExitStack, plugins: PluginManager, config: Config,
                           dispatcher: Dispatcher) -> str:
    """Listen on the role's address with the configured transport; return the bound address."""
    transport = plugins.transport(config.transport)
    dispatcher.limits = serve_limits(config)
    server = await transport.serve(config.server_address(), dispatcher.serve_connection, frame_limits(config))

    async def close() -> None:
        server.close()
        await dispatcher.aclose()
        await server.wait_closed()

    stack.push_async_callback(close)
    return str(server.address)


def connection_pool(stack: AsyncExitStack, plugins: PluginManager, config: Config) -> ConnectionPool:
    pool = ConnectionPool(plugins.transport(config.transport), frame_limits(config))
    stack.push_async_callback(pool.close)
    return pool


def run_in_background(stack: AsyncExitStack, coro: Awaitable[None]) -> None:
    """Run ``coro`` until the role stops; then cancel it and wait for it to end."""
    task = asyncio.ensure_future(coro)

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    stack.push_async_callback(stop)
