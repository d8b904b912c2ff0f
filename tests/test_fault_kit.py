"""The fault kit: each LocalCluster fault helper and the ``faults`` transport do what they say."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import pytest

from hercules_core import messages as m
from hercules_core.addresses import Address
from hercules_core.client import Client
from hercules_core.config import plugin_options
from hercules_core.errors import ChecksumMismatch, ConfigError, StaleVersion, Unavailable
from hercules_core.framing import FrameLimits
from hercules_core.plugins import make_plugin_manager
from hercules_core.testing.cluster import LocalCluster
from hercules_transport_faults import Rule, parse_rules
from tests.helpers import FAST, Http, file_handles, wait_until

PEERS = {"master": "127.0.0.1:9000", "chunk1": "127.0.0.1:9001", "chunk2": "127.0.0.1:9002"}


def test_faults_transport_is_layered_over_the_one_its_settings_name(monkeypatch: pytest.MonkeyPatch) -> None:
    pm = make_plugin_manager(strict=True)
    spec = pm.transport("faults")
    assert spec.name == "faults" and "tcp" in spec.description
    monkeypatch.setenv("HERCULES_TRANSPORT_FAULTS_INNER", "faults")  # itself: refused, not nested for ever
    looped = make_plugin_manager(strict=True).transport("faults")
    with pytest.raises(Exception, match="unknown transport 'faults'"):
        asyncio.run(looped.connect(Address("127.0.0.1", 1), FrameLimits()))


def test_faults_settings_are_declared_and_come_from_the_file_or_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its settings are the plugin's own (``[transport.faults]``, ``HERCULES_TRANSPORT_FAULTS_*``),
    listed by ``hercules plugins`` and checked like any other plugin's."""
    spec = make_plugin_manager(strict=True).transport("faults")
    assert {s.name: s.default for s in spec.settings} == {"inner": "tcp", "control": "", "name": ""}
    control = tmp_path / "faults.json"
    config = tmp_path / "hercules.toml"
    config.write_text(f'[transport.faults]\ninner = "tcp"\ncontrol = "{control}"\nname = "me"\n')
    monkeypatch.setenv("HERCULES_CONFIG", str(config))
    monkeypatch.setenv("HERCULES_TRANSPORT_FAULTS_NAME", "chunk1")  # the variable before the file
    assert plugin_options(spec) == {"inner": "tcp", "control": str(control), "name": "chunk1"}
    with socket.socket() as listener:  # a port nothing answers on: refused by the rule, not dialled
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    control.write_text(json.dumps({"peers": {"target": f"127.0.0.1:{port}"},
                                   "rules": [{"from": "chunk1", "to": "target", "action": "refuse"}]}))
    faults = make_plugin_manager(strict=True).transport("faults")
    with pytest.raises(ConnectionRefusedError, match="refused by a fault rule"):
        asyncio.run(faults.connect(Address("127.0.0.1", port), FrameLimits()))
    config.write_text('[transport.faults]\nnoise = 1\n')
    with pytest.raises(ConfigError, match="unknown settings noise"):
        asyncio.run(make_plugin_manager(strict=True).transport("faults").connect(Address("127.0.0.1", port),
                                                                                  FrameLimits()))


def test_control_file_rules_are_parsed_per_process_and_bad_ones_named() -> None:
    text = json.dumps({"peers": PEERS, "rules": [
        {"from": "chunk1", "to": "chunk2", "action": "drop"},
        {"from": "*", "to": "master", "action": "delay", "seconds": 0.5},
        {"from": "chunk2", "to": "chunk1", "action": "refuse"}]})
    assert parse_rules(text, "chunk1") == {"127.0.0.1:9002": Rule("drop"), "127.0.0.1:9000": Rule("delay", 0.5)}
    assert parse_rules(text, "gateway") == {"127.0.0.1:9000": Rule("delay", 0.5)}
    for rules, message in (([{"from": "a", "to": "chunk1", "action": "explode"}], "action 'explode'"),
                           ([{"from": "*", "to": "nobody", "action": "drop"}], "'nobody'"),
                           ([{"from": "*", "to": "chunk1", "action": "delay", "seconds": -1}], "seconds")):
        with pytest.raises(ValueError, match=message):
            parse_rules(json.dumps({"peers": PEERS, "rules": rules}), "chunk1")


async def _ping(client: Client, peer: str, timeout: float = 10.0) -> str:
    pong, _ = await client.pool.call(peer, m.Ping(), timeout=timeout)
    return pong.role


def test_pause_stops_answers_and_resume_brings_them_back(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, chunkservers=1, settings=FAST) as c:
        async def scenario() -> None:
            client = await Client(c.master_addr, make_plugin_manager().transport("tcp")).start()
            try:
                assert await _ping(client, c.chunk_addr(0)) == "chunkserver"
                c.pause("chunk1")
                with pytest.raises(Unavailable, match="did not answer"):
                    await _ping(client, c.chunk_addr(0), timeout=1.0)
                c.resume("chunk1")
                assert await _ping(client, c.chunk_addr(0)) == "chunkserver"
            finally:
                await client.close()

        asyncio.run(scenario())
        with pytest.raises(ValueError, match="no process named 'chunk9'"):
            c.pause("chunk9")


