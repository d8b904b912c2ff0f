"""Native-protocol requests: count, latency and bytes by operation, recorded by the dispatcher."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric

from hercules_core.metrics.histogram import LoopHistogram, Series

# From a cached metadata answer (~100 µs) to a 64 MiB chunk over a slow disk.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RpcMetrics:
    """One role's RPC metrics. ``observe`` is the only call on the hot path (on the event loop): a
    histogram series looked up by (operation, outcome) and integer additions for the data bytes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._duration = LoopHistogram(
            "hercules_rpc_request_duration_seconds",
            "Native-protocol requests answered, by operation (message type) and outcome (ok or the error code)",
            ["operation", "outcome"], LATENCY_BUCKETS)
        registry.register(self._duration)
        self._children: dict[tuple[str, str], Series] = {}
        self.received: dict[str, int] = {}  # data bytes that came with requests, by operation
        self.sent: dict[str, int] = {}  # data bytes that went out with replies, by operation
        registry.register(_ByteCounters(self))

    def observe(self, operation: str, outcome: str, seconds: float, received: int, sent: int) -> None:
        child = self._children.get((operation, outcome))
        if child is None:
            child = self._children[(operation, outcome)] = self._duration.labels(operation, outcome)
        child.observe(seconds)
        if received:
            self.received[operation] = self.received.get(operation, 0) + received
        if sent:
            self.sent[operation] = self.sent.get(operation, 0) + sent


class _ByteCounters:
    """The byte totals as counters, read when scraped (plain integers in between)."""

    def __init__(self, rpc: RpcMetrics) -> None:
        self._rpc = rpc

    def collect(self) -> Iterator[Metric]:
        received = CounterMetricFamily("hercules_rpc_received_bytes",
                                       "Data bytes received with native-protocol requests, by operation",
                                       labels=["operation"])
        sent = CounterMetricFamily("hercules_rpc_sent_bytes",
                                   "Data bytes sent with native-protocol replies, by operation", labels=["operation"])
        for operation, total in sorted(self._rpc.received.items()):
            received.add_metric([operation], total)
        for operation, total in sorted(self._rpc.sent.items()):
            sent.add_metric([operation], total)
        yield received
        yield sent
