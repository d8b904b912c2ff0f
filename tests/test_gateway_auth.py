"""Gateway authentication: every REST endpoint refuses a request without a valid bearer token (401),
a read-only token on a write and a token for another prefix (403); /health stays open; the
credentials file is re-read on SIGHUP; ``hercules token create`` writes an entry."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hercules_core.gateway.auth import token_hash
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST, Http, wait_until

TOKENS = {"admin": "tok-admin", "writer": "tok-writer", "reader": "tok-reader", "other": "tok-other"}
CREDENTIALS = f"""
[[principal]]
name = "admin"
token_sha256 = "{token_hash(TOKENS['admin'])}"
access = "admin"

[[principal]]
name = "writer"
token = "{TOKENS['writer']}"
access = "write"
prefix = "/w"

[[principal]]
name = "reader"
token_sha256 = "{token_hash(TOKENS['reader'])}"
access = "read"

[[principal]]
name = "other"
token_sha256 = "{token_hash(TOKENS['other'])}"
access = "write"
prefix = "/other"
"""

# Every REST endpoint, with the access it needs, and a request naming a path under /w.
ENDPOINTS = [
    ("POST", "/api/v1/mkdir", {"path": "/w/d"}, "write"),
    ("POST", "/api/v1/create", {"path": "/w/c"}, "write"),
    ("DELETE", "/api/v1/delete?path=/w/x", None, "write"),
    ("DELETE", "/api/v1/delete", {"path": "/w/x"}, "write"),
    ("PATCH", "/api/v1/rename", {"source": "/w/a", "target": "/w/b"}, "write"),
    ("GET", "/api/v1/list?path=/w", None, "read"),
    ("GET", "/api/v1/fileinfo?path=/w/f", None, "read"),
    ("GET", "/api/v1/read?path=/w/f", None, "read"),
    ("POST", "/api/v1/write?path=/w/f", b"data", "write"),
    ("PATCH", "/api/v1/append?path=/w/f", b"data", "write"),
    ("GET", "/api/v1/chunk/handle?path=/w/f&index=0", None, "admin"),
    ("GET", "/api/v1/chunk/servers?handle=1", None, "admin"),
    ("GET", "/api/v1/cluster", None, "admin"),
    ("POST", "/api/v1/snapshot", {"source": "/w/f", "target": "/w/s"}, "write"),
    ("POST", "/api/v1/undelete", {"path": "/w/x"}, "write"),
    ("GET", "/api/v1/trash", None, "admin"),
    ("PUT", "/api/v1/files/w/put", b"data", "write"),
    ("GET", "/api/v1/files/w/f", None, "read"),
    ("HEAD", "/api/v1/files/w/f", None, "read"),
    ("DELETE", "/api/v1/files/w/x", None, "write"),
]
IDS = [f"{m} {p}" for m, p, _, _ in ENDPOINTS]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, Path]]:
    root = tmp_path_factory.mktemp("auth")
    creds = root / "credentials.toml"
    creds.write_text(CREDENTIALS)
    with LocalCluster(root / "cluster", settings={**FAST, "HERCULES_AUTH_FILE": str(creds)}) as c:
        h = Http(c.gateway_url)
        bearer = {"Authorization": f"Bearer {TOKENS['admin']}"}
        for folder in ("/w", "/other"):
            assert h.json("POST", "/api/v1/mkdir", {"path": folder}, bearer)[0] == 201
        assert h.request("PUT", "/api/v1/files/w/f", b"hello", bearer)[0] == 201
        h.close()
        yield c, creds


@pytest.fixture
def http(secured: tuple[LocalCluster, Path]) -> Iterator[Http]:
    h = Http(secured[0].gateway_url)
    yield h
    h.close()


def _as(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _error_code(status: int, data: bytes, method: str, expected: str) -> str:
    """The error's code (a HEAD answer has no body: then ``expected``)."""
    return expected if method == "HEAD" else json.loads(data)["error"]["code"]


def test_health_needs_no_token(http: Http) -> None:
    status, body = http.json("GET", "/health")
    assert status == 200 and body["status"] == "ok"


@pytest.mark.parametrize(("method", "path", "body", "access"), ENDPOINTS, ids=IDS)
@pytest.mark.parametrize("token", [None, "wrong-token", "Basic"], ids=["none", "wrong", "basic"])
def test_every_endpoint_needs_a_valid_token(http: Http, method: str, path: str, body: object, access: str,
                                            token: str | None) -> None:
    headers = {"Authorization": "Basic YWRtaW46YWRtaW4="} if token == "Basic" else _as(token)
    status, response_headers, data = http.request(method, path, body, headers)
    assert status == 401
    assert response_headers["www-authenticate"].startswith("Bearer")
    assert _error_code(status, data, method, "unauthenticated") == "unauthenticated"
    assert b"tok-" not in data


