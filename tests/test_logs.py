"""Logs: ``HERCULES_LOG_FORMAT=json`` gives one JSON object per line from every role, and a client
that aborts a download is one INFO line in the gateway's log, not an ERROR with a traceback."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hercules_core.errors import NotFound
from hercules_core.logs import JsonFormatter, request_scope
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST, MiB, Http, wait_until

KEYS = {"time", "level", "role", "logger", "message"}


@pytest.fixture(scope="module")
def json_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("logs"), settings={**FAST, "HERCULES_LOG_FORMAT": "json"}) as c:
        yield c


def log_lines(cluster: LocalCluster, name: str) -> list[dict]:
    """The log records of process ``name``; every line but the readiness message must be JSON."""
    records = []
    for line in cluster.procs[name].log_path.read_text().splitlines():
        if not line.strip() or (" ready on " in line and not line.startswith("{")):  # printed, not logged
            continue
        records.append(json.loads(line))
    return records


def test_every_role_logs_one_json_object_per_line(json_cluster: LocalCluster) -> None:
    roles = {"master": "master", "chunk1": "chunkserver", "gateway": "gateway"}
    for name, role in roles.items():
        records = log_lines(json_cluster, name)
        assert records, f"{name} logged nothing"
        for record in records:
            assert KEYS <= record.keys()
            assert record["role"] == role
            assert record["level"] in ("debug", "info", "warning", "error", "critical")
    assert any("serving on" in r["message"] for r in log_lines(json_cluster, "master"))


def test_an_aborted_download_is_one_info_line(json_cluster: LocalCluster) -> None:
    h = Http(json_cluster.gateway_url)
    try:
        assert h.request("PUT", "/api/v1/files/big.bin", os.urandom(16 * MiB))[0] == 201
    finally:
        h.close()
    with socket.create_connection(("127.0.0.1", json_cluster.gateway_port)) as sock:
        sock.sendall(b"GET /api/v1/files/big.bin HTTP/1.1\r\nHost: x\r\nX-Request-Id: abort-me\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
    aborted = wait_until(lambda: [r for r in log_lines(json_cluster, "gateway") if r.get("request_id") == "abort-me"],
                         20, "the gateway to log the aborted download")
    assert len(aborted) == 1
    assert aborted[0]["level"] == "info" and "went away" in aborted[0]["message"]
    gateway = log_lines(json_cluster, "gateway")
    assert [r for r in gateway if r["level"] in ("error", "critical") or "exception" in r] == []
    h = Http(json_cluster.gateway_url)  # and the gateway serves on
    try:
        assert h.request("GET", "/api/v1/fileinfo?path=/big.bin")[0] == 200
    finally:
        h.close()


def test_a_json_line_carries_the_request_id_and_error_code() -> None:
    formatter = JsonFormatter("gateway")
    try:
        raise NotFound("/nope does not exist")
    except NotFound:
        record = logging.LogRecord("hercules_core.x", logging.WARNING, __file__, 1, "lookup failed: %s", ("/nope",),
                                   sys.exc_info())
    with request_scope("req-1"):
        line = json.loads(formatter.format(record))
    assert line["request_id"] == "req-1" and line["code"] == "not_found" and line["role"] == "gateway"
    assert line["message"] == "lookup failed: /nope" and line["level"] == "warning"
    assert "NotFound" in line["exception"]
    plain = json.loads(formatter.format(logging.LogRecord("x", logging.INFO, __file__, 1, "hi", (), None)))
    assert "request_id" not in plain and "code" not in plain and plain["time"].endswith("+00:00")


def test_text_stays_the_default(tmp_path: Path) -> None:
    from hercules_core.config import load_config

    assert load_config(environ={}).log_format == "text"
    assert load_config(environ={"HERCULES_LOG_FORMAT": "JSON"}).log_format == "json"
