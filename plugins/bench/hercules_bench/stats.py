"""Measuring helpers: latency percentiles, per-process CPU time and peak RSS from /proc."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hercules_bench.options import MB

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class VerificationError(Exception):
    """What was read back differs from what was written: the run must fail."""


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (``q`` in 0..100)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def latency_summary(latencies: list[float], seconds: float) -> dict[str, Any]:
    """ops, ops/s, p50/p99/max in milliseconds."""
    values = sorted(latencies)
    return {"ops": len(values), "seconds": round(seconds, 4),
            "ops_per_s": round(len(values) / seconds, 1) if seconds > 0 else 0.0,
            "p50_ms": round(percentile(values, 50) * 1e3, 3), "p99_ms": round(percentile(values, 99) * 1e3, 3),
            "max_ms": round(values[-1] * 1e3, 3) if values else 0.0}


def mbps(nbytes: int, seconds: float) -> float:
    return round(nbytes / MB / seconds, 1) if seconds > 0 else 0.0


# -- /proc ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (all its threads) so far; None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)


def status_kib(pid: int, key: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM, ...) in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs); False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class CpuMeter:
    """CPU seconds per named process over one phase, plus the phase's wall time.

    ``share`` is CPU seconds / wall seconds: 1.0 is one core kept busy the whole phase.
    """

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self.pids.setdefault("bench", os.getpid())
        self._start: dict[str, float] = {}
        self._t0 = 0.0

    def __enter__(self) -> "CpuMeter":
        self._t0 = time.perf_counter()
        self._start = {name: cpu_seconds(pid) or 0.0 for name, pid in self.pids.items()}
        self.result: dict[str, Any] = {}
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._t0
        per: dict[str, float] = {}
        for name, pid in self.pids.items():
            now = cpu_seconds(pid)
            if now is not None:
                per[name] = round(now - self._start.get(name, 0.0), 2)
        total = sum(per.values())
        self.result = {"wall_s": round(wall, 2), "cpu_s": per, "cpu_total_s": round(total, 2),
                       "cores_busy": round(total / wall, 2) if wall > 0 else 0.0}
