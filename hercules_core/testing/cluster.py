"""A local cluster of real processes on loopback: used by ``hercules dev`` and by tests."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import attrs


FAULT_POLL = 0.1  # twice the faults transport's poll of its control file


def s3_installed() -> bool:
    """Whether the S3 API plugin is installed: then the gateway serves it on its own port."""
    return importlib.util.find_spec("hercules_s3") is not None


_HANDED_OUT: set[int] = set()  # ports this process has picked: a cluster picks some long before binding them


def free_port() -> int:
    """A loopback port free now and never handed out before by this process (the kernel may offer
    a port again while the first taker has not bound it yet: a cluster's roles start one by one).

    A port offered again is held open while asking for the next one, so the kernel cannot offer
    it once more: it may well keep offering the same few ports when most of its range is busy."""
    held: list[socket.socket] = []
    try:
        for _ in range(1000):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if port not in _HANDED_OUT:
                sock.close()
                _HANDED_OUT.add(port)
                return port
            held.append(sock)
    finally:
        for sock in held:
            sock.close()
    raise RuntimeError("no free loopback port left that this process has not handed out already")


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


def _store_class(store: str) -> type:
    """The file-backed store class of a chunk store name (to find a chunk's bytes on disk)."""
    if store == "fs":
        from hercules_store_fs import FsChunkStore

        return FsChunkStore
    if store == "zstd":
        from hercules_store_zstd import ZstdChunkStore

        return ZstdChunkStore
    raise ValueError(f"corrupt() knows the fs and zstd layouts, not store {store!r}")


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
    s3_port: int = 0  # the gateway's S3 API, when the hercules-s3 plugin is installed
    procs: dict[str, Process] = attrs.field(factory=dict)
    metrics_ports: dict[str, int] = attrs.field(factory=dict)  # the master's and chunkservers' /metrics
    faults: bool = False  # run every role on the ``faults`` transport, so ``cut`` and ``heal`` work
    fault_rules: list[dict[str, object]] = attrs.field(factory=list)
    python: str = sys.executable  # the interpreter of every role (another environment: a fresh install)

    def __attrs_post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.master_port = self.master_port or free_port()
        self.gateway_port = self.gateway_port or free_port()
        self.s3_port = self.s3_port or free_port()
        while len(self.chunk_ports) < self.chunkservers:
            self.chunk_ports.append(free_port())

    @property
    def master_addr(self) -> str:
        return f"127.0.0.1:{self.master_port}"

    @property
    def tls(self) -> bool:
        """Whether the gateway serves HTTPS only (``HERCULES_TLS_CERT``, with its key)."""
        return bool(self.settings.get("HERCULES_TLS_CERT"))

    @property
    def gateway_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.gateway_port}"

    @property
    def s3_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.s3_port}"

    @property
    def serves_s3(self) -> bool:
        """The gateway serves the S3 API: installed in this interpreter, and not left out of
        ``HERCULES_ROUTES`` if that is set."""
        routes = self.settings.get("HERCULES_ROUTES", "s3").replace(" ", "").split(",")
        return s3_installed() and self.python == sys.executable and "s3" in routes

    def chunk_addr(self, i: int) -> str:
        return f"127.0.0.1:{self.chunk_ports[i]}"

    def chunk_dir(self, i: int) -> Path:
        return self.root / f"chunk{i + 1}"

    def _env(self, role: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERCULES_")}
        env.update({"SERVER_TYPE": role, "MASTER_ADDR": self.master_addr, "PYTHONUNBUFFERED": "1"})
        env.update(self.settings)
        env.update(extra)
        if self.faults:
            env.update({"HERCULES_TRANSPORT": "faults", "HERCULES_TRANSPORT_FAULTS_CONTROL": str(self.fault_control),
                        "HERCULES_TRANSPORT_FAULTS_INNER": self.settings.get("HERCULES_TRANSPORT", "tcp")})
        return env

    def metrics_url(self, name: str) -> str:
        """Where the process ``name`` serves Prometheus metrics."""
        if name == "gateway":
            return f"{self.gateway_url}/metrics"
        return f"http://127.0.0.1:{self.metrics_ports[name]}/metrics"

    def _process(self, name: str, role: str, port: int, **extra: str) -> Process:
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        if role != "gateway_server" and "HERCULES_METRICS_ADDR" not in self.settings:  # kept across restarts
            port_of_metrics = self.metrics_ports.setdefault(name, free_port())
            extra.setdefault("HERCULES_METRICS_ADDR", f"127.0.0.1:{port_of_metrics}")
        env = self._env(role, HERCULES_TRANSPORT_FAULTS_NAME=name, **extra)
        proc = Process(name, [self.python, "-m", "hercules_core", "serve"], env, port,
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
        s3 = self.serves_s3
        extra = {"HERCULES_ROUTES": "rest-v1,dashboard,s3", "HERCULES_S3_ADDR": f"127.0.0.1:{self.s3_port}"} if s3 else {}
        proc = self._process("gateway", "gateway_server", self.gateway_port,
                             GATEWAY_ADDR=f"127.0.0.1:{self.gateway_port}", **{**extra, **self.settings})
        proc.start()
        wait_for_port(self.gateway_port, proc=proc.proc)
        if s3:
            wait_for_port(self.s3_port, proc=proc.proc)

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
        # Over HTTPS the certificate is not checked: this asks our own child on loopback for a
        # count, sending nothing (the certificate may be for another name, its CA unknown here).
        context = ssl._create_unverified_context() if self.tls else None  # noqa: S323
        with urllib.request.urlopen(f"{self.gateway_url}/health", timeout=5, context=context) as resp:
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

    # --- faults ---------------------------------------------------------------------

    def process(self, name: str) -> Process:
        """The process called ``name`` (``master``, ``chunk1``..., ``gateway``)."""
        try:
            return self.procs[name]
        except KeyError:
            raise ValueError(f"no process named {name!r}; this cluster has {', '.join(self.procs)}") from None

    def address_of(self, name: str) -> str:
        """Where the process ``name`` is dialled (``host:port``)."""
        if name == "master":
            return self.master_addr
        if name == "gateway":
            return f"127.0.0.1:{self.gateway_port}"
        if name.startswith("chunk") and name[5:].isdigit() and 0 < int(name[5:]) <= self.chunkservers:
            return self.chunk_addr(int(name[5:]) - 1)
        raise ValueError(f"no process named {name!r}")

    def chunkserver_name(self, replica: str) -> str:
        """``chunk<N>`` for a chunkserver given by name or by its address."""
        for i in range(self.chunkservers):
            if replica in (f"chunk{i + 1}", self.chunk_addr(i)):
                return f"chunk{i + 1}"
        raise ValueError(f"{replica!r} is not one of this cluster's chunkservers")

    def pause(self, name: str) -> None:
        """SIGSTOP: the process keeps its sockets but answers nothing until ``resume``."""
        self._signal_running(name, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self._signal_running(name, signal.SIGCONT)

    def _signal_running(self, name: str, sig: int) -> None:
        proc = self.process(name)
        if not proc.running:
            raise RuntimeError(f"{name} is not running")
        proc.signal(sig)

    def kill(self, name: str) -> None:
        """SIGKILL and wait: nothing is flushed or closed cleanly (a crash or a power cut)."""
        proc = self.process(name)
        if proc.proc is not None:
            stop_process(proc.proc, signal.SIGKILL)
            proc.proc = None

    def restart(self, name: str, timeout: float = 30.0) -> None:
        """Kill ``name`` if it runs, start it again with the same settings, wait for its port."""
        self.kill(name)
        proc = self.process(name)
        proc.start()
        wait_for_port(proc.port, timeout, proc=proc.proc)

    def corrupt(self, handle: int, replica: str, block: int = 0) -> Path:
        """Flip one byte inside block ``block`` of chunk ``handle`` on ``replica``'s disk; return the file.

        The chunkserver is not told: the block's CRC32C no longer matches, as after bit rot.
        """
        from hercules_core.plugins.types import StoreContext

        index = int(self.chunkserver_name(replica)[5:]) - 1
        store = _store_class(self.store)(StoreContext(self.chunk_dir(index) / "store"))
        meta = store._load(handle)  # read-only: the sidecar says where the block's bytes are
        if not 0 <= block < len(meta.crcs):
            raise ValueError(f"chunk {handle} on {replica} has {len(meta.crcs)} blocks, not block {block}")
        path = store._data_path(handle, meta.gen)
        if hasattr(meta, "offsets"):  # compressed: the block is its own frame somewhere in the file
            at = meta.offsets[block] + meta.clens[block] // 2
        else:
            at = block * store.block_size + min(store.block_size, meta.length - block * store.block_size) // 2
        with open(path, "r+b") as f:
            f.seek(at)
            byte = f.read(1)
            f.seek(at)
            f.write(bytes([byte[0] ^ 0xFF]))
        return path

    @property
    def fault_control(self) -> Path:
        return self.root / "faults.json"

    def cut(self, a: str, b: str, action: str = "drop", seconds: float = 0.0) -> None:
        """Break traffic between ``a`` and ``b`` both ways, until ``heal``.

        ``drop`` (a partition: frames vanish, calls time out), ``refuse`` (connections reset at
        once) or ``delay`` (each frame waits ``seconds``). Needs ``faults=True``; a name may be one
        of this cluster's processes or a client's (see ``client_transport``); ``*`` means any.
        """
        if not self.faults:
            raise RuntimeError("this cluster was started without faults=True: its traffic cannot be cut")
        for name in (a, b):
            if name != "*" and name not in self.procs and not name.startswith("client"):
                raise ValueError(f"no process named {name!r}; this cluster has {', '.join(self.procs)}")
        self.heal(a, b, write=False)
        self.fault_rules += [{"from": a, "to": b, "action": action, "seconds": seconds},
                             {"from": b, "to": a, "action": action, "seconds": seconds}]
        self._write_fault_rules()

    def heal(self, a: str | None = None, b: str | None = None, *, write: bool = True) -> None:
        """End the rules between ``a`` and ``b`` (every rule when no names are given)."""
        pair = {a, b}
        self.fault_rules = [r for r in self.fault_rules
                            if a is not None and {r["from"], r["to"]} != pair]
        if write:
            self._write_fault_rules()

    def _write_fault_rules(self) -> None:
        if not self.faults:
            raise RuntimeError("this cluster was started without faults=True: its traffic cannot be cut")
        peers = {name: self.address_of(name) for name in self.procs}
        payload = json.dumps({"peers": peers, "rules": [r for r in self.fault_rules if r["to"] in peers
                                                        or r["to"] == "*"]}, indent=1)
        tmp = self.fault_control.with_suffix(".tmp")
        tmp.write_text(payload)
        os.replace(tmp, self.fault_control)  # a new inode: every process sees a new file
        # A process looks at the file at most FAULT_POLL after any earlier look, so every frame
        # handled from now on, in every process, obeys the new rules.
        time.sleep(FAULT_POLL)

    def client_transport(self, name: str = "client"):  # noqa: ANN201 - a TransportSpec
        """A ``faults`` transport for a client in this (test) process, obeying rules about ``name``."""
        from hercules_transport_faults import FaultSettings, faults_transport

        if not name.startswith("client"):
            raise ValueError(f"a client's name starts with 'client', got {name!r}")
        return faults_transport(FaultSettings(control=self.fault_control, name=name))

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
