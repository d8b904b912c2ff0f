"""Pick the role to run (``--role`` or ``SERVER_TYPE``) and run it until SIGTERM or SIGINT.

Each role's start function lives in its own package (``master/role.py``, ``chunkserver/role.py``,
``gateway/role.py``) and builds the role in the ``AsyncExitStack`` it is given; the helpers they
share are in ``hercules_core.assembly``. Only the chosen role's modules are imported.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

from hercules_core.config import Config, export_for_transports
from hercules_core.errors import HerculesError
from hercules_core.heap import keep_freed
from hercules_core.plugins.manager import PluginManager

log = logging.getLogger(__name__)
Starter = Callable[[AsyncExitStack, PluginManager, Config], Awaitable[str]]
STARTERS: dict[str, str] = {
    "master": "hercules_core.master.role:start_master",
    "chunkserver": "hercules_core.chunkserver.role:start_chunkserver",
    "gateway": "hercules_core.gateway.role:start_gateway",
}


def starter(role: str) -> Starter:
    """The start function of ``role`` (a key of ``STARTERS``)."""
    module, _, name = STARTERS[role].partition(":")
    fn: Starter = getattr(importlib.import_module(module), name)
    return fn


async def serve(config: Config, plugins: PluginManager, ready: Callable[[str], None] | None = None) -> None:
    """Run one role until SIGTERM or SIGINT."""
    if config.role is None:
        raise HerculesError("no role given: use --role or SERVER_TYPE")
    export_for_transports(config)
    keep_freed(config.heap_keep)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        address = await starter(config.role)(stack, plugins, config)
        plugins.freeze()
        if ready is not None:
            ready(address)
        await stop.wait()
        log.info("%s on %s shutting down", config.role, address)


__all__ = ["STARTERS", "serve", "starter"]
