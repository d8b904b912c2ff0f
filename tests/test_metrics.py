"""Prometheus metrics from every role of a real cluster: they exist, they move with traffic,
the cluster view names where each is scraped, and docs/operations.md lists every one."""

from __future__ import annotations

import os
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST, MiB, Http, wait_until

DOC = Path(__file__).parent.parent / "docs" / "operations.md"
CHUNKS = ("chunk1", "chunk2", "chunk3")


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of the page at ``url``: name -> [(labels, value)]."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def scrape_once_counted(url: str, counted: Callable[[dict], bool], timeout: float = 10.0) -> dict:
    """The page at ``url`` once ``counted`` holds for it (or the last scrape after ``timeout``): a
    role counts a transfer's bytes after it wrote them, so a client may hold them all first."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if counted(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def value(samples: dict, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when there are none yet)."""
    return sum(v for have, v in samples.get(name, []) if labels.items() <= have.items())


def exposed(samples: dict, name: str) -> float:
    """``name``'s value, which must be exposed."""
    assert name in samples, f"{name} not exposed; have {sorted(samples)}"
    return value(samples, name)


def test_every_role_counts_requests_and_bytes(cluster: LocalCluster, gw: Http) -> None:
    c = cluster
    before_gw = scrape(c.metrics_url("gateway"))
    before_chunks = [scrape(c.metrics_url(n)) for n in CHUNKS]
    data = os.urandom(3 * MiB + 12345)  # four chunks of 1 MiB, the last one short
    status, _, _ = gw.request("PUT", "/api/v1/files/m/a.bin", data)
    assert status == 201
    status, _, body = gw.request("GET", "/api/v1/files/m/a.bin")
    assert status == 200 and body == data

    route = "/api/v1/files/{path}"
    gateway = scrape_once_counted(c.metrics_url("gateway"), lambda s: value(
        s, "hercules_http_sent_bytes_total", route=route, method="GET") >= len(data)
        and value(s, "hercules_gateway_transfers_in_use") == 0)
    received = value(gateway, "hercules_http_received_bytes_total", route=route, method="PUT")
    assert received - value(before_gw, "hercules_http_received_bytes_total", route=route, method="PUT") == len(data)
    assert value(gateway, "hercules_http_sent_bytes_total", route=route, method="GET") >= len(data)
    assert value(gateway, "hercules_http_request_duration_seconds_count", route=route, method="PUT", status="201") >= 1
    assert value(gateway, "hercules_http_request_duration_seconds_count", route=route, method="GET", status="200") >= 1
    assert exposed(gateway, "hercules_gateway_transfer_slots") == 32
    assert exposed(gateway, "hercules_gateway_transfers_in_use") == 0

    # Every byte reaches three replicas: the chunkservers together were pushed three times the file.
    def read_bytes(pages: list[dict]) -> float:
        return sum(value(a, "hercules_chunkserver_read_bytes_total") - value(b, "hercules_chunkserver_read_bytes_total")
                   for a, b in zip(pages, before_chunks))

    after_chunks = [scrape(c.metrics_url(n)) for n in CHUNKS]
    deadline = time.monotonic() + 10.0
    while read_bytes(after_chunks) < len(data) and time.monotonic() < deadline:  # counted once sent
        time.sleep(0.05)
        after_chunks = [scrape(c.metrics_url(n)) for n in CHUNKS]
    pushed = sum(value(a, "hercules_chunkserver_written_bytes_total") - value(b, "hercules_chunkserver_written_bytes_total")
                 for a, b in zip(after_chunks, before_chunks))
    assert pushed == 3 * len(data)
    assert sum(value(a, "hercules_rpc_received_bytes_total", operation="PushData") for a in after_chunks) \
        >= 3 * len(data)
    assert read_bytes(after_chunks) >= len(data)
    for samples in after_chunks:
        assert value(samples, "hercules_rpc_request_duration_seconds_count", operation="PushData", outcome="ok") >= 1
        assert exposed(samples, "hercules_store_capacity_bytes") > 0
        assert exposed(samples, "hercules_store_used_bytes") > 0
        assert value(samples, "hercules_store_free_bytes") <= value(samples, "hercules_store_capacity_bytes")

    master = scrape(c.metrics_url("master"))
    assert value(master, "hercules_rpc_request_duration_seconds_count", operation="Heartbeat", outcome="ok") >= 1
    assert value(master, "hercules_rpc_request_duration_seconds_count", operation="BeginUpload") >= 1
    assert value(master, "hercules_rpc_request_duration_seconds_bucket", operation="Heartbeat", le="+Inf") >= 1
    assert value(master, "hercules_metadata_commit_seconds_count") >= 1
    assert value(master, "hercules_metadata_commit_batch_size_sum") >= value(master, "hercules_metadata_commit_seconds_count")
    assert value(master, "hercules_leases") >= 1  # the upload's chunks were written under leases
    for name in ("hercules_chunks_under_replicated", "hercules_chunks_missing",
                 "hercules_rereplication_queue_length", "hercules_gc_queue_length"):
        assert exposed(master, name) >= 0


