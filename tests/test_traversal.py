"""Confinement: traversal-shaped paths (``../``, ``%2e%2e%2f``, NUL, overlong, absolute handles) in
URLs, queries and JSON bodies are refused or stay inside the namespace; no answer is a 5xx, and no
file outside a role's ROOT_DIR changes (a canary beside them proves it)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST, Http

CANARY = b"canary: must never change\n"
DOTS = ["..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "..%2f..", "%2e%2e%2f%2e%2e", "..%5c..", "%252e%252e"]
NAMES = ["../../../../canary", "..\\..\\canary", "/../canary", "a/../../canary", "a/./../b", "./canary",
         "canary\x00.txt", "\x00", "a" * 5000, "/".join(["a"] * 3000), "a/" + "b" * 300, "//etc//passwd",
         "/etc/passwd", "~/canary", "%00", "..%00/canary"]


@pytest.fixture(scope="module")
def confined(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, Path]]:
    root = tmp_path_factory.mktemp("traversal")
    with LocalCluster(root / "cluster", settings=FAST) as c:
        canary = c.root / "canary"  # beside master/ and chunk*/ (each role's ROOT_DIR)
        canary.write_bytes(CANARY)
        h = Http(c.gateway_url)
        assert h.json("POST", "/api/v1/mkdir", {"path": "/jail"})[0] == 201
        assert h.request("PUT", "/api/v1/files/jail/f", b"inside")[0] == 201
        h.close()
        yield c, canary


def _outside(cluster: LocalCluster) -> dict[str, tuple[int, int]]:
    """Every file of the cluster's directory outside the roles' ROOT_DIRs and logs: (size, mtime)."""
    roots = {"master", "logs", *(f"chunk{i + 1}" for i in range(cluster.chunkservers))}
    found = {}
    for top, dirs, files in os.walk(cluster.root):
        if Path(top) == cluster.root:
            dirs[:] = [d for d in dirs if d not in roots]
        for name in files:
            st = (Path(top) / name).stat()
            found[str(Path(top) / name)] = (st.st_size, st.st_mtime_ns)
    return found


def _requests() -> Iterator[tuple[str, str, object]]:
    for dots in DOTS:
        for tail in ("canary", "etc/passwd", "master/metadata.db"):
            yield "GET", f"/api/v1/files/jail/{dots}/{dots}/{tail}", None
            yield "PUT", f"/api/v1/files/jail/{dots}/{dots}/{tail}", b"pwned"
            yield "DELETE", f"/api/v1/files/jail/{dots}/{dots}/{tail}", None
            yield "GET", f"/api/v1/read?path=/jail/{dots}/{dots}/{tail}", None
            yield "POST", f"/api/v1/write?path=/jail/{dots}/{dots}/{tail}", b"pwned"
    for name in NAMES:
        for path in (name, "/jail/" + name):
            yield "POST", "/api/v1/mkdir", {"path": path}
            yield "POST", "/api/v1/create", {"path": path}
            yield "PATCH", "/api/v1/rename", {"source": "/jail/f", "target": path}
            yield "POST", "/api/v1/snapshot", {"source": "/jail", "target": path}
            yield "DELETE", "/api/v1/delete", {"path": path, "recursive": True}
            yield "POST", "/api/v1/undelete", {"path": path}
    for handle in ["../../canary", "/etc/passwd", "-1", "0", str(2**63), str(2**64), "1e3", "0x10", "%00", "1%00"]:
        yield "GET", f"/api/v1/chunk/servers?handle={handle}", None
        yield "GET", f"/api/v1/chunk/handle?path=/jail/f&index={handle}", None


def test_traversal_attempts_are_refused_and_nothing_outside_root_dir_changes(
        confined: tuple[LocalCluster, Path]) -> None:
    cluster, canary = confined
    before = _outside(cluster)
    h = Http(cluster.gateway_url)
    answered = 0
    for method, path, body in _requests():
        encoded = path.replace("\x00", "%00")
        if isinstance(body, dict):
            status, _, data = h.request(method, encoded, json.dumps(body).encode(),
                                        {"Content-Type": "application/json"})
        else:
            status, _, data = h.request(method, encoded, body)
        assert status < 500, (method, path, status, data[:200])
        if status >= 400:
            assert set(json.loads(data)["error"]) == {"code", "message"}, (method, path, data[:200])
        answered += 1
    h.close()
    assert answered > 300
    assert canary.read_bytes() == CANARY
    assert _outside(cluster) == before
    assert not (cluster.root.parent / "pwned").exists()


def test_dot_segments_in_a_decoded_path_are_refused(confined: tuple[LocalCluster, Path]) -> None:
    cluster, _ = confined
    h = Http(cluster.gateway_url)
    for path in ("/api/v1/files/jail/%2e%2e/%2e%2e/canary", "/api/v1/read?path=/jail/%2e%2e/canary",
                 "/api/v1/fileinfo?path=/jail/..%2f..%2fcanary", "/api/v1/fileinfo?path=/jail/f%00"):
        status, body = h.json("GET", path)
        assert status == 400 and body["error"]["code"] == "invalid_argument", (path, body)
    status, body = h.json("POST", "/api/v1/mkdir", {"path": "/jail/\u0000x"})
    assert status == 400 and "NUL" in body["error"]["message"]
    status, body = h.json("GET", "/api/v1/fileinfo?path=relative/path")
    assert status == 400 and "absolute" in body["error"]["message"]
    assert h.request("GET", "/api/v1/files/jail/f")[2] == b"inside"
    h.close()
