"""The gateway's HTTP metrics: one middleware times every route and counts its bytes; transfer
slots are read from the REST routes' semaphore when scraped.

The middleware also names each request (``X-Request-Id``, or a new id) for the logs, and turns a
client that went away mid-response into one INFO line instead of aiohttp's ERROR traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hercules_core.logs import request_scope
from hercules_core.metrics.histogram import LoopHistogram, Series
from hercules_core.metrics.rpc import LATENCY_BUCKETS

log = logging.getLogger(__name__)
TRANSFERS = "transfers"  # GatewayContext.state key of the semaphore bounding streamed transfers
ABORTED = "aborted"  # the status label of a request whose client left before the response was sent


class HttpMetrics:
    """Requests by route, method and status, with latency; request and response bytes by route."""

    def __init__(self, registry: CollectorRegistry, state: dict[str, Any], slots: int,
                 entries: Any = None) -> None:
        self._duration = LoopHistogram("hercules_http_request_duration_seconds",
                                       "Gateway HTTP requests answered, by route, method and status",
                                       ["route", "method", "status"], LATENCY_BUCKETS)
        registry.register(self._duration)
        self._children: dict[tuple[str, str, str], Series] = {}
        self.received: dict[tuple[str, str], int] = {}
        self.sent: dict[tuple[str, str], int] = {}
        registry.register(_GatewayCollector(self, state, slots, entries))

    def observe(self, route: str, method: str, status: str, seconds: float, received: int, sent: int) -> None:
        key = (route, method, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._duration.labels(*key)
        child.observe(seconds)
        if received:
            self.received[route, method] = self.received.get((route, method), 0) + received
        if sent:
            self.sent[route, method] = self.sent.get((route, method), 0) + sent

    @web.middleware
    async def middleware(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        status = "500"
        with request_scope(request.headers.get("X-Request-Id")):
            try:
                response = await handler(request)
                status = str(response.status)
                return response
            except web.HTTPException as exc:
                status = str(exc.status)
                raise
            except ConnectionError:  # reset, or lost while draining: aiohttp would log an ERROR traceback
                status = ABORTED
                log.info("%s %s: the client went away after %d bytes of the response", request.method,
                         request.path, request.writer.output_size if request.writer is not None else 0)
                return web.Response(status=499)  # never sent: the connection is gone
            finally:
                resource = request.match_info.route.resource
                route = resource.canonical if resource is not None else "unmatched"
                writer = request.writer
                self.observe(route, request.method, status, time.perf_counter() - started,
                             request.content.total_bytes, writer.output_size if writer is not None else 0)


class _GatewayCollector:
    def __init__(self, http: HttpMetrics, state: dict[str, Any], slots: int, entries: Any) -> None:
        self._http = http
        self._state = state
        self._slots = slots
        self._entries = entries  # the client's EntryCache, when it caches leased entries

    def collect(self) -> Iterator[Metric]:
        received = CounterMetricFamily("hercules_http_received_bytes",
                                       "Request body bytes the gateway read, by route and method",
                                       labels=["route", "method"])
        sent = CounterMetricFamily("hercules_http_sent_bytes",
                                   "Response bytes (headers and body) the gateway sent, by route and method",
                                   labels=["route", "method"])
        for key, total in sorted(self._http.received.items()):
            received.add_metric(list(key), total)
        for key, total in sorted(self._http.sent.items()):
            sent.add_metric(list(key), total)
        yield received
        yield sent
        transfers = self._state.get(TRANSFERS)
        if isinstance(transfers, asyncio.Semaphore):  # registered by the REST routes
            yield GaugeMetricFamily("hercules_gateway_transfer_slots",
                                    "Uploads and downloads that may stream at once", value=self._slots)
            free = transfers._value  # asyncio.Semaphore has no public count; read, never changed
            yield GaugeMetricFamily("hercules_gateway_transfers_in_use",
                                    "Uploads and downloads streaming now (the rest wait for a slot)",
                                    value=self._slots - free)
        entries = self._entries
        if entries is not None:
            yield GaugeMetricFamily("hercules_gateway_cached_entries",
                                    "Packed files' entries the gateway holds under leases", value=len(entries))
            lookups = CounterMetricFamily("hercules_gateway_entry_lookups",
                                          "Opens of a file by whether a leased entry answered it (hit) or the "
                                          "master was asked (miss)", labels=["outcome"])
            lookups.add_metric(["hit"], entries.hits)
            lookups.add_metric(["miss"], entries.misses)
            yield lookups
