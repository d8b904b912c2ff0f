"""Role assembly: build a master, chunkserver or gateway from config and installed plugins.

Each role enters its plugins' async factories in one ``AsyncExitStack``, serves until
asked to stop (SIGTERM/SIGINT), then unwinds the stack in reverse.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

from hercules_core.config import Config
from hercules_core.errors import HerculesError
from hercules_core.framing import FrameLimits
from hercules_core.plugins.manager import PluginManager
from hercules_core.plugins.types import MetadataContext, StoreContext
from hercules_core.rpc import ConnectionPool, Dispatcher

log = logging.getLogger(__name__)


def frame_limits(config: Config) -> FrameLimits:
    return FrameLimits(max_data=config.max_frame_data)


async def _serve_dispatcher(stack: AsyncExitStack, plugins: PluginManager, config: Config,
                            dispatcher: Dispatcher) -> str:
    transport = plugins.transport(config.transport)
    server = await transport.serve(config.server_address(), dispatcher.serve_connection, frame_limits(config))

    async def close() -> None:
        server.close()
        await dispatcher.aclose()
        await server.wait_closed()

    stack.push_async_callback(close)
    return str(server.address)


def _pool(stack: AsyncExitStack, plugins: PluginManager, config: Config) -> ConnectionPool:
    pool = ConnectionPool(plugins.transport(config.transport), frame_limits(config))
    stack.push_async_callback(pool.close)
    return pool


def _background(stack: AsyncExitStack, coro: Awaitable[None]) -> None:
    task = asyncio.ensure_future(coro)

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    stack.push_async_callback(stop)


async def start_master(stack: AsyncExitStack, plugins: PluginManager, config: Config) -> str:
    from hercules_core.master.maintenance import Maintenance
    from hercules_core.master.service import MasterService

    root = config.data_dir()
    store = await stack.enter_async_context(
        plugins.metadata_store(config.metadata_store).open(MetadataContext(root)))
    placement = plugins.placement(config.placement).create({})
    service = MasterService(config, store, placement, _pool(stack, plugins, config))
    address = await _serve_dispatcher(stack, plugins, config, service.dispatcher)
    _background(stack, Maintenance(service).run())
    log.info("master serving on %s (data in %s)", address, root)
    return address


async def start_chunkserver(stack: AsyncExitStack, plugins: PluginManager, config: Config) -> str:
    from hercules_core.chunkserver.heartbeat import heartbeat_loop
    from hercules_core.chunkserver.scrubber import scrub_loop
    from hercules_core.chunkserver.service import ChunkserverService

    root = config.data_dir()
    store = await stack.enter_async_context(
        plugins.chunk_store(config.chunk_store).open(StoreContext(root / "store", config.store_options())))
    pool = _pool(stack, plugins, config)
    service = ChunkserverService(config, store, pool, str(config.server_address()))
    reports = await service.load()
    address = await _serve_dispatcher(stack, plugins, config, service.dispatcher)
    service.address = address  # the advertised address, with the real port if 0 was asked
    _background(stack, heartbeat_loop(service, reports))
    _background(stack, scrub_loop(service))
    log.info("chunkserver %s serving on %s with %d chunks (store %s)", service.server_id, address,
             len(reports), config.chunk_store)
    return address


async def start_gateway(stack: AsyncExitStack, plugins: PluginManager, config: Config) -> str:
    from hercules_core.gateway.app import start_gateway as start

    return await start(stack, plugins, config)


STARTERS: dict[str, Callable[[AsyncExitStack, PluginManager, Config], Awaitable[str]]] = {
    "master": start_master,
    "chunkserver": start_chunkserver,
    "gateway": start_gateway,
}


async def serve(config: Config, plugins: PluginManager, ready: Callable[[str], None] | None = None) -> None:
    """Run one role until SIGTERM or SIGINT."""
    if config.role is None:
        raise HerculesError("no role given: use --role or SERVER_TYPE")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        address = await STARTERS[config.role](stack, plugins, config)
        plugins.freeze()
        if ready is not None:
            ready(address)
        await stop.wait()
        log.info("%s on %s shutting down", config.role, address)


__all__ = ["STARTERS", "serve"]
