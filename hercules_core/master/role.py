"""Start the master: metadata store and placement from plugins, the service, its maintenance."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

from hercules_core.assembly import connection_pool, run_in_background, serve_dispatcher
from hercules_core.config import Config
from hercules_core.master.maintenance import Maintenance
from hercules_core.master.service import MasterService
from hercules_core.metrics.wiring import master_metrics
from hercules_core.plugins.manager import PluginManager
from hercules_core.plugins.types import MetadataContext

log = logging.getLogger(__name__)


async def start_master(stack: AsyncExitStack, plugins: PluginManager, config: Config) -> str:
    """Serve the master's native protocol until ``stack`` unwinds; return the bound address."""
    root = config.data_dir()
    store_spec = plugins.metadata_store(config.metadata_store)
    store = await stack.enter_async_context(store_spec.open(MetadataContext(root, config.plugin_options(store_spec))))
    placement_spec = plugins.placement(config.placement)
    placement = placement_spec.create(config.plugin_options(placement_spec))
    service = MasterService(config, store, placement, connection_pool(stack, plugins, config))
    address = await serve_dispatcher(stack, plugins, config, service.dispatcher)
    service.reports.metrics_url = await master_metrics(stack, config, service, store, address)
    run_in_background(stack, Maintenance(service.authority).run())
    run_in_background(stack, service.reports.end_restore_grace())
    run_in_background(stack, service.packs.run())
    log.info("master serving on %s (data in %s)", address, root)
    return address