def test_chunks_held_match_between_master_and_chunkservers(cluster: LocalCluster) -> None:
    c = cluster

    def agree() -> bool:
        master = scrape(c.metrics_url("master"))
        for i, name in enumerate(CHUNKS):
            held = value(scrape(c.metrics_url(name)), "hercules_store_chunks")
            if held == 0 or value(master, "hercules_chunkserver_chunks", address=c.chunk_addr(i)) != held:
                return False
        return value(master, "hercules_chunks_located") == value(scrape(c.metrics_url("chunk1")),
                                                                 "hercules_store_chunks")

    wait_until(agree, 10, "the master's chunk counts to match each chunkserver's")


def test_cluster_lists_metrics_urls_that_answer(cluster: LocalCluster, gw: Http) -> None:
    status, info = gw.json("GET", "/api/v1/cluster")
    assert status == 200
    urls = [info["master_metrics_url"], info["gateway_metrics_url"]] + [s["metrics_url"] for s in info["chunkservers"]]
    assert len(urls) == 5
    assert info["master_metrics_url"] == cluster.metrics_url("master")
    assert sorted(s["metrics_url"] for s in info["chunkservers"]) == \
        sorted(cluster.metrics_url(n) for n in CHUNKS)
    for url in urls[:1] + urls[2:]:
        assert "hercules_rpc_request_duration_seconds_count" in scrape(url)
    assert "hercules_http_request_duration_seconds_count" in scrape(info["gateway_metrics_url"])


def test_a_killed_chunkserver_shows_as_dead(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, settings=FAST) as c:
        url = c.metrics_url("master")
        assert value(scrape(url), "hercules_chunkservers", state="alive") == 3
        c.kill("chunk2")
        wait_until(lambda: value(scrape(url), "hercules_chunkservers", state="dead") == 1, 20,
                   "the master's metrics to count chunk2 dead")
        samples = scrape(url)
        assert value(samples, "hercules_chunkservers", state="alive") == 2
        phis = {labels["address"]: v for labels, v in samples["hercules_chunkserver_phi"]}
        assert phis[c.chunk_addr(1)] > max(phis[c.chunk_addr(0)], phis[c.chunk_addr(2)])


def test_zstd_store_reports_its_compression_ratio(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, chunkservers=1, store="zstd", settings={**FAST, "HERCULES_REPLICATION": "1"}) as c:
        h = Http(c.gateway_url)
        try:
            assert h.request("PUT", "/api/v1/files/z.txt", b"hercules " * 100_000)[0] == 201
        finally:
            h.close()
        samples = scrape(c.metrics_url("chunk1"))
        assert value(samples, "hercules_store_compression_input_bytes_total") == 900_000
        assert value(samples, "hercules_store_compression_ratio") > 10


def test_every_exposed_metric_is_documented(cluster: LocalCluster, gw: Http) -> None:
    gw.request("GET", "/health")
    documented = set(re.findall(r"`(hercules_[a-z_]+)`", DOC.read_text()))
    exposed: set[str] = set()
    for name in ("master", "gateway", *CHUNKS):
        with urllib.request.urlopen(cluster.metrics_url(name), timeout=10) as resp:
            for family in text_string_to_metric_families(resp.read().decode()):
                exposed.add(family.name + ("_total" if family.type == "counter" else ""))
    exposed |= {"hercules_store_compression_input_bytes_total", "hercules_store_compression_output_bytes_total",
                "hercules_store_compression_ratio"}  # the zstd store's, tested above
    assert exposed - documented == set(), "add these to docs/operations.md"


def test_metrics_addresses_default_to_the_role_port_plus_1000() -> None:
    from hercules_core.addresses import Address
    from hercules_core.config import load_config

    assert load_config(environ={"SERVER_TYPE": "master_server"}).metrics_address() == Address("127.0.0.1", 10090)
    assert load_config(environ={"SERVER_TYPE": "chunk_server", "SERVER_ADDRESS": "chunkserver2:8082"}
                       ).metrics_address() == Address("chunkserver2", 9082)
    assert load_config(environ={"HERCULES_METRICS_ADDR": "9100"}).metrics_address() == Address("0.0.0.0", 9100)
    assert load_config(environ={"HERCULES_METRICS_ADDR": "off"}).metrics_address() is None


def test_metrics_off_records_and_serves_nothing(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, chunkservers=1, settings={**FAST, "HERCULES_REPLICATION": "1",
                                                          "HERCULES_METRICS_ADDR": "off"}) as c:
        h = Http(c.gateway_url)
        try:
            status, _, _ = h.request("GET", "/metrics")
            assert status == 404
            status, info = h.json("GET", "/api/v1/cluster")
            assert status == 200
            assert info["master_metrics_url"] == info["gateway_metrics_url"] == info["chunkservers"][0]["metrics_url"] == ""
        finally:
            h.close()
