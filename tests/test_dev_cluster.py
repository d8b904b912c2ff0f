"""``hercules dev`` as a user runs it: refuses to start beside a running cluster, heals killed roles,
and hands its ``HERCULES_*`` settings to every role: a dev cluster with a cluster secret and
gateway tokens passes the end-to-end checks, and refuses a native client without the secret."""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from hercules_core import messages as m
from hercules_core.client import connect
from hercules_core.errors import Unauthenticated
from hercules_core.framing import FrameLimits
from hercules_core.gateway.auth import token_hash
from hercules_core.plugins import make_plugin_manager
from hercules_core.rpc import ConnectionPool
from hercules_core.testing.cluster import free_port, stop_process
from tests.helpers import Http, sha256, wait_until
from tests.tls_certs import make_ca

REPO = Path(__file__).resolve().parents[1]
SECRET = "dev cluster secret 5d1e"
ADMIN_TOKEN = "dev-admin-token-93c2"


def bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def consecutive_free_ports(count: int) -> int:
    """The first of ``count`` free consecutive ports (the dev command numbers chunkservers so)."""
    for _ in range(200):
        first = free_port()
        if first + count < 65536 and all(bindable(first + i) for i in range(count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports found")


@attrs.define
class Dev:
    """One ``hercules dev`` process and the lines it has printed so far."""

    data: Path
    master_port: int
    chunk_port: int
    gateway_port: int
    proc: subprocess.Popen | None = None
    s3_port: int = attrs.field(factory=free_port)
    lines: list[str] = attrs.field(factory=list)
    settings: dict[str, str] = attrs.field(factory=dict)  # HERCULES_* variables `hercules dev` is run with

    def args(self) -> list[str]:
        return [sys.executable, "-m", "hercules_core", "dev", "--data", str(self.data),
                "--master-port", str(self.master_port), "--chunk-port", str(self.chunk_port),
                "--gateway-port", str(self.gateway_port), "--s3-port", str(self.s3_port)]

    def start(self) -> "Dev":
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERCULES_")}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.settings)
        self.proc = subprocess.Popen(self.args(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=env, stdin=subprocess.DEVNULL)
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, pattern: str, timeout: float, after: int = 0) -> re.Match:
        def found() -> re.Match | None:
            return next((m for line in self.lines[after:] if (m := re.search(pattern, line))), None)

        return wait_until(found, timeout, f"a line matching {pattern!r}; printed so far: {self.lines}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"


def up(data: Path, settings: dict[str, str] | None = None) -> Iterator[Dev]:
    """A started dev cluster on free ports, until the generator is closed (then Ctrl-C)."""
    dev = Dev(data, free_port(), consecutive_free_ports(3), free_port(), settings=settings or {}).start()
    try:
        dev.wait_line(r"Hercules is up", 120)
        yield dev
    finally:
        assert dev.proc is not None
        stop_process(dev.proc, signal.SIGINT, timeout=60)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    yield from up(tmp_path_factory.mktemp("dev") / "data")


def role_environs(dev: Dev) -> dict[int, list[bytes]]:
    """The environment of each child of the dev cluster, by pid (from /proc, not from its output)."""
    assert dev.proc is not None
    found = {}
    for pid in Path(f"/proc/{dev.proc.pid}/task/{dev.proc.pid}/children").read_text().split():
        try:
            found[int(pid)] = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
    return found


def role_pid(dev: Dev, port: int) -> int | None:
    """The pid of the dev cluster's child serving on ``port``."""
    return next((pid for pid, environ in role_environs(dev).items()
                 if f"SERVER_ADDRESS=127.0.0.1:{port}".encode() in environ), None)


def log_state(dev: Dev) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in (dev.data / "logs").iterdir()}


def test_a_second_dev_cluster_fails_fast_naming_the_busy_port_or_the_locked_data_dir(
        running: Dev, tmp_path: Path) -> None:
    logs = log_state(running)
    cases = [
        (attrs.evolve(running, proc=None, lines=[]), r"data directory .* is in use"),
        (attrs.evolve(running, data=tmp_path / "other", proc=None, lines=[]),
         rf"port {running.master_port} \(master\) is in use"),
        (attrs.evolve(running, data=tmp_path / "third", master_port=free_port(), proc=None, lines=[]),
         rf"port {running.chunk_port} \(chunk1\) is in use"),
    ]
    for second, expected in cases:
        second.start()
        assert second.proc is not None
        code = second.proc.wait(timeout=60)
        output = "\n".join(second.lines)
        assert code != 0, output
        assert re.search(expected, output), output
        assert "Hercules is up" not in output
    assert not (tmp_path / "other" / "logs").exists()
    assert log_state(running) == logs  # the running cluster's logs are not appended to
    assert running.proc is not None and running.proc.poll() is None


def test_a_killed_chunkserver_or_master_is_restarted_and_the_cluster_serves_again(running: Dev) -> None:
    h = Http(running.url)
    data = random.randbytes(300_000)
    assert h.json("PUT", "/api/v1/files/dev/before", data)[0] == 201
    h.close()
    for role, port in (("chunk2", running.chunk_port + 1), ("master", running.master_port)):
        pid = role_pid(running, port)
        assert pid is not None, role
        seen = len(running.lines)
        os.kill(pid, signal.SIGKILL)
        again = wait_until(lambda: (p := role_pid(running, port)) not in (None, pid) and p, 60,  # noqa: B023
                           f"{role} to be started again; printed so far: {running.lines}")
        assert again != pid
        running.wait_line(rf"{role} exited .*signal 9.*restarting in", 5, after=seen)

        def serves() -> bool:
            h = Http(running.url)
            try:
                status, health = h.json("GET", "/health")
                if status != 200 or health.get("chunkservers_alive") != 3:
                    return False
                status, _, body = h.request("GET", "/api/v1/files/dev/before")
                return status == 200 and sha256(body) == sha256(data)
            except (OSError, ValueError, http.client.HTTPException):
                return False
            finally:
                h.close()

        wait_until(serves, 120, f"the cluster to serve again after {role} was killed")
    h = Http(running.url)
    after = random.randbytes(200_000)
    wait_until(lambda: h.json("PUT", "/api/v1/files/dev/after?overwrite=true", after)[0] == 201, 120,
               "a new upload to succeed")
    assert sha256(h.request("GET", "/api/v1/files/dev/after")[2]) == sha256(after)
    h.close()
    assert running.proc is not None and running.proc.poll() is None


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    """``make run``'s command with a cluster secret, gateway tokens and 1 MiB chunks in its environment."""
    root = tmp_path_factory.mktemp("dev-secret")
    auth = root / "credentials.toml"
    auth.write_text(f'[[principal]]\nname = "admin"\naccess = "admin"\n'
                    f'token_sha256 = "{token_hash(ADMIN_TOKEN)}"\n')
    yield from up(root / "data", {"HERCULES_CLUSTER_SECRET": SECRET, "HERCULES_AUTH_FILE": str(auth),
                                  "HERCULES_CHUNK_SIZE": "1MiB"})


def test_every_role_is_started_with_the_hercules_settings_of_the_dev_command(secured: Dev) -> None:
    environs = role_environs(secured)
    assert len(environs) == 5, environs  # master, 3 chunkservers, gateway
    for environ in environs.values():
        variables = dict(v.decode().partition("=")[::2] for v in environ if v)
        assert {name: variables.get(name) for name in secured.settings} == secured.settings, variables["SERVER_TYPE"]


def test_the_e2e_checks_pass_against_a_dev_cluster_with_a_secret_and_tokens(secured: Dev) -> None:
    h = Http(secured.url)
    assert h.request("GET", "/api/v1/list?path=/")[0] == 401  # the gateway got HERCULES_AUTH_FILE
    h.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERCULES_")}
    env |= {"HERCULES_TOKEN": ADMIN_TOKEN, "HERCULES_CLI": str(Path(sys.executable).with_name("hercules"))}
    run = subprocess.run(["bash", str(REPO / "tests/docker/gateway_checks.sh"), secured.url], env=env, cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert run.returncode == 0, run.stdout
    assert "gateway checks: 11 passed, 0 failed" in run.stdout, run.stdout


async def test_a_native_client_without_the_secret_is_refused_by_master_and_chunkservers(
        secured: Dev, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HERCULES_CLUSTER_SECRET", raising=False)
    monkeypatch.delenv("HERCULES_CONFIG", raising=False)
    with pytest.raises(Unauthenticated):
        await connect(f"127.0.0.1:{secured.master_port}")
    pool = ConnectionPool(make_plugin_manager(strict=True).transport("tcp"), FrameLimits())
    try:
        for port in range(secured.chunk_port, secured.chunk_port + 3):
            with pytest.raises(Unauthenticated):
                await pool.call(f"127.0.0.1:{port}", m.ReadChunk(1, 1, 0, 100))
    finally:
        await pool.close()


def test_the_cli_with_the_secret_works_on_the_native_protocol_and_without_it_is_refused(
        secured: Dev, tmp_path: Path) -> None:
    local = tmp_path / "native.bin"
    local.write_bytes(random.randbytes(1_500_000))  # two chunks
    cli = [str(Path(sys.executable).with_name("hercules")), "--master", f"127.0.0.1:{secured.master_port}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERCULES_")}

    def hercules(*args: str, secret: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*cli, *args], env=env | ({"HERCULES_CLUSTER_SECRET": SECRET} if secret else {}),
                              capture_output=True, timeout=120)

    assert hercules("mkdir", "-p", "/native").returncode == 0
    assert hercules("put", str(local), "/native/").returncode == 0
    fetched = hercules("cat", "/native/native.bin")
    assert fetched.returncode == 0 and sha256(fetched.stdout) == sha256(local.read_bytes())
    refused = hercules("ls", "/native", secret=False)
    assert refused.returncode != 0 and b"native.bin" not in refused.stdout, refused
    assert b"secret" in refused.stderr.lower(), refused.stderr


def test_a_dev_cluster_with_gateway_tls_a_store_and_a_per_role_address_in_its_environment(
        tmp_path: Path) -> None:
    certs = make_ca(tmp_path / "ca")
    settings = {"HERCULES_TLS_CERT": str(certs.cert), "HERCULES_TLS_KEY": str(certs.key),
                "HERCULES_CHUNK_STORE": "zstd", "HERCULES_METRICS_ADDR": "127.0.0.1:1"}
    dev = up(tmp_path / "data", settings)
    started = next(dev)
    try:
        started.wait_line(r"ignoring HERCULES_METRICS_ADDR: every role gets its own", 5)
        started.wait_line(r"3 chunkservers \(zstd\)", 5)
        started.wait_line(rf"Gateway: https://127\.0\.0\.1:{started.gateway_port}", 5)
        conn = http.client.HTTPSConnection("127.0.0.1", started.gateway_port, timeout=30,
                                           context=ssl.create_default_context(cafile=str(certs.ca_cert)))
        conn.request("GET", "/health")
        assert json.loads(conn.getresponse().read())["chunkservers_alive"] == 3
        conn.close()
        stores = {pid: v for pid, environ in role_environs(started).items()
                  for v in environ if v.startswith(b"HERCULES_CHUNK_STORE=")}
        assert set(stores.values()) == {b"HERCULES_CHUNK_STORE=zstd"} and len(stores) == 5, stores
    finally:
        dev.close()
