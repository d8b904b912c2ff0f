"""``--profile DIR``: where the time goes, per measured phase.

* the bench process itself (the client side: client library or aiohttp) under ``cProfile``:
  ``DIR/<phase>.client.pstats`` and a text summary ``DIR/<phase>.client.txt``;
* the latency of every RPC the bench process makes, per message type (``DIR/<phase>.rpc.txt``:
  where a client-library operation waits, e.g. GetChunk vs WriteChunk of a small write);
* the cluster's processes (gateway, chunkservers, master) sampled by ``py-spy record``
  (``--format raw``: collapsed stacks) when py-spy is installed: ``DIR/<phase>.<role>.folded``
  and a summary of the hottest functions, self and inclusive, in ``DIR/<phase>.<role>.txt``.
"""

from __future__ import annotations

import collections
import cProfile
import io
import os
import pstats
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PY_SPY_RATE = 100  # samples per second per process (more distorts a 2-core machine)
SAMPLED_ROLES = ("gateway", "chunk1", "chunk2", "chunk3", "master")


def find_py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.py_spy = find_py_spy()
        self.files: list[str] = []
        self._rpc: dict[str, list[float]] | None = None

    @contextmanager
    def phase(self, name: str, pids: dict[str, int]) -> Iterator[None]:
        spies = self._start_spies(name, pids) if self.py_spy else []
        prof = cProfile.Profile()
        with self._rpc_timing() as rpc:
            prof.enable()
            try:
                yield
            finally:
                prof.disable()
        self._stop_spies(spies)
        self._write_client(name, prof)
        self._write_rpc(name, rpc)

    @contextmanager
    def _rpc_timing(self) -> Iterator[dict[str, list[float]]]:
        """Time every ``ConnectionPool.call`` of this process by message type, for one phase."""
        from hercules_core.rpc import ConnectionPool

        timings: dict[str, list[float]] = collections.defaultdict(list)
        original = ConnectionPool.call

        async def timed(pool: Any, peer: str, msg: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(pool, peer, msg, *args, **kwargs)
            finally:
                timings[type(msg).__name__].append(time.perf_counter() - started)

        ConnectionPool.call = timed  # type: ignore[method-assign]
        try:
            yield timings
        finally:
            ConnectionPool.call = original  # type: ignore[method-assign]

    def _write_rpc(self, name: str, timings: dict[str, list[float]]) -> None:
        if not timings:
            return
        lines = [f"{name}: RPCs made by the bench process (client library), slowest total first", "",
                 f"{'message':16s} {'calls':>7s} {'mean ms':>9s} {'p50 ms':>9s} {'p99 ms':>9s} {'total s':>9s}"]
        for msg, values in sorted(timings.items(), key=lambda kv: -sum(kv[1])):
            values.sort()
            p = lambda q: values[min(len(values) - 1, int(q * len(values)))] * 1e3  # noqa: E731
            lines.append(f"{msg:16s} {len(values):7d} {sum(values) / len(values) * 1e3:9.2f} {p(0.5):9.2f} "
                         f"{p(0.99):9.2f} {sum(values):9.2f}")
        (self.directory / f"{name}.rpc.txt").write_text("\n".join(lines) + "\n")

    def _write_client(self, name: str, prof: cProfile.Profile) -> None:
        path = self.directory / f"{name}.client.pstats"
        prof.dump_stats(path)
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(25)
        (self.directory / f"{name}.client.txt").write_text(out.getvalue())
        self.files.append(str(path))

    def _start_spies(self, name: str, pids: dict[str, int]) -> list[tuple[str, Path, subprocess.Popen]]:
        spies = []
        for role in SAMPLED_ROLES:
            pid = pids.get(role)
            if pid is None:
                continue
            out = self.directory / f"{name}.{role}.folded"
            proc = subprocess.Popen([self.py_spy or "py-spy", "record", "--pid", str(pid), "--format", "raw",
                                     "--rate", str(PY_SPY_RATE), "--nonblocking", *os.environ.get("HERCULES_PY_SPY_ARGS", "").split(), "--output", str(out)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            spies.append((role, out, proc))
        return spies

    def _stop_spies(self, spies: list[tuple[str, Path, subprocess.Popen]]) -> None:
        for _, _, proc in spies:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        for role, out, proc in spies:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if out.exists():
                (out.with_suffix(".txt")).write_text(summarize_folded(out))
                self.files.append(str(out))


def summarize_folded(path: Path, top: int = 25) -> str:
    """The hottest functions of a collapsed-stack file: self samples and inclusive samples."""
    self_counts: collections.Counter[str] = collections.Counter()
    incl_counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if f and not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        self_counts[_short(frames[-1])] += n
        for frame in set(_short(f) for f in frames):
            incl_counts[frame] += n
    lines = [f"{path.name}: {total} samples ({total / PY_SPY_RATE:.1f} s of CPU at {PY_SPY_RATE} Hz)", "",
             "self %   function"]
    lines += [f"{100 * c / total:6.1f}   {f}" for f, c in self_counts.most_common(top)] if total else []
    lines += ["", "incl %   function"]
    lines += [f"{100 * c / total:6.1f}   {f}" for f, c in incl_counts.most_common(top)] if total else []
    return "\n".join(lines) + "\n"


def _short(frame: str) -> str:
    """``fn (/long/path/pkg/mod.py:123)`` -> ``fn (pkg/mod.py)``: lines merged, paths shortened."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    file = where.rsplit(":", 1)[0]
    parts = file.split(os.sep)
    return f"{name} ({'/'.join(parts[-2:])})" if file else name