@pytest.mark.parametrize(("method", "path", "body", "access"), [e for e in ENDPOINTS if e[3] != "read"],
                         ids=[i for i, e in zip(IDS, ENDPOINTS) if e[3] != "read"])
def test_a_read_only_token_may_not_write(http: Http, method: str, path: str, body: object, access: str) -> None:
    status, _, data = http.request(method, path, body, _as(TOKENS["reader"]))
    assert status == 403
    assert _error_code(status, data, method, "forbidden") == "forbidden"


@pytest.mark.parametrize(("method", "path", "body", "access"), [e for e in ENDPOINTS if e[3] != "admin"],
                         ids=[i for i, e in zip(IDS, ENDPOINTS) if e[3] != "admin"])
def test_a_token_for_another_prefix_is_refused(http: Http, method: str, path: str, body: object,
                                               access: str) -> None:
    status, _, data = http.request(method, path, body, _as(TOKENS["other"]))
    assert status == 403
    assert _error_code(status, data, method, "forbidden") == "forbidden"


@pytest.mark.parametrize(("method", "path", "body", "access"), [e for e in ENDPOINTS if e[3] == "admin"],
                         ids=[i for i, e in zip(IDS, ENDPOINTS) if e[3] == "admin"])
def test_cluster_operations_need_admin(http: Http, method: str, path: str, body: object, access: str) -> None:
    status, _, _ = http.request(method, path, body, _as(TOKENS["writer"]))
    assert status == 403
    status, _, _ = http.request(method, path, body, _as(TOKENS["admin"]))
    assert status not in (401, 403)


def test_a_rename_out_of_the_prefix_is_refused(http: Http) -> None:
    status, _, _ = http.request("PATCH", "/api/v1/rename", {"source": "/w/f", "target": "/other/f"},
                                _as(TOKENS["writer"]))
    assert status == 403
    assert http.request("GET", "/api/v1/files/w/f", None, _as(TOKENS["reader"]))[2] == b"hello"


def test_tokens_within_their_scope_work(http: Http) -> None:
    writer = _as(TOKENS["writer"])
    assert http.request("PUT", "/api/v1/files/w/mine", b"abc", writer)[0] == 201
    assert http.json("POST", "/api/v1/mkdir", {"path": "/w/sub"}, writer)[0] == 201
    assert http.request("GET", "/api/v1/files/w/mine", None, _as(TOKENS["reader"]))[2] == b"abc"
    status, listing = http.json("GET", "/api/v1/list?path=/w", None, writer)
    assert status == 200 and {e["name"] for e in listing["entries"]} >= {"mine", "sub", "f"}
    assert http.request("GET", "/api/v1/files/w/mine", None, _as(TOKENS["other"]))[0] == 403


def test_token_create_and_sighup_reload(secured: tuple[LocalCluster, Path], http: Http) -> None:
    cluster, creds = secured
    out = subprocess.run([sys.executable, "-m", "hercules_core", "token", "create", "late", "--access", "read",
                          "--prefix", "/w", "--file", str(creds)], capture_output=True, text=True, check=True)
    token = out.stdout.split("token for late: ")[1].split()[0]
    assert token not in creds.read_text() and token_hash(token) in creds.read_text()
    assert http.request("GET", "/api/v1/files/w/f", None, _as(token))[0] == 401  # not loaded yet
    cluster.process("gateway").signal(signal.SIGHUP)
    wait_until(lambda: http.request("GET", "/api/v1/files/w/f", None, _as(token))[0] == 200, 10,
               "the gateway to load the new principal")
    assert http.request("GET", "/api/v1/files/other", None, _as(token))[0] == 403
    assert cluster.process("gateway").running
    log = (cluster.root / "logs" / "gateway.log").read_text()
    assert token not in log and not any(t in log for t in TOKENS.values())


def test_a_broken_file_keeps_the_previous_principals(secured: tuple[LocalCluster, Path], http: Http) -> None:
    cluster, creds = secured
    good = creds.read_text()
    creds.write_text(good + "\n[[principal]\nname = ")
    try:
        cluster.process("gateway").signal(signal.SIGHUP)
        wait_until(lambda: "credentials not reloaded" in (cluster.root / "logs" / "gateway.log").read_text(), 10,
                   "the gateway to refuse the broken file")
        assert http.request("GET", "/api/v1/files/w/f", None, _as(TOKENS["reader"]))[0] == 200
    finally:
        creds.write_text(good)
