"""``--peer seaweedfs``: the gateway workloads against Hercules and a peer system, round by round.

Both systems get the same client (the bench's aiohttp ``Gateway``, one subclass per API), the
same payloads, the same concurrency, the same replication (3 copies) and the same machine, in
one run. Each round runs every side once, and the order rotates every round, so no side always
finds the machine as another left it (page cache, disk queue) nor always runs in the busier part
of a run. Each figure is the median over the rounds; every read is verified as in the main
workloads (length and CRC32C).

A third side, the floor (``peer_floor``: an in-memory server as cheap as Python can serve HTTP),
shows in the same run the most any server could reach with this client on this machine: the
client's own CPU caps every side, and a target above the floor is out of reach for any server.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import crc32c

from hercules_bench.datagen import random_bytes
from hercules_bench.http import Gateway
from hercules_bench.options import human_size
from hercules_bench.report import render_table
from hercules_bench.stats import VerificationError, mbps
from hercules_bench.workloads import GRACE, BenchContext, _write_read, bounded, check_content, payloads

PEER_WORKLOADS = ("large", "small", "medium")  # the gateway workloads both systems serve over HTTP
REPLICATION = 3
LARGE_READS = 4  # the large file is read back this many times per round, as Hercules's (a) reads it
MIN_ROUND_SECONDS = 3.0  # a round is not started with less of the run's time left


@attrs.frozen
class Figure:
    """One compared figure: ``entry[path...]`` of a workload's per-round entry."""

    workload: str
    metric: str
    unit: str
    path: tuple[str, str]


FIGURES = (Figure("large", "upload", "MB/s", ("write", "MBps")), Figure("large", "download", "MB/s", ("read", "MBps")),
           Figure("small", "writes", "files/s", ("write", "ops_per_s")),
           Figure("small", "reads", "files/s", ("read", "ops_per_s")),
           Figure("medium", "writes", "MB/s", ("write", "MBps")), Figure("medium", "reads", "MB/s", ("read", "MBps")))


@attrs.define
class Side:
    """One system under test: how to open its HTTP API, and its processes (for the CPU figures)."""

    name: str  # "hercules", the peer's name or "floor"
    gateway: Callable[[int, float], Gateway]  # (connections, timeout) -> a fresh Gateway
    pids: dict[str, int]
    drop_after: bool = False  # files kept in memory: a round's are deleted after it, so rounds do not add up


RoundFn = Callable[[BenchContext, Side, str], Awaitable[dict[str, Any]]]  # one round of a workload on a side


def titles(ctx: BenchContext) -> dict[str, str]:
    o = ctx.options
    return {"large": f"large file {human_size(o.large_size)}, rf=3",
            "small": f"{human_size(o.small_size)} files, {o.small_concurrency} clients",
            "medium": f"{human_size(o.medium_size)} files, {o.medium_concurrency} clients"}


# -- one round of one workload on one side ------------------------------------------------------


async def large_round(ctx: BenchContext, side: Side, tag: str, data: bytes, crc: int) -> dict[str, Any]:
    """One streamed PUT of the large file at rf=3, then ``LARGE_READS`` verified GETs of it."""
    timeout = max(60.0, ctx.options.phase_limit + GRACE)
    gw = side.gateway(2, timeout)
    path = f"{ctx.root}/peer/{side.name}/large-{tag}.bin"
    name = f"peer_{side.name}_large_{tag}"
    try:
        with ctx.measure(f"{name}_write", side.pids) as wcpu:
            t0 = time.perf_counter()
            info = await bounded(gw.put(path, data, replication=REPLICATION, stream=True), ctx.phase_deadline(), name)
            wsec = time.perf_counter() - t0
        if info.get("replication", REPLICATION) != REPLICATION:
            raise VerificationError(f"{name}: stored at rf={info.get('replication')}, asked for {REPLICATION}")
        reads: list[float] = []
        with ctx.measure(f"{name}_read", side.pids) as rcpu:
            for _ in range(LARGE_READS):
                t0 = time.perf_counter()
                await bounded(gw.get_verify(path, len(data), crc), ctx.phase_deadline(), name)
                reads.append(time.perf_counter() - t0)
        await gw.delete(path)  # three rounds of three copies of the large file need not stay on the disk
    finally:
        await gw.close()
    rsec = sum(reads)
    return {"bytes": len(data), "write": {"seconds": round(wsec, 3), "MBps": mbps(len(data), wsec)},
            "read": {"seconds": round(rsec, 3), "reads": len(reads), "MBps": mbps(len(data) * len(reads), rsec),
                     "each_MBps": [mbps(len(data), s) for s in reads]},
            "complete": True, "verified": True, "cpu": {"write": wcpu.result, "read": rcpu.result}}


