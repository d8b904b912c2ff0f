"""A local cluster of real processes on loopback: used by ``hercules dev`` and by tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import attrs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Signal a child we started and wait for it; kill it if it does not leave in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)  # a paused process cannot handle SIGTERM
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@attrs.define
class Process:
    name: str
    args: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        stop_process(self.proc, timeout=timeout)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@attrs.define
class LocalCluster:
    """Master, N chunkservers and a gateway as separate ``hercules serve`` processes."""

    root: Path
    chunkservers: int = 3
    store: str = "fs"
    settings: dict[str, str] = attrs.field(factory=dict)  # extra HERCULES_* environment
    master_port: int = 0
    chunk_ports: list[int] = attrs.field(factory=list)
    gateway_port: int = 0
    procs: dict[str, Process] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.master_port = self.master_port or free_port()
        self.gateway_port = self.gateway_port or free_port()
        while len(self.chunk_ports) < self.chunkservers:
            self.chunk_ports.append(free_port())

    @property
    def master_addr(self) -> str:
        return f"127.0.0.1:{self.master_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def chunk_addr(self, i: int) -> str:
        return f"127.0.0.1:{self.chunk_ports[i]}"

    def chunk_dir(self, i: int) -> Path:
        return self.root / f"chunk{i + 1}"

    def _env(self, role: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERCULES_")}
        env.update({"SERVER_TYPE": role, "MASTER_ADDR": self.master_addr, "PYTHONUNBUFFERED": "1"})
        env.update(self.settings)
        env.update(extra)
        return env

    def _process(self, name: str, role: str, port: int, **extra: str) -> Process:
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        proc = Process(name, [sys.executable, "-m", "hercules_core", "serve"], self._env(role, **extra), port,
                       self.root / "logs" / f"{name}.log")
        self.procs[name] = proc
        return proc

    def add_chunkserver(self) -> int:
        self.chunk_ports.append(free_port())
        self.chunkservers += 1
        i = self.chunkservers - 1
        self.start_chunkserver(i)
        return i

    def start_master(self) -> None:
        proc = self._process("master", "master_server", self.master_port,
                             SERVER_ADDRESS=self.master_addr, ROOT_DIR=str(self.root / "master"))
        proc.start()
        wait_for_port(self.master_port, proc=proc.proc)

    def start_chunkserver(self, i: int) -> None:
        proc = self._process(f"chunk{i + 1}", "chunk_server", self.chunk_ports[i],
                             SERVER_ADDRESS=self.chunk_addr(i), ROOT_DIR=str(self.chunk_dir(i)),
                             HERCULES_CHUNK_STORE=self.store)
        proc.start()
        wait_for_port(self.chunk_ports[i], proc=proc.proc)

    def start_gateway(self) -> None:
        proc = self._process("gateway", "gateway_server", self.gateway_port,
                             GATEWAY_ADDR=f"127.0.0.1:{self.gateway_port}")
        proc.start()
        wait_for_port(self.gateway_port, proc=proc.proc)

    def start(self, timeout: float = 30.0) -> "LocalCluster":
        try:
            self.start_master()
            for i in range(self.chunkservers):
                self.start_chunkserver(i)
            self.start_gateway()
            self.wait_live(self.chunkservers, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def health(self) -> dict:
        import json

        with urllib.request.urlopen(f"{self.gateway_url}/health", timeout=5) as resp:
            return json.load(resp)

    def wait_live(self, count: int, timeout: float = 30.0) -> None:
        """Until the master counts ``count`` live chunkservers (asked through the gateway)."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                last = self.health()
                if last.get("chunkservers_alive") == count:
                    return
            except OSError as exc:
                last = exc
            time.sleep(0.1)
        raise TimeoutError(f"cluster did not reach {count} live chunkservers: {last}")

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
