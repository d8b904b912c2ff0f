"""TLS for the native transport (transport_tcp's ``tls`` settings), with a CA made in the test by
the ``openssl`` command: frames cross it, a plaintext or unverified peer is refused, mutual TLS
refuses a dialler without a certificate, and a whole cluster on TLS (and the secret) serves."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path

import attrs
import pytest

from hercules_core.addresses import Address
from hercules_core.framing import Frame, FrameLimits, Kind
from hercules_core.plugins import make_plugin_manager
from hercules_core.plugins.types import FrameConnection, TransportSpec
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST, Http

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@attrs.frozen
class Pki:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path  # a CA that signed nothing here


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _ca(d: Path, name: str) -> tuple[Path, Path]:
    key, cert = d / f"{name}.key", d / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
             "-subj", f"/CN={name}")
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key = _ca(d, "hercules-test-ca")
    other, _ = _ca(d, "stranger-ca")
    key, csr, cert, ext = d / "node.key", d / "node.csr", d / "node.pem", d / "node.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=node")
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
             "-days", "2", "-extfile", ext)
    return Pki(ca, cert, key, other)


def tls_env(pki: Pki, client_auth: bool = False, ca: Path | None = None, cert: bool = True) -> dict[str, str]:
    env = {"HERCULES_TRANSPORT_TCP_TLS": "true", "HERCULES_TRANSPORT_TCP_TLS_CA": str(ca or pki.ca),
           "HERCULES_TRANSPORT_TCP_TLS_CLIENT_AUTH": str(client_auth).lower()}
    if cert:
        env |= {"HERCULES_TRANSPORT_TCP_TLS_CERT": str(pki.cert), "HERCULES_TRANSPORT_TCP_TLS_KEY": str(pki.key)}
    return env


def tcp() -> TransportSpec:
    return make_plugin_manager(strict=True).transport("tcp")


async def echo(conn: FrameConnection) -> None:
    try:
        while True:
            frame = await conn.read_frame()
            await conn.write_frame(Frame(Kind.RESPONSE, frame.request_id, frame.meta, bytes(frame.data)))
    except (EOFError, ConnectionError, OSError):
        pass


def set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in ("HERCULES_TRANSPORT_TCP_TLS_CERT", "HERCULES_TRANSPORT_TCP_TLS_KEY", "HERCULES_CONFIG",
                 "HERCULES_CLUSTER_SECRET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


async def round_trip(address: Address) -> bytes:
    conn = await asyncio.wait_for(tcp().connect(address, FrameLimits()), 10)
    try:
        await conn.write_frame(Frame(Kind.REQUEST, 3, b"\x90", b"over tls" * 1000))
        reply = await asyncio.wait_for(conn.read_frame(), 10)
        return bytes(reply.data)
    finally:
        conn.close()


async def test_frames_cross_tls_and_plaintext_or_unknown_cas_are_refused(pki: Pki,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, tls_env(pki))
    server = await tcp().serve(Address("127.0.0.1", 0), echo, FrameLimits())
    try:
        assert await round_trip(server.address) == b"over tls" * 1000
        set_env(monkeypatch, tls_env(pki, ca=pki.other_ca, cert=False))  # the server's CA is not trusted
        with pytest.raises(ssl.SSLError):
            await round_trip(server.address)
        monkeypatch.setenv("HERCULES_TRANSPORT_TCP_TLS", "false")  # plaintext to a TLS listener
        with pytest.raises((EOFError, ConnectionError, TimeoutError, OSError)):
            await round_trip(server.address)
    finally:
        server.close()
        await server.wait_closed()


async def test_mutual_tls_refuses_a_dialler_without_a_certificate(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, tls_env(pki, client_auth=True))
    server = await tcp().serve(Address("127.0.0.1", 0), echo, FrameLimits())
    try:
        assert await round_trip(server.address) == b"over tls" * 1000  # presents node.pem
        set_env(monkeypatch, tls_env(pki, cert=False))
        with pytest.raises((ssl.SSLError, EOFError, ConnectionError, OSError)):
            await round_trip(server.address)  # TLS 1.3: the refusal may arrive with the first read
    finally:
        server.close()
        await server.wait_closed()


def test_a_cluster_on_mutual_tls_with_the_secret_serves_through_the_gateway(pki: Pki, tmp_path: Path) -> None:
    settings = {**FAST, **tls_env(pki, client_auth=True), "HERCULES_CLUSTER_SECRET": "tls and a secret"}
    data = bytes(range(256)) * 6000
    with LocalCluster(tmp_path, settings=settings) as cluster:
        gw = Http(cluster.gateway_url)
        try:
            assert gw.request("POST", "/api/v1/create", {"path": "/tls.bin"})[0] == 201
            assert gw.request("POST", "/api/v1/write?path=/tls.bin&offset=0", data)[0] in (200, 201)
            status, _, body = gw.request("GET", "/api/v1/read?path=/tls.bin")
            assert status == 200 and body == data
        finally:
            gw.close()
