"""A chunkserver's state as gauges: chunks, leases, its store's disk and compression."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hercules_core.metrics.rpc import RpcMetrics
from hercules_core.plugins.types import StoreUsage

# The bytes of every write and append reach a replica one of these ways: pushed along the chain,
# or inline with a small record's append (at the primary) and its mutation (at a secondary).
WRITE_OPERATIONS = ("PushData", "AppendChunk", "ApplyMutation")
READ_OPERATIONS = ("ReadChunk",)


class ChunkserverCollector:
    """Read when scraped; ``refresh`` (awaited first) fetches the store's usage, which is async."""

    def __init__(self, replicas: Any, rpc: RpcMetrics) -> None:
        self._replicas = replicas
        self._rpc = rpc
        self.usage: StoreUsage | None = None

    async def refresh(self) -> None:
        self.usage = await self._replicas.store.usage()

    def collect(self) -> Iterator[Metric]:
        replicas = self._replicas
        yield GaugeMetricFamily("hercules_store_chunks", "Chunks this chunkserver holds", value=len(replicas.chunks))
        yield GaugeMetricFamily("hercules_chunkserver_leases", "Leases this chunkserver holds as a chunk's primary",
                                value=len(replicas.held_leases()))
        yield CounterMetricFamily("hercules_chunkserver_written_bytes", "Bytes pushed here to be written",
                                  value=sum(self._rpc.received.get(op, 0) for op in WRITE_OPERATIONS))
        yield CounterMetricFamily("hercules_chunkserver_read_bytes", "Chunk bytes read from here",
                                  value=sum(self._rpc.sent.get(op, 0) for op in READ_OPERATIONS))
        yield CounterMetricFamily("hercules_chunkserver_appended_records",
                                  "Records appended here as the chunk's primary", value=replicas.appended_records)
        yield CounterMetricFamily("hercules_chunkserver_append_mutations",
                                  "Mutations that carried them (queued records go together)",
                                  value=replicas.append_mutations)
        if self.usage is not None:
            used, capacity = self.usage.used_bytes, self.usage.capacity_bytes
            yield GaugeMetricFamily("hercules_store_used_bytes", "Bytes the chunk store uses", value=used)
            yield GaugeMetricFamily("hercules_store_capacity_bytes", "Bytes the chunk store may use", value=capacity)
            yield GaugeMetricFamily("hercules_store_free_bytes", "Bytes left for the chunk store",
                                    value=max(0, capacity - used))
        totals = getattr(replicas.store, "compression_totals", None)
        if totals is not None:  # a compressing store (zstd): block bytes in, frame bytes out
            raw, stored = totals
            yield CounterMetricFamily("hercules_store_compression_input_bytes",
                                      "Block bytes given to the compressor", value=raw)
            yield CounterMetricFamily("hercules_store_compression_output_bytes",
                                      "Compressed bytes written for them", value=stored)
            yield GaugeMetricFamily("hercules_store_compression_ratio",
                                    "Input over output bytes of everything compressed since start (1 before any)",
                                    value=raw / stored if stored else 1.0)
