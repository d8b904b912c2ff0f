"""The cluster secret: a process that does not know it can neither register a chunkserver nor
read, write or delete chunks (with the native client or with hand-made frames); one that knows
it can do everything, and a cluster run with it passes a small end-to-end round."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from hercules_core import messages as m
from hercules_core.addresses import Address
from hercules_core.client import connect
from hercules_core.config import cluster_secret, export_for_transports, load_config
from hercules_core.errors import Unauthenticated
from hercules_core.framing import FrameLimits
from hercules_core.plugins import make_plugin_manager
from hercules_core.rpc import ConnectionPool
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST, Http, RawPeer

SECRET = "correct horse battery staple"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("secret"),
                      settings={**FAST, "HERCULES_CLUSTER_SECRET": SECRET}) as c:
        yield c


@pytest.fixture
def with_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERCULES_CLUSTER_SECRET", SECRET)


@pytest.fixture
def without_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HERCULES_CLUSTER_SECRET", raising=False)
    monkeypatch.delenv("HERCULES_CONFIG", raising=False)


def raw_call(address: str, msg: object) -> tuple[object, bool]:
    """One request on a fresh plain socket: the reply, and whether the server then hung up."""
    peer = RawPeer(address)
    try:
        peer.request(msg, request_id=7)
        answer = peer.read_frame()
        assert answer is not None, "closed without an answer"
        return answer[1], peer.read_frame() is None
    finally:
        peer.close()


def stored_file(cluster: LocalCluster, path: str, data: bytes) -> None:
    gw = Http(cluster.gateway_url)
    try:
        assert gw.request("POST", "/api/v1/create", {"path": path})[0] == 201
        assert gw.request("POST", f"/api/v1/write?path={path}&offset=0", data)[0] in (200, 201)
    finally:
        gw.close()


def read_back(cluster: LocalCluster, path: str) -> bytes:
    gw = Http(cluster.gateway_url)
    try:
        status, _, body = gw.request("GET", f"/api/v1/read?path={path}")
        assert status == 200, body
        return body
    finally:
        gw.close()


def test_the_gateway_with_the_secret_serves_end_to_end(secured: LocalCluster) -> None:
    data = bytes(range(256)) * 9000  # a little over two 1 MiB chunks
    stored_file(secured, "/e2e.bin", data)
    assert read_back(secured, "/e2e.bin") == data
    assert secured.health()["chunkservers_alive"] == 3


async def test_a_native_client_with_the_secret_reads_writes_and_deletes(secured: LocalCluster,
                                                                        with_secret: None) -> None:
    client = await connect(secured.master_addr)
    try:
        await client.create("/native.txt")
        await client.write("/native.txt", 0, b"with the secret")
        assert await client.read("/native.txt", 0, 15) == b"with the secret"
        await client.delete("/native.txt")
    finally:
        await client.close()


async def test_a_native_client_without_the_secret_is_refused(secured: LocalCluster, without_secret: None) -> None:
    with pytest.raises(Unauthenticated):
        await connect(secured.master_addr)


async def test_a_native_client_with_a_wrong_secret_is_refused(secured: LocalCluster,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERCULES_CLUSTER_SECRET", "a guess")
    with pytest.raises(Unauthenticated, match="handshake|secret"):
        await connect(secured.master_addr)


def test_raw_frames_cannot_register_a_chunkserver(secured: LocalCluster, tmp_path: Path) -> None:
    fake = m.Register("fake-server", "127.0.0.1:1", 1 << 40, 0, [])
    reply, closed = raw_call(secured.master_addr, fake)
    assert isinstance(reply, m.ErrorReply) and reply.code == "unauthenticated", reply
    assert closed
    reply, _ = raw_call(secured.master_addr, m.FindChunk(1))
    assert isinstance(reply, m.ErrorReply) and reply.code == "unauthenticated", reply
    assert secured.health()["chunkservers_alive"] == 3


def test_raw_frames_cannot_read_write_or_delete_chunks(secured: LocalCluster) -> None:
    data = b"precious " * 1000
    stored_file(secured, "/precious.bin", data)
    for i in range(secured.chunkservers):
        for msg in (m.ReadChunk(1, 1, 0, 100), m.CreateChunk(2**40, 1, 300.0), m.DeleteChunks(list(range(1, 64))),
                    m.WriteChunk(1, 1, 0, "x", [])):
            reply, closed = raw_call(secured.chunk_addr(i), msg)
            assert isinstance(reply, m.ErrorReply) and reply.code == "unauthenticated", (msg, reply)
            assert closed
    assert read_back(secured, "/precious.bin") == data


async def test_the_faults_transport_carries_the_handshake_of_the_one_it_wraps(secured: LocalCluster,
                                                                              with_secret: None) -> None:
    pool = ConnectionPool(make_plugin_manager(strict=True).transport("faults"), FrameLimits())
    try:
        pong, _ = await pool.call(secured.master_addr, m.Ping())
        assert pong.info["chunkservers_alive"] == 3
    finally:
        await pool.close()


def test_a_secret_in_a_config_file_reaches_the_transport_and_is_never_shown(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "hercules.toml"
    file.write_text('cluster_secret = "from-the-file-7f3a"\n')
    for name in ("HERCULES_CONFIG", "HERCULES_CLUSTER_SECRET"):
        monkeypatch.setenv(name, "")  # restored after the test, whatever export_for_transports sets
        monkeypatch.delenv(name)
    config = load_config(environ={}, file=file)
    assert config.cluster_secret == "from-the-file-7f3a"
    assert "from-the-file-7f3a" not in repr(config)
    assert cluster_secret() == b""
    export_for_transports(config)  # what `hercules serve --config FILE` does before its role starts
    assert cluster_secret() == b"from-the-file-7f3a"


def test_a_listener_beyond_loopback_without_the_secret_warns(caplog: pytest.LogCaptureFixture) -> None:
    from hercules_transport_tcp import warn_if_unprotected

    with caplog.at_level(logging.WARNING):
        assert warn_if_unprotected(Address("0.0.0.0", 9090), b"")
        assert warn_if_unprotected(Address("master", 9090), b"")  # a DNS name binds every interface
        assert not warn_if_unprotected(Address("127.0.0.1", 9090), b"")
        assert not warn_if_unprotected(Address("0.0.0.0", 9090), b"set")
    assert sum("without a cluster secret" in r.getMessage() for r in caplog.records) == 2


async def test_a_client_with_a_secret_is_told_when_the_cluster_has_none(cluster: LocalCluster,
                                                                        with_secret: None) -> None:
    with pytest.raises(Unauthenticated, match="HERCULES_CLUSTER_SECRET"):
        await connect(cluster.master_addr)