async def files_round(ctx: BenchContext, side: Side, tag: str, label: str, files: list[bytes], crcs: list[int],
                      concurrency: int) -> dict[str, Any]:
    """The files written by ``concurrency`` clients (one PUT each, rf=3), then read back and compared."""
    gw = side.gateway(concurrency, max(60.0, ctx.options.phase_limit + GRACE))
    base = f"{ctx.root}/peer/{side.name}/{label}-{tag}"
    size = len(files[0])

    async def put(w: int, i: int) -> None:
        await gw.put(f"{base}/{i:06d}", files[i], replication=REPLICATION)

    async def get(w: int, i: int) -> None:
        check_content(f"GET {base}/{i:06d}", await gw.get(f"{base}/{i:06d}"), size, crcs[i])

    try:
        entry = await _write_read(attrs.evolve(ctx, pids=side.pids), f"peer_{side.name}_{label}_{tag}", side.name,
                                  files, len(files), concurrency, put, get)
        if side.drop_after:  # after the measured phases
            await gw.delete(base, recursive=True)
    finally:
        await gw.close()
    return entry


# -- the rounds ---------------------------------------------------------------------------------


async def compare(ctx: BenchContext, sides: list[Side], rounds: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Every selected workload, ``rounds`` times on each side; returns per-round entries and skips."""
    o = ctx.options
    out: dict[str, Any] = {"workloads": {}, "skipped": {}}
    for workload in (w for w in PEER_WORKLOADS if w in o.only):
        if workload == "large":
            data = random_bytes(o.large_size, o.seed)
            run = _large(data, crc32c.crc32c(data))
        else:
            count, size, concurrency = ((o.small_count, o.small_size, o.small_concurrency) if workload == "small"
                                        else (o.medium_count, o.medium_size, o.medium_concurrency))
            files = payloads(count, size, o.seed + size)
            run = _files(workload, files, [crc32c.crc32c(f) for f in files], concurrency)
        per_side: dict[str, list[dict[str, Any]]] = {s.name: [] for s in sides}
        out["workloads"][workload] = per_side
        for r in range(rounds):
            if ctx.remaining() < MIN_ROUND_SECONDS:
                out["skipped"][workload] = f"time limit reached after {r} of {rounds} rounds"
                log(f"peer {workload}: the run's time limit is reached after {r} rounds")
                break
            for side in sides[r % len(sides):] + sides[:r % len(sides)]:  # each side leads in turn
                log(f"peer {workload}, round {r + 1}/{rounds}: {side.name}")
                entry = await run(ctx, side, f"r{r + 1}")
                per_side[side.name].append({"round": r + 1, **entry})
    return out


def _large(data: bytes, crc: int) -> RoundFn:
    return lambda ctx, side, tag: large_round(ctx, side, tag, data, crc)


def _files(label: str, files: list[bytes], crcs: list[int], concurrency: int) -> RoundFn:
    return lambda ctx, side, tag: files_round(ctx, side, tag, label, files, crcs, concurrency)


def summarize(ctx: BenchContext, workloads: dict[str, dict[str, list[dict[str, Any]]]], ours: str, peer: str,
              floor: str | None = None) -> list[dict[str, Any]]:
    """One row per figure: each side's per-round values and median, ``ratio`` ours/peer and, with
    a floor, ``floor_ratio`` floor/peer: the most any server reached with this client in this run,
    as a multiple of the peer."""
    rows = []
    title = titles(ctx)
    for fig in FIGURES:
        per_side = workloads.get(fig.workload) or {}
        if not per_side.get(ours) or not per_side.get(peer):
            continue
        row: dict[str, Any] = {"workload": fig.workload, "title": title[fig.workload], "metric": fig.metric,
                               "unit": fig.unit}
        for name in (n for n in (ours, peer, floor) if n and per_side.get(n)):
            values = [float(e[fig.path[0]][fig.path[1]]) for e in per_side[name]]
            row[name] = {"median": round(statistics.median(values), 1), "rounds": values}
        row["ratio"] = _ratio(row, ours, peer)
        if floor in row:
            row["floor_ratio"] = _ratio(row, floor, peer)
        rows.append(row)
    return rows


def _ratio(row: dict[str, Any], top: str, bottom: str) -> float | None:
    return round(row[top]["median"] / row[bottom]["median"], 3) if row[bottom]["median"] > 0 else None


async def run_peer(ctx: BenchContext, hercules_url: str, hercules_pids: dict[str, int], root: Path,
                   log: Callable[[str], None]) -> dict[str, Any]:
    """Start the peer under ``root``, run the rounds, stop it; the JSON's ``peer`` section.

    A failed read raises ``VerificationError`` (the peer's processes are stopped first).
    """
    from hercules_bench.peer_floor import FloorServer
    from hercules_bench.peer_seaweedfs import SeaweedCluster, SeaweedGateway

    o = ctx.options
    cluster = SeaweedCluster(root, volumes=o.chunkservers)
    floor = FloorServer(root / "floor") if o.peer_floor else None
    log(f"starting SeaweedFS {cluster.version} ({cluster.weed}): master (replication 002, telemetry off), "
        f"{o.chunkservers} volume servers, filer, in {root}" + (", and the in-memory floor server" if floor else ""))
    names = ["hercules", "seaweedfs"] + (["floor"] if floor else [])
    section: dict[str, Any] = {"system": "seaweedfs", "rounds": o.peer_rounds, "replication": REPLICATION,
                               "peer_fsync": o.peer_fsync,
                               "order": f"rotating: {', '.join(names)} in round 1, each round starting one side later"}
    plain = attrs.evolve(ctx, profiler=None)  # py-spy cannot read Go processes; the comparison runs unprofiled
    try:
        await asyncio.to_thread(cluster.start)
        section["setup"] = cluster.describe()
        section["pids"] = cluster.pids
        sides = [Side("hercules", lambda n, t: Gateway(hercules_url, connections=n, timeout=t), hercules_pids),
                 Side("seaweedfs", lambda n, t: SeaweedGateway(cluster.filer_url, connections=n, timeout=t,
                                                       fsync=o.peer_fsync),
                      cluster.pids)]
        if floor is not None:
            floor_url = (await asyncio.to_thread(floor.start)).url
            section["floor"] = {**floor.describe(), "pid": floor.pids["floor"]}
            sides.append(Side("floor", lambda n, t: Gateway(floor_url, connections=n, timeout=t), floor.pids,
                              drop_after=True))
        result = await compare(plain, sides, o.peer_rounds, log)
        section["copies_per_volume"] = await asyncio.to_thread(cluster.volume_copies)
    finally:
        if floor is not None:
            await asyncio.to_thread(floor.stop)
        await asyncio.to_thread(cluster.stop)
        section["left_running"] = cluster.running() + (floor.running() if floor else [])
    section.update(workloads=result["workloads"], skipped=result["skipped"],
                   rows=summarize(ctx, result["workloads"], "hercules", "seaweedfs", "floor" if floor else None))
    copies = set(section["copies_per_volume"].values())
    if copies and copies != {REPLICATION}:
        raise VerificationError(f"SeaweedFS kept {sorted(copies)} copies of its volumes, not {REPLICATION}")
    section["verified"] = bool(section["rows"]) and all(
        e.get("verified") for per_side in result["workloads"].values() for entries in per_side.values()
        for e in entries)
    return section


def peer_missing() -> str | None:
    """Why ``--peer seaweedfs`` cannot run here (its binary is not installed), or None."""
    from hercules_bench.peer_seaweedfs import PeerUnavailable, require_weed

    try:
        require_weed()
    except PeerUnavailable as exc:
        return str(exc)
    return None


# -- the table ----------------------------------------------------------------------------------


def _num(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _times(ratio: float | None) -> str:
    return f"{ratio:.2f}" if ratio is not None else ""


def peer_table(section: dict[str, Any]) -> str:
    """workload | metric | Hercules | SeaweedFS | unit | H/S | floor | floor/S | per-round values.

    The floor columns are left out when the floor did not run (``--no-peer-floor``)."""
    rows = section.get("rows", [])
    with_floor = any("floor" in row for row in rows)
    headers = ["workload", "metric", "Hercules", "SeaweedFS", "unit", "ratio H/S",
               *(["floor", "floor/S"] if with_floor else []), "Hercules rounds", "SeaweedFS rounds"]
    lines = []
    for row in rows:
        h, s = row["hercules"], row["seaweedfs"]
        floor = [_num(row["floor"]["median"]), _times(row["floor_ratio"])] if "floor" in row else ["", ""]
        lines.append([row["title"], row["metric"], _num(h["median"]), _num(s["median"]), row["unit"],
                      _times(row["ratio"]), *(floor if with_floor else []),
                      " ".join(_num(v) for v in h["rounds"]), " ".join(_num(v) for v in s["rounds"])])
    setup = section.get("setup", {})
    sync = "each write fsynced" if section.get("peer_fsync") else "writes not fsynced, its default"
    head = (f"Hercules against SeaweedFS {setup.get('version', '?')} (filer HTTP API, replication 002, {sync}), "
            f"medians of {section.get('rounds')} rounds, same aiohttp client, every read verified")
    if with_floor:
        head += ("\nfloor: an in-memory server (uvloop + httptools), the most any server could reach with this "
                 "client here; floor/S: that as a multiple of SeaweedFS")
    return head + "\n" + render_table(headers, lines, right={2, 3, 5, 6, 7} if with_floor else {2, 3, 5})
