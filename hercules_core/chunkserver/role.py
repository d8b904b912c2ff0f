"""Start a chunkserver: its chunk store from a plugin, the service, heartbeats and the scrubber."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

from hercules_core.assembly import connection_pool, run_in_background, serve_dispatcher
from hercules_core.chunkserver.heartbeat import heartbeat_loop
from hercules_core.chunkserver.scrubber import scrub_loop
from hercules_core.chunkserver.service import ChunkserverService
from hercules_core.config import Config
from hercules_core.metrics.wiring import chunkserver_metrics
from hercules_core.plugins.manager import PluginManager
from hercules_core.plugins.types import StoreContext

log = logging.getLogger(__name__)


async def start_chunkserver(stack: AsyncExitStack, plugins: PluginManager, config: Config) -> str:
    """Serve chunks until ``stack`` unwinds; return the address served on (the master is told
    ``advertise_addr`` instead when set)."""
    root = config.data_dir()
    store_spec = plugins.chunk_store(config.chunk_store)
    store = await stack.enter_async_context(store_spec.open(StoreContext(root / "store", config.store_options(store_spec))))
    pool = connection_pool(stack, plugins, config)
    service = ChunkserverService(config, store, pool, str(config.server_address()))
    reports = await service.load()
    address = await serve_dispatcher(stack, plugins, config, service.dispatcher)
    service.address = advertised(config.advertise_addr, address)  # with the real port if 0 was asked
    service.replicas.metrics_url = await chunkserver_metrics(stack, config, service, service.address)
    run_in_background(stack, heartbeat_loop(service, reports))
    run_in_background(stack, scrub_loop(service))
    log.info("chunkserver %s serving on %s with %d chunks (store %s)", service.server_id, address,
             len(reports), config.chunk_store)
    return address


def advertised(advertise: str | None, bound: str) -> str:
    """``HERCULES_ADVERTISE_ADDR`` as given, a bare host with the bound port, or the bound address."""
    if not advertise:
        return bound
    return advertise if ":" in advertise else f"{advertise}:{bound.rsplit(':', 1)[1]}"
