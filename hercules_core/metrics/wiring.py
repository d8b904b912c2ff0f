"""Attach metrics to each role as its start function builds it: one registry per role (tests run
several roles in one process), the dispatcher's recorder, the role's collectors, the listener.

``HERCULES_METRICS_ADDR=off`` turns a role's metrics off altogether: nothing is recorded and no
``/metrics`` is served (the gateway's included), which is how their cost is measured."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web

from hercules_core.addresses import Address
from hercules_core.config import Config
from hercules_core.metrics.listener import MetricsEndpoint, serve_metrics
from hercules_core.metrics.rpc import RpcMetrics
from hercules_core.rpc import Dispatcher


def instrument(dispatcher: Dispatcher) -> tuple[MetricsEndpoint, RpcMetrics]:
    """A registry for a role serving the native protocol, its dispatcher recording into it."""
    endpoint = MetricsEndpoint()
    dispatcher.metrics = RpcMetrics(endpoint.registry)
    return endpoint, dispatcher.metrics


async def listen(stack: AsyncExitStack, config: Config, endpoint: MetricsEndpoint, served_on: str) -> str:
    """Serve ``endpoint`` where ``config`` says (``""`` when metrics are off); return the URL."""
    address = config.metrics_address()
    if address is None:
        return ""
    return await serve_metrics(stack, endpoint, address, advertise=Address.parse(served_on).host)


async def master_metrics(stack: AsyncExitStack, config: Config, service: Any, store: Any, served_on: str) -> str:
    from hercules_core.metrics.master import MasterCollector

    if config.metrics_address() is None:
        return ""
    endpoint, _ = instrument(service.dispatcher)
    endpoint.registry.register(MasterCollector(service.authority.cluster, store, service.authority.leases))
    return await listen(stack, config, endpoint, served_on)


async def chunkserver_metrics(stack: AsyncExitStack, config: Config, service: Any, served_on: str) -> str:
    from hercules_core.metrics.chunkserver import ChunkserverCollector

    if config.metrics_address() is None:
        return ""
    endpoint, rpc = instrument(service.dispatcher)
    collector = ChunkserverCollector(service.replicas, rpc)
    endpoint.registry.register(collector)
    endpoint.refreshers.append(collector.refresh)
    return await listen(stack, config, endpoint, served_on)


def gateway_metrics(app: web.Application, state: dict[str, Any], config: Config, entries: Any = None) -> None:
    """``/metrics`` on the gateway's own port, and the middleware timing every route (outermost,
    so it sees the status the error middleware chose)."""
    from hercules_core.metrics.gateway import HttpMetrics

    if config.metrics_addr == "off":
        return
    endpoint = MetricsEndpoint()
    http = HttpMetrics(endpoint.registry, state, config.gateway_max_inflight, entries)
    app.middlewares.insert(0, http.middleware)
    app.router.add_get("/metrics", endpoint.handle)
