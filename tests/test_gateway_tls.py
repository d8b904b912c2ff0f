"""HTTPS: given HERCULES_TLS_CERT/KEY (from a CA made in the test) the gateway serves REST, and the
S3 port when installed, over TLS only; a client that does not trust the CA is refused."""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hercules_core.testing.cluster import LocalCluster, s3_installed
from tests.helpers import FAST
from tests.tls_certs import Certificates, make_ca


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, Certificates]]:
    root = tmp_path_factory.mktemp("tls")
    certs = make_ca(root / "ca")
    cluster = LocalCluster(root / "cluster", chunkservers=1,
                           settings={**FAST, "HERCULES_REPLICATION": "1", "HERCULES_TLS_CERT": str(certs.cert),
                                     "HERCULES_TLS_KEY": str(certs.key)})
    try:
        cluster.start_master()
        cluster.start_chunkserver(0)
        cluster.start_gateway()
        _wait_live(cluster.gateway_port, _trusting(certs))
        yield cluster, certs
    finally:
        cluster.stop()


def _trusting(certs: Certificates) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs.ca_cert))


def _https(port: int, context: ssl.SSLContext) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)


def _wait_live(port: int, context: ssl.SSLContext, timeout: float = 30.0) -> None:
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            conn = _https(port, context)
            conn.request("GET", "/health")
            body = json.loads(conn.getresponse().read())
            conn.close()
            if body.get("chunkservers_alive") == 1:
                return
            last = body
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"the HTTPS gateway did not come up: {last}")


def test_rest_over_https_end_to_end(tls_cluster: tuple[LocalCluster, Certificates]) -> None:
    cluster, certs = tls_cluster
    conn = _https(cluster.gateway_port, _trusting(certs))
    data = bytes(range(256)) * 8192  # 2 MiB: two chunks
    conn.request("PUT", "/api/v1/files/secure.bin", body=data)
    response = conn.getresponse()
    assert response.status == 201, response.read()
    response.read()
    conn.request("GET", "/api/v1/files/secure.bin")
    response = conn.getresponse()
    assert response.status == 200 and response.read() == data
    conn.request("GET", "/api/v1/fileinfo?path=/missing")
    response = conn.getresponse()
    assert response.status == 404 and json.loads(response.read())["error"]["code"] == "not_found"
    conn.close()


def test_a_client_that_does_not_trust_the_ca_is_refused(tls_cluster: tuple[LocalCluster, Certificates]) -> None:
    cluster, _ = tls_cluster
    conn = _https(cluster.gateway_port, ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        conn.request("GET", "/health")
    conn.close()


def test_plain_http_gets_no_answer(tls_cluster: tuple[LocalCluster, Certificates]) -> None:
    cluster, _ = tls_cluster
    conn = http.client.HTTPConnection("127.0.0.1", cluster.gateway_port, timeout=30)
    with pytest.raises((http.client.HTTPException, OSError)):
        conn.request("GET", "/health")
        conn.getresponse().read()
    conn.close()


@pytest.mark.skipif(not s3_installed(), reason="the hercules-s3 plugin is not installed")
def test_the_s3_port_serves_https(tls_cluster: tuple[LocalCluster, Certificates]) -> None:
    cluster, certs = tls_cluster
    conn = _https(cluster.s3_port, _trusting(certs))
    conn.request("GET", "/")
    response = conn.getresponse()
    assert 200 <= response.status < 500  # an S3 answer (possibly an S3 error), over TLS
    response.read()
    conn.close()


def test_half_a_tls_configuration_fails_at_start(tmp_path: Path) -> None:
    certs = make_ca(tmp_path / "ca")
    cluster = LocalCluster(tmp_path / "cluster", chunkservers=0, settings={"HERCULES_TLS_CERT": str(certs.cert)})
    try:
        cluster.start_master()
        with pytest.raises(RuntimeError):
            cluster.start_gateway()
        assert "tls_key" in (cluster.root / "logs" / "gateway.log").read_text()
    finally:
        cluster.stop()
