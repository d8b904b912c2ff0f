"""The issue's targets, the table and the JSON document of one run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

MIB_KIB = 1024


@attrs.frozen
class Target:
    """``result[workload][key...] >= value`` (or ``>= fraction`` of a ceiling when ``of_ceiling``)."""

    label: str
    value: float
    of_ceiling: bool = False  # value is a fraction of the row's ceiling
    kind: str = "target"  # "target" (the issue's) or "peer" (the peer system's figure, for reference)


@attrs.frozen
class Row:
    workload: str  # result name in the JSON
    title: str
    metric: str  # "write", "read", "mkdir", ...
    path: tuple[str, ...]  # keys into the workload's result for the value
    unit: str
    ceiling: str | None = None  # name in ceilings: "disk/3", "disk", "loopback"
    latency: tuple[str, ...] | None = None  # keys of the dict holding p50_ms / p99_ms
    targets: tuple[Target, ...] = ()


T, P = "target", "peer"
# (store, data kind, label) of workload (f), in the order they are printed
STORE_RUNS = (("fs", "json", "JSON lines"), ("zstd", "json", "JSON lines"), ("fs", "random", "random"),
              ("zstd", "random", "random"))


def _store_rows(store: str, data: str, label: str) -> tuple[Row, ...]:
    key, name = f"store_{store}_{data}", f"store {store}, {label}, rf=3"
    return (Row(key, name, "write", ("write", "MBps"), "MB/s", "disk/3"),
            Row(key, name, "read", ("read", "MBps"), "MB/s", "loopback"),
            Row(key, name, "disk/logical", ("disk_ratio",), "x"))

ROWS: tuple[Row, ...] = (
    Row("large_gateway_rf3", "large file, gateway, rf=3", "write", ("write", "MBps"), "MB/s", "disk/3", None,
        (Target("≥ 90 MB/s", 90), Target("≥ 60% of disk/3", 0.6, True))),
    Row("large_gateway_rf3", "large file, gateway, rf=3", "read", ("read", "MBps"), "MB/s", "loopback", None,
        (Target("≥ 790 MB/s", 790),)),
    Row("s3_large", "large object, S3, rf=3", "write", ("write", "MBps"), "MB/s", "disk/3"),
    Row("s3_large", "large object, S3, rf=3", "read", ("read", "MBps"), "MB/s", "loopback"),
    Row("large_gateway_rf1", "large file, gateway, rf=1", "write", ("write", "MBps"), "MB/s", "disk"),
    Row("large_gateway_rf1", "large file, gateway, rf=1", "read", ("read", "MBps"), "MB/s", "loopback", None,
        (Target("≥ 500 MB/s", 500),)),
    Row("large_client_rf3", "large file, client lib, rf=3", "write", ("write", "MBps"), "MB/s", "disk/3"),
    Row("large_client_rf3", "large file, client lib, rf=3", "read", ("read", "MBps"), "MB/s", "loopback"),
    Row("large_client_rf1", "large file, client lib, rf=1", "write", ("write", "MBps"), "MB/s", "disk"),
    Row("large_client_rf1", "large file, client lib, rf=1", "read", ("read", "MBps"), "MB/s", "loopback"),
    Row("small_gateway", "4 KiB files, gateway, 8 clients", "create+write", ("write", "ops_per_s"), "files/s", None,
        ("write",), (Target("≥ 550 /s", 550),)),
    Row("small_gateway", "4 KiB files, gateway, 8 clients", "read", ("read", "ops_per_s"), "files/s", None,
        ("read",), (Target("≥ 2400 /s", 2400),)),
    Row("s3_small", "4 KiB objects, S3, 8 clients", "PutObject", ("write", "ops_per_s"), "files/s", None,
        ("write",)),
    Row("s3_small", "4 KiB objects, S3, 8 clients", "GetObject", ("read", "ops_per_s"), "files/s", None,
        ("read",)),
    Row("small_client", "4 KiB files, client lib, 8 clients", "create+write", ("write", "ops_per_s"), "files/s",
        None, ("write",)),
    Row("small_client", "4 KiB files, client lib, 8 clients", "read", ("read", "ops_per_s"), "files/s", "rpc/3",
        ("read",)),
    Row("medium_gateway", "1 MiB files, gateway, 4 clients", "write", ("write", "MBps"), "MB/s", "disk/3",
        ("write",)),
    Row("medium_gateway", "1 MiB files, gateway, 4 clients", "read", ("read", "MBps"), "MB/s", "loopback",
        ("read",), (Target("≥ 630 MB/s", 630),)),
    Row("medium_client", "1 MiB files, client lib, 4 clients", "write", ("write", "MBps"), "MB/s", "disk/3",
        ("write",)),
    Row("medium_client", "1 MiB files, client lib, 4 clients", "read", ("read", "MBps"), "MB/s", "loopback",
        ("read",)),
    Row("metadata", "metadata, client lib, 8 clients", "mkdir", ("mkdir", "ops_per_s"), "ops/s", "rpc", ("mkdir",)),
    Row("metadata", "metadata, client lib, 8 clients", "create", ("create", "ops_per_s"), "ops/s", "rpc",
        ("create",), (Target("≥ 6000 /s", 6000),)),
    Row("metadata", "metadata, client lib, 8 clients", "stat", ("stat", "ops_per_s"), "ops/s", "rpc", ("stat",),
        (Target("≥ 20000 /s", 20000),)),
    Row("metadata", "metadata, client lib, 8 clients", "list", ("list", "ops_per_s"), "ops/s", "rpc", ("list",)),
    Row("metadata", "metadata, client lib, 8 clients", "rename", ("rename", "ops_per_s"), "ops/s", "rpc",
        ("rename",)),
    Row("append", "record append 1 KiB, 8 appenders", "append", ("records_per_s",), "records/s", None, ()),
    *(row for run in STORE_RUNS for row in _store_rows(*run)),
)


def ceiling_values(ceilings: dict[str, Any]) -> dict[str, float]:
    disk = ceilings.get("disk_stream", {}).get("MBps", 0.0)
    rpc = ceilings.get("round_trips", {}).get("per_s", 0.0)
    return {"disk": disk, "disk/3": round(disk / 3, 1),
            "loopback": ceilings.get("loopback_socket", {}).get("MBps", 0.0),
            "rpc": rpc, "rpc/3": round(rpc / 3, 1)}


def _dig(d: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def evaluate(results: dict[str, Any], ceilings: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per table row: value, ceiling and ratio, latencies, each target and whether it is met."""
    ceil = ceiling_values(ceilings)
    rows = []
    for row in ROWS:
        value = _dig(results.get(row.workload), row.path)
        if not isinstance(value, (int, float)):
            continue
        c = ceil.get(row.ceiling) if row.ceiling else None
        lat = _dig(results.get(row.workload), row.latency) if row.latency else None
        checks = []
        for t in row.targets:
            need = t.value * c if t.of_ceiling and c else t.value
            checks.append({"label": t.label, "kind": t.kind, "need": round(need, 1), "met": value >= need})
        rows.append({"workload": row.workload, "title": row.title, "metric": row.metric, "value": value,
                     "unit": row.unit, "ceiling": row.ceiling, "ceiling_value": c,
                     "of_ceiling": round(value / c, 3) if c else None,
                     "p50_ms": lat.get("p50_ms") if isinstance(lat, dict) else None,
                     "p99_ms": lat.get("p99_ms") if isinstance(lat, dict) else None,
                     "checks": checks})
    return rows


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def render_table(headers: list[str], lines: list[list[str]], right: set[int]) -> str:
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(headers)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
                         ).rstrip()

    return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *(fmt(line) for line in lines)])


