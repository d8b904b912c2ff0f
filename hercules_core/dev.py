"""``hercules dev``: a local cluster on 127.0.0.1 until Ctrl-C.

Every role gets the ``HERCULES_*`` settings this command was started with
(``HERCULES_CLUSTER_SECRET=s make run``), but for the addresses it gives each role itself.
It refuses to start beside another cluster (a busy port, or a data directory another
``hercules dev`` holds) before it starts or writes anything, and it restarts a role that
dies, with backoff, as the compose file's ``restart: unless-stopped`` does: a user can
``kill -9`` a chunkserver or the master and watch the cluster heal.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import attrs

from hercules_core.config import METRICS_PORT_OFFSET
from hercules_core.testing.cluster import LocalCluster, Process

LOCK_NAME = "dev.lock"
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0  # a role that ran this long is restarted after the first backoff again
POLL = 0.2
# One value for every role would give them all one address: each gets its own from the flags.
PER_ROLE = {"HERCULES_METRICS_ADDR": "each role's port + 1000", "HERCULES_S3_ADDR": "--s3-port",
            "HERCULES_ADVERTISE_ADDR": "each role's own port on 127.0.0.1"}


class DevError(Exception):
    """Why the dev cluster cannot start; printed as is."""


def lock_data_dir(root: Path) -> IO[str]:
    """Hold an exclusive lock on the data directory for as long as the returned file is open."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / LOCK_NAME, "a+")
    except OSError as exc:
        raise DevError(f"data directory {root} cannot be used: {exc.strerror}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise DevError(f"data directory {root} is in use by another hercules dev (pid {holder}); "
                       "stop it, or give this one another --data") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def check_ports(ports: dict[str, int]) -> None:
    """Every role's port is a valid, distinct port nothing listens on (bound the way a role binds)."""
    owners: dict[int, str] = {}
    for role, port in ports.items():
        if not 0 < port < 65536:
            raise DevError(f"port {port} ({role}) is not a TCP port (1-65535)")
        if port in owners:
            raise DevError(f"port {port} is given to both {owners[port]} and {role}")
        owners[port] = role
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                raise DevError(f"port {port} ({role}) is in use ({exc.strerror}): is another cluster running? "
                               "Choose others with --master-port, --chunk-port, --gateway-port and --s3-port") from None


def role_ports(args: argparse.Namespace) -> dict[str, int]:
    """The port of each role, named as ``LocalCluster`` names its processes."""
    return {"master": args.master_port, **{f"chunk{i + 1}": args.chunk_port + i for i in range(args.chunkservers)},
            "gateway": args.gateway_port}


def metrics_ports(args: argparse.Namespace) -> dict[str, int]:
    """The master's and chunkservers' /metrics ports: each role's port + 1000, as when served alone."""
    return {name: port + METRICS_PORT_OFFSET for name, port in role_ports(args).items() if name != "gateway"}


