"""``/metrics`` over HTTP: a handler for any aiohttp application (the gateway's own port) and a
small listener of its own for the master and each chunkserver (``HERCULES_METRICS_ADDR``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import attrs
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, disable_created_metrics, generate_latest

from hercules_core.addresses import Address

log = logging.getLogger(__name__)
Refresh = Callable[[], Awaitable[None]]


@attrs.define
class MetricsEndpoint:
    """A role's registry and what must be read asynchronously (a store's disk usage) before a scrape."""

    registry: CollectorRegistry = attrs.field(factory=lambda: CollectorRegistry(auto_describe=True))
    refreshers: list[Refresh] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        disable_created_metrics()  # no ``_created`` series beside each histogram: nobody queries them

    async def render(self) -> bytes:
        for refresh in self.refreshers:
            try:
                await refresh()
            except Exception as exc:  # noqa: BLE001 - a scrape shows the last values rather than fail
                log.warning("metrics: refreshing state failed: %s", exc)
        return generate_latest(self.registry)

    async def handle(self, request: web.Request) -> web.Response:
        body = await self.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def serve_metrics(stack: AsyncExitStack, endpoint: MetricsEndpoint, address: Address,
                        advertise: str | None = None) -> str:
    """Serve ``/metrics`` on ``address`` until ``stack`` unwinds; return its URL.

    The URL names ``advertise`` (the role's advertised host) when the listener binds every interface.
    """
    app = web.Application()
    app.router.add_get("/metrics", endpoint.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, address.bind_host(), address.port, reuse_address=True).start()
    host = address.host
    if host == "0.0.0.0" and advertise:
        host = advertise
    url = f"http://{Address(host, runner.addresses[0][1])}/metrics"
    log.info("metrics on %s", url)
    return url