def results_table(rows: list[dict[str, Any]]) -> str:
    headers = ["workload", "metric", "result", "unit", "p50 ms", "p99 ms", "ceiling", "of ceil",
               "target / reference", "met"]
    lines = []
    for r in rows:
        ceiling = f"{r['ceiling']} {_fmt(r['ceiling_value'])}" if r["ceiling"] else ""
        ratio = f"{100 * r['of_ceiling']:.0f}%" if r["of_ceiling"] is not None else ""
        targets = "; ".join(c["label"] for c in r["checks"])
        met = "; ".join(("yes" if c["met"] else "NO") if c["kind"] == "target" else
                        ("above" if c["met"] else "below") for c in r["checks"])
        lines.append([r["title"], r["metric"], _fmt(r["value"], 2 if r["unit"] == "x" else 1), r["unit"],
                      _fmt(r["p50_ms"], 2), _fmt(r["p99_ms"], 2), ceiling, ratio, targets, met])
    return render_table(headers, lines, right={2, 4, 5, 7})


# (key, label, value key, unit, how): one row of the ceilings table each
_CEILING_ROWS: tuple[tuple[str, str, str, str, Callable[[dict[str, Any]], str]], ...] = (
    ("disk_stream", "disk: sequential 4 MiB writes + fdatasync", "MBps", "MB/s",
     lambda r: f"{r['bytes'] >> 20} MiB in {r['seconds']} s"),
    ("disk_sync_ops", "disk: 4 KiB write + fdatasync", "ops_per_s", "ops/s", lambda r: f"{r['latency_ms']} ms each"),
    ("loopback_socket", "loopback TCP, 2 processes, plain sockets", "MBps", "MB/s",
     lambda r: f"{r['bytes'] >> 20} MiB in 1 MiB frames"),
    ("loopback_asyncio", "loopback TCP, 2 processes, asyncio+uvloop", "MBps", "MB/s",
     lambda r: f"{r['bytes'] >> 20} MiB in 1 MiB frames"),
    ("round_trips", "loopback round trips, 2 processes, 8 conns", "per_s", "/s",
     lambda r: f"64 B request/response, {r['latency_us']} us each"),
    ("thread_hop", "thread hop (run_in_executor and back)", "per_s", "/s", lambda r: f"{r['cpu_us']} us of CPU each"),
    ("page_cache_write", "page cache: 1 MiB pwrite, no sync", "MBps", "MB/s",
     lambda r: f"{r['cpu_ms_per_MiB']} ms of CPU per MiB"),
)