def inherited_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``HERCULES_*`` variables of this command, for every role it starts (``LocalCluster``
    itself passes on none of its process's, so that tests never leak into a cluster), but for
    the per-role addresses, which it says it leaves out."""
    settings = {}
    for name, value in environ.items():
        if name in PER_ROLE:
            print(f"hercules dev: ignoring {name}: every role gets its own ({PER_ROLE[name]})", flush=True)
        elif name.startswith("HERCULES_"):
            settings[name] = value
    return settings


def describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@attrs.define
class Restarts:
    """A role's restart schedule: 1 s after a death, twice as long after each quick one."""

    delay: float = FIRST_BACKOFF
    due: float | None = None  # when the role starts again, while it is down
    started: float = attrs.field(factory=time.monotonic)

    def died(self, now: float) -> float:
        if now - self.started >= STABLE_AFTER:
            self.delay = FIRST_BACKOFF
        self.due = now + self.delay
        return self.delay

    def restarted(self, now: float) -> None:
        self.started, self.due = now, None
        self.delay = min(2 * self.delay, MAX_BACKOFF)


def supervise_once(procs: dict[str, Process], restarts: dict[str, Restarts], now: float) -> None:
    """Notice roles that died and start those whose backoff is over, saying so."""
    for name, proc in procs.items():
        if proc.running:
            continue
        schedule = restarts.setdefault(name, Restarts())
        if schedule.due is None:
            code = proc.proc.returncode if proc.proc is not None else None
            delay = schedule.died(now)
            print(f"{name} exited ({describe_exit(code)}); restarting in {delay:.0f}s (log: {proc.log_path})",
                  flush=True)
        elif now >= schedule.due:
            try:
                proc.start()
            except OSError as exc:
                print(f"{name} could not be restarted: {exc}", flush=True)
                schedule.died(now)
                continue
            schedule.restarted(now)
            assert proc.proc is not None
            print(f"{name} restarted, pid {proc.proc.pid}", flush=True)


def run_dev(args: argparse.Namespace) -> int:
    data = Path(args.data).resolve()
    try:
        if args.chunkservers < 1:
            raise DevError(f"--chunkservers must be at least 1, not {args.chunkservers}")
        cluster = dev_cluster(args, data)
        ports = role_ports(args)
        if cluster.serves_s3:
            ports["s3 API"] = args.s3_port
        ports.update({f"{name} metrics": port for name, port in metrics_ports(args).items()})
        lock = lock_data_dir(data)
        try:
            check_ports(ports)
        except DevError:
            lock.close()
            raise
    except DevError as exc:
        print(f"hercules dev: {exc}", file=sys.stderr, flush=True)
        return 1
    with lock:
        return _serve(args, cluster)


def dev_cluster(args: argparse.Namespace, data: Path) -> LocalCluster:
    """The cluster the flags and this process's ``HERCULES_*`` variables describe (not started)."""
    settings = inherited_settings(os.environ)
    if args.chunk_size:
        settings["HERCULES_CHUNK_SIZE"] = args.chunk_size
    return LocalCluster(data, chunkservers=args.chunkservers, settings=settings,
                        store=args.store or settings.get("HERCULES_CHUNK_STORE", "fs"),
                        master_port=args.master_port, gateway_port=args.gateway_port, s3_port=args.s3_port,
                        chunk_ports=[args.chunk_port + i for i in range(args.chunkservers)],
                        metrics_ports=metrics_ports(args))


def _serve(args: argparse.Namespace, cluster: LocalCluster) -> int:
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        cluster.start()
    except (RuntimeError, TimeoutError) as exc:  # start() has stopped what it started
        print(f"hercules dev: the cluster did not start: {exc}; see the logs in {cluster.root / 'logs'}",
              file=sys.stderr, flush=True)
        return 1
    print(f"Hercules is up: master {cluster.master_addr}, "
          f"{args.chunkservers} chunkservers ({cluster.store}), data in {cluster.root}")
    print(f"Gateway: {cluster.gateway_url}   (try: curl {cluster.gateway_url}/health)")
    if cluster.serves_s3:
        print(f"S3 API:  {cluster.s3_url}   (try: aws --endpoint-url {cluster.s3_url} s3 ls)")
    for name, proc in cluster.procs.items():
        print(f"  {name:<8} 127.0.0.1:{proc.port:<6} pid {proc.proc.pid if proc.proc else '-'}   log {proc.log_path}")
    print("Metrics: " + "   ".join(f"{name} {cluster.metrics_url(name)}" for name in cluster.procs))
    print("A role that dies is restarted.   Ctrl-C stops everything.", flush=True)
    restarts = {name: Restarts() for name in cluster.procs}
    try:
        while not stopping:
            supervise_once(cluster.procs, restarts, time.monotonic())
            time.sleep(POLL)
    finally:
        cluster.stop()
        print("stopped", flush=True)
    return 0
