"""What the command line prints: human sizes, local times, ``ls -l`` columns, or ``--json``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

UNITS = ("K", "M", "G", "T", "P", "E")
HALF_YEAR = 183 * 86400  # ls shows the year instead of the time for older (or future) entries


def human_size(n: int) -> str:
    """``ls -h`` style: 1023, 1.0K, 15M, 2.3G (powers of 1024, at most three digits)."""
    if n < 1024:
        return str(n)
    value = float(n)
    for unit in UNITS:
        value /= 1024
        if value < 1024 or unit == UNITS[-1]:
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
    raise AssertionError("unreachable")


def size(n: int, human: bool) -> str:
    return human_size(n) if human else str(n)


def ls_time(ts: float, now: float | None = None) -> str:
    """``ls -l`` style local time: ``Dec  2 01:55`` this half year, ``Dec  2  2025`` otherwise."""
    now = time.time() if now is None else now
    local = time.localtime(ts)
    if abs(now - ts) < HALF_YEAR:
        return time.strftime("%b %e %H:%M", local)
    return time.strftime("%b %e  %Y", local)


def full_time(ts: float) -> str:
    """``stat`` style local time with its offset: ``2026-12-02 01:55:07.123 +0000``."""
    local = time.localtime(ts)
    return time.strftime("%Y-%m-%d %H:%M:%S", local) + f".{int(ts % 1 * 1000):03d} " + time.strftime("%z", local)


def columns(rows: Sequence[Sequence[str]], right: Iterable[int] = ()) -> list[str]:
    """Rows padded into aligned columns (the ``right`` ones right-aligned), the last unpadded."""
    if not rows:
        return []
    right = set(right)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        if len(row) - 1 not in right:
            cells[-1] = row[-1]
        lines.append("  ".join(cells))
    return lines


def long_rows(entries: Iterable[dict[str, Any]], human: bool, name: str = "name") -> list[str]:
    """``ls -l`` lines: type, replication, size, modified, name (a directory's name ends in /)."""
    now = time.time()
    rows = [("d" if e["is_dir"] else "-", str(e["replication"]) if not e["is_dir"] else "-",
             size(e["size"], human), ls_time(e["modified"], now), e[name] + ("/" if e["is_dir"] else ""))
            for e in entries]
    return columns(rows, right=(1, 2))


def print_json(value: Any) -> None:
    print(json.dumps(value, default=str))


def say(line: str) -> None:
    """A note for the person at the terminal, on stderr so stdout stays the data."""
    print(line, file=sys.stderr, flush=True)