def ceilings_table(ceilings: dict[str, Any]) -> str:
    lines = []
    for key, label, value, unit, how in _CEILING_ROWS:
        result = ceilings.get(key)
        if result:
            lines.append([label, _fmt(result[value]), unit, how(result) + _tries(result)])
    return render_table(["ceiling", "result", "unit", "how"], lines, right={1})


def _tries(result: dict[str, Any]) -> str:
    tries = result.get("tries")
    return f"; best of {', '.join(_fmt(float(t)) for t in tries)}" if tries and len(tries) > 1 else ""


def rss_table(results: dict[str, Any]) -> str:
    lines = []
    for name in ("large_gateway_rf3", "large_gateway_rf1"):
        rss = (results.get(name) or {}).get("gateway_rss")
        if not rss or rss.get("write_peak_kib") is None:
            continue
        mib = lambda k: f"{rss[k] / MIB_KIB:,.1f}" if rss.get(k) is not None else "?"  # noqa: E731
        lines.append([name, mib("baseline_kib"), mib("write_peak_kib"), mib("read_peak_kib"),
                      "yes" if rss.get("reset") else "no (peak since start)"])
    if not lines:
        return ""
    return render_table(["gateway process (VmHWM)", "RSS before MiB", "peak PUT MiB", "peak GET MiB",
                         "peak reset per phase"], lines, right={1, 2, 3})


def cpu_table(results: dict[str, Any]) -> str:
    """Which process burnt the CPU in each phase (seconds of CPU per second of wall time)."""
    lines = []
    roles = ["bench", "gateway", "master", "chunk1", "chunk2", "chunk3"]
    for name, entry in results.items():
        cpu = entry.get("cpu") if isinstance(entry, dict) else None
        if not isinstance(cpu, dict):
            continue
        phases = cpu.items() if "wall_s" not in cpu else [("", cpu)]
        for phase, m in phases:
            if not isinstance(m, dict) or not m.get("wall_s"):
                continue
            wall = m["wall_s"]
            per = m.get("cpu_s", {})
            lines.append([f"{name} {phase}".strip(), f"{wall:.1f}",
                          *(f"{per[r] / wall:.2f}" if r in per else "" for r in roles), f"{m['cores_busy']:.2f}"])
    if not lines:
        return ""
    return render_table(["phase", "wall s", *roles, "total"], lines, right=set(range(1, len(roles) + 3)))