def test_kill_and_restart_a_chunkserver_and_the_master(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, chunkservers=2, settings=FAST) as c:
        http = Http(c.gateway_url)
        assert http.request("PUT", "/api/v1/files/k?replication=2", b"kept" * 1000)[0] == 201
        c.kill("chunk2")
        assert not c.process("chunk2").running
        c.wait_live(1, timeout=30)
        c.restart("chunk2")
        c.wait_live(2, timeout=30)
        c.kill("master")
        assert not c.process("master").running
        c.restart("master")
        c.wait_live(2, timeout=60)
        status, _, body = http.request("GET", "/api/v1/files/k")
        assert (status, body) == (200, b"kept" * 1000)
        http.close()


async def read_at_current_version(client: Client, handle: int, replica: str, length: int) -> bytes:
    """A replica's bytes at the master's version of the chunk, which a reported bad replica bumps."""
    deadline = time.monotonic() + 30
    while True:
        loc = await client.chunk_servers(handle)
        try:
            _, data = await client.pool.call(replica, m.ReadChunk(handle, loc.version, 0, length))
            return bytes(data)
        except StaleVersion:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def test_corrupt_flips_a_block_on_one_replica_only(tmp_path: Path) -> None:
    for store in ("fs", "zstd"):
        with LocalCluster(tmp_path / store, chunkservers=2, store=store, settings=FAST) as c:
            data = bytes(range(256)) * 1024  # 4 blocks of 64 KiB
            http = Http(c.gateway_url)
            assert http.request("PUT", "/api/v1/files/f?replication=2", data)[0] == 201
            http.close()

            async def scenario() -> None:
                client = await Client(c.master_addr, make_plugin_manager().transport("tcp")).start()
                try:
                    (handle,) = await file_handles(client, "/f")
                    loc = await client.chunk_servers(handle)
                    bad, good = loc.replicas
                    c.corrupt(handle, bad, block=2)
                    _, first = await client.pool.call(bad, m.ReadChunk(handle, loc.version, 0, 65536))
                    assert bytes(first) == data[:65536]  # the other blocks are untouched
                    with pytest.raises(ChecksumMismatch):
                        await client.pool.call(bad, m.ReadChunk(handle, loc.version, 2 * 65536, 100))
                    assert bytes(await read_at_current_version(client, handle, good, len(data))) == data
                    with pytest.raises(ValueError, match="not block 9"):
                        c.corrupt(handle, good, block=9)
                finally:
                    await client.close()

            asyncio.run(scenario())


def test_cut_makes_reads_go_to_another_replica_and_heal_restores_traffic(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, chunkservers=3, faults=True, settings=FAST) as c:
        data = b"replicated " * 30_000
        http = Http(c.gateway_url)
        assert http.request("PUT", "/api/v1/files/r", data)[0] == 201
        c.cut("gateway", "chunk1", "refuse")
        c.cut("gateway", "chunk2", "refuse")
        for _ in range(5):  # only chunk3 can serve the gateway now
            status, _, body = http.request("GET", "/api/v1/files/r")
            assert (status, body) == (200, data)
        c.cut("gateway", "chunk3", "refuse")
        status, _, body = http.request("GET", "/api/v1/files/r")
        assert status >= 500, (status, body[:200])
        c.heal()
        wait_until(lambda: http.request("GET", "/api/v1/files/r")[2] == data, 30, "reads after heal")
        http.close()


def test_drop_and_delay_between_a_client_and_one_chunkserver(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, chunkservers=2, faults=True, settings=FAST) as c:
        async def scenario() -> None:
            client = await Client(c.master_addr, c.client_transport("client")).start()
            try:
                assert await _ping(client, c.chunk_addr(0)) == "chunkserver"  # an open connection...
                c.cut("client", "chunk1", "drop")
                await asyncio.sleep(0.2)  # past one poll of the control file
                with pytest.raises(Unavailable):  # ...whose frames now vanish, and no new one gets through
                    await _ping(client, c.chunk_addr(0), timeout=1.0)
                with pytest.raises(Unavailable):
                    await _ping(client, c.chunk_addr(0), timeout=1.0)
                assert await _ping(client, c.chunk_addr(1)) == "chunkserver"  # other peers are untouched
                c.cut("client", "chunk1", "delay", seconds=2.0)
                await asyncio.sleep(0.2)
                with pytest.raises(Unavailable, match="did not answer"):
                    await _ping(client, c.chunk_addr(0), timeout=0.5)
                assert await _ping(client, c.chunk_addr(0), timeout=20) == "chunkserver"
                c.heal("client", "chunk1")
                await asyncio.sleep(0.2)
                assert await _ping(client, c.chunk_addr(0)) == "chunkserver"
            finally:
                await client.close()

        asyncio.run(scenario())


def test_cut_needs_a_cluster_started_with_faults(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path)
    with pytest.raises(RuntimeError, match="faults=True"):
        c.cut("*", "master")
