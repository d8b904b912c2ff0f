"""The master's state as gauges, read from its soft state and metadata store when scraped."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric, SummaryMetricFamily

from hercules_core.master.cluster import Cluster


class MasterCollector:
    """Chunkservers, chunks, leases and queues from ``cluster``; commit statistics from ``store``
    when it keeps them (``counters`` with ``batches``, ``mutations`` and ``commit_seconds``, as the
    SQLite store does)."""

    def __init__(self, cluster: Cluster, store: Any, leases: Any = None) -> None:
        self._cluster = cluster
        self._store = store
        self._leases = leases  # EntryLeases: on entries clients cache

    def collect(self) -> Iterator[Metric]:
        cluster, now = self._cluster, time.monotonic()
        states = GaugeMetricFamily("hercules_chunkservers", "Chunkservers the master knows, by state (alive, dead)",
                                   labels=["state"])
        phi = GaugeMetricFamily("hercules_chunkserver_phi",
                                "Heartbeat phi (suspicion) of each chunkserver; dead past the threshold",
                                labels=["server_id", "address"])
        held = GaugeMetricFamily("hercules_chunkserver_chunks", "Chunk replicas the master locates on each chunkserver",
                                 labels=["server_id", "address"])
        alive = 0
        for server in cluster.servers.values():
            alive += cluster.alive(server.server_id, now)
            phi.add_metric([server.server_id, server.address], server.detector.phi(now))
            held.add_metric([server.server_id, server.address], len(server.held))
        states.add_metric(["alive"], alive)
        states.add_metric(["dead"], len(cluster.servers) - alive)
        yield from (states, phi, held)
        yield GaugeMetricFamily("hercules_chunks_located", "Chunks with at least one known replica",
                                value=len(cluster.locations))
        yield GaugeMetricFamily("hercules_chunks_under_replicated",
                                "Chunks with fewer live replicas than their replication factor",
                                value=cluster.under_replicated)
        yield GaugeMetricFamily("hercules_chunks_missing", "Chunks in the namespace that no chunkserver reported",
                                value=cluster.missing)
        yield GaugeMetricFamily("hercules_leases", "Chunk leases granted and not yet expired",
                                value=sum(1 for lease in cluster.leases.values() if lease.live(now)))
        yield GaugeMetricFamily("hercules_rereplication_queue_length",
                                "Chunks waiting for their replica count to be checked and repaired",
                                value=len(cluster.suspect))
        yield GaugeMetricFamily("hercules_gc_queue_length",
                                "Replicas the master wants deleted and no chunkserver has confirmed gone",
                                value=sum(map(len, cluster.pending_delete.values()))
                                + sum(map(len, cluster.deleting.values())))
        if self._leases is not None:
            yield GaugeMetricFamily("hercules_entry_lease_holders",
                                    "Clients (gateways) with a live session of leased entries",
                                    value=self._leases.holders())
            yield GaugeMetricFamily("hercules_entry_leases", "Paths leased to at least one holder",
                                    value=self._leases.leased())
        yield from self._commits()

    def _commits(self) -> Iterator[Metric]:
        counters = getattr(self._store, "counters", None)
        if not isinstance(counters, dict) or "batches" not in counters:
            return
        yield SummaryMetricFamily("hercules_metadata_commit_seconds",
                                  "Metadata-store commits (one fsync each) and the time they took",
                                  count_value=counters["batches"], sum_value=counters.get("commit_seconds", 0.0))
        yield SummaryMetricFamily("hercules_metadata_commit_batch_size",
                                  "Mutations per metadata-store commit (group commit)",
                                  count_value=counters["batches"], sum_value=counters.get("mutations", 0))
