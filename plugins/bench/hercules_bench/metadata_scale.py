"""How the master's metadata scales: ``python -m hercules_bench.metadata_scale``.

Starts a real master process (no chunkservers: only the namespace is exercised) and,
through the async client library, creates ``--files`` files (default 1,000,000): one
directory with ``--big`` entries (default 100,000) and the rest spread over ``--dirs``
directories, with ``--concurrency`` requests in flight over ``--clients`` clients. Then
it measures:

- create rate (and a short probe with 1 request in flight, for the group-commit gain),
- master memory: VmRSS and VmHWM from /proc/<pid>/status, and its CPU seconds,
- the time to list the big directory fully in pages of ``--page`` (limit/cursor),
- stat rate on random files,
- the database size on disk (main file and WAL),
- restart time: SIGTERM (and then SIGKILL) the master, start it again, time until it
  answers Ping and a stat of a deep file works.

The create phase stops after ``--create-budget`` seconds; the report then says how many
files were made and extrapolates the full-size time linearly (and says so).

``--commit-only`` skips the scale run and measures only mutations/s with 1 and with
``--concurrency`` callers, in-process against the store (``--store-file`` can name another
implementation file of ``SqliteMetadataStore``, e.g. an older version, for comparison)
and through a master (``--master-pythonpath DIR`` runs the master from another source tree:
``DIR`` goes first on PYTHONPATH and is the master's working directory, since ``python -m``
puts the working directory ahead of everything else).

Prints a table and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hercules_core.testing.cluster import free_port, stop_process

DEEP = "/scale/deep/a/b/c/d/e/f/g/h/i/j/file"


# -- the master process ---------------------------------------------------------------------------



def proc_status(pid: int) -> dict[str, int]:
    """VmRSS/VmHWM (KiB) and CPU seconds of a process."""
    found: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        found["cpu_ticks"] = int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        pass
    return found


def cpu_seconds(pid: int) -> float:
    return proc_status(pid).get("cpu_ticks", 0) / os.sysconf("SC_CLK_TCK")


class Master:
    def __init__(self, root: Path, pythonpath: str | None = None, settings: dict[str, str] | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.pythonpath = pythonpath
        self.settings = settings or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "master"

    def start(self) -> float:
        """Spawn the master; return the monotonic time it was spawned."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERCULES_")}
        env.update({"SERVER_TYPE": "master_server", "SERVER_ADDRESS": self.address,
                    "ROOT_DIR": str(self.data_dir), "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "warning"})
        env.update(self.settings)
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath + os.pathsep + env.get("PYTHONPATH", "")
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "master.log", "ab")
        started = time.monotonic()
        # ``-m`` puts the working directory first on sys.path: run from the other tree if one is named
        cwd = self.pythonpath.split(os.pathsep)[0] if self.pythonpath else None
        self.proc = subprocess.Popen([sys.executable, "-m", "hercules_core", "serve"], env=env, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd)
        log.close()
        return started

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120.0) -> float:
        """Signal the master and wait for it to exit; return how long that took."""
        assert self.proc is not None
        started = time.monotonic()
        stop_process(self.proc, sig, timeout)
        self.proc = None
        return time.monotonic() - started

    def db_bytes(self) -> dict[str, int]:
        sizes = {}
        for suffix in ("", "-wal", "-shm"):
            path = self.data_dir / f"metadata.sqlite3{suffix}"
            sizes["db" + suffix.replace("-", "_")] = path.stat().st_size if path.exists() else 0
        return sizes


async def wait_ready(master: Master, timeout: float = 600.0) -> Any:
    """A started client once the master answers Ping."""
    from hercules_core.client import connect

    deadline = time.monotonic() + timeout
    while True:
        if master.proc is not None and master.proc.poll() is not None:
            log = (master.root / "master.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the master exited with {master.proc.returncode}:\n{log}")
        try:
            return await asyncio.wait_for(connect(master.address), 5.0)
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


# -- workloads ------------------------------------------------------------------------------------


def layout(files: int, dirs: int, big: int) -> tuple[list[str], Iterator[str]]:
    """(directories, file paths): the big directory first, then the rest round-robin over ``dirs``."""
    big = min(big, files)
    rest = files - big
    directories = ["/scale/big"] + [f"/scale/d{d:03d}" for d in range(dirs)]

    def paths() -> Iterator[str]:
        for i in range(big):
            yield f"/scale/big/f{i:07d}"
        per_dir = -(-rest // dirs) if dirs else 0
        made = 0
        for i in range(per_dir):
            for d in range(dirs):
                if made == rest:
                    return
                yield f"/scale/d{d:03d}/f{i:07d}"
                made += 1

    return directories, paths()


async def run_workers(clients: list[Any], concurrency: int, items: Iterator[str], op: str,
                      deadline: float | None = None, progress: Any = None) -> tuple[int, int, float]:
    """Apply ``op`` (client method name) to ``items`` with ``concurrency`` in flight.

    Returns (done, errors, seconds). Stops at ``deadline`` (monotonic) if given.
    """
    done = errors = 0
    started = time.monotonic()

    async def worker(n: int) -> None:
        nonlocal done, errors
        client = clients[n % len(clients)]
        call = getattr(client, op)
        for path in items:
            try:
                await call(path)
                done += 1
            except Exception as exc:  # noqa: BLE001 - counted and shown once
                errors += 1
                if errors <= 3:
                    print(f"  {op} {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            if deadline is not None and time.monotonic() > deadline:
                return

    async def report() -> None:
        while True:
            await asyncio.sleep(10)
            if progress is not None:
                progress(done, time.monotonic() - started)

    reporter = asyncio.ensure_future(report())
    try:
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    finally:
        reporter.cancel()
    return done, errors, time.monotonic() - started


async def probe_rate(clients: list[Any], concurrency: int, prefix: str, seconds: float) -> float:
    """Creates/s of distinct files with ``concurrency`` in flight for about ``seconds``."""
    await clients[0].mkdir(prefix)
    counter = iter(range(10**9))
    items = (f"{prefix}/p{i:08d}" for i in counter)
    done, errors, took = await run_workers(clients, concurrency, items, "create",
                                           deadline=time.monotonic() + seconds)
    return done / took


async def list_all(client: Any, path: str, page: int) -> tuple[int, int, float]:
    """(entries, pages, seconds) to list ``path`` fully with limit/cursor."""
    started = time.monotonic()
    cursor, entries, pages = "", 0, 0
    while True:
        listing = await client.list(path, limit=page, cursor=cursor)
        entries += len(listing.entries)
        pages += 1
        cursor = listing.next_cursor
        if not cursor:
            return entries, pages, time.monotonic() - started


# -- the scale run ---------------------------------------------------------------------------------


async def scale(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from hercules_core.client import connect

    master = Master(root, args.master_pythonpath)
    result: dict[str, Any] = {"files_asked": args.files, "dirs": args.dirs, "big_dir_entries": args.big,
                              "concurrency": args.concurrency, "clients": args.clients}
    master.start()
    first = await wait_ready(master)
    clients = [first] + [await connect(master.address) for _ in range(args.clients - 1)]
    try:
        directories, paths = layout(args.files, args.dirs, args.big)
        for d in directories:
            await first.mkdir(d)
        await first.mkdir(DEEP.rsplit("/", 1)[0])
        await first.create(DEEP)
        result["rss_empty_kib"] = proc_status(master.pid).get("VmRSS")

        if args.probe > 0:
            result["probe_creates_per_s_1"] = round(await probe_rate(clients, 1, "/probe1", args.probe))
            result["probe_creates_per_s_n"] = round(await probe_rate(clients, args.concurrency, "/probeN",
                                                                     args.probe))
            print(f"probe: {result['probe_creates_per_s_1']} creates/s with 1 in flight, "
                  f"{result['probe_creates_per_s_n']} with {args.concurrency}", file=sys.stderr)

        cpu0 = cpu_seconds(master.pid)

        def progress(done: int, took: float) -> None:
            st = proc_status(master.pid)
            print(f"  {done:>9,} created in {took:6.0f}s ({done / took:7.0f}/s), master RSS "
                  f"{st.get('VmRSS', 0) / 1024:.0f} MiB", file=sys.stderr)

        created, errors, took = await run_workers(clients, args.concurrency, paths, "create",
                                                  deadline=time.monotonic() + args.create_budget, progress=progress)
        st = proc_status(master.pid)
        result.update({
            "files_created": created, "create_errors": errors, "create_seconds": round(took, 1),
            "creates_per_s": round(created / took), "master_cpu_s_creating": round(cpu_seconds(master.pid) - cpu0, 1),
            "rss_after_create_kib": st.get("VmRSS"), "hwm_after_create_kib": st.get("VmHWM"),
            "complete": created + errors >= args.files,
        })
        if not result["complete"]:
            result["extrapolated_create_seconds_for_all"] = round(took * args.files / max(1, created))

        big = min(args.big, created)
        entries, pages, listed = await list_all(first, "/scale/big", args.page)
        result.update({"list_entries": entries, "list_pages": pages, "list_seconds": round(listed, 2),
                       "list_entries_per_s": round(entries / listed)})
        if entries != big:
            print(f"warning: listed {entries} entries in /scale/big, expected {big}", file=sys.stderr)

        sample_from = [f"/scale/big/f{i:07d}" for i in range(big)]
        if created > big:
            per_dir_made = (created - big) // max(1, args.dirs)
            sample_from += [f"/scale/d{d:03d}/f{i:07d}" for d in range(args.dirs) for i in range(max(0, per_dir_made))
                            ][:200_000]
        rng = random.Random(7)
        stat_items = (rng.choice(sample_from) for _ in range(args.stats))
        stated, stat_errors, stat_took = await run_workers(clients, args.concurrency, stat_items, "stat")
        result.update({"stats": stated, "stat_errors": stat_errors, "stats_per_s": round(stated / stat_took)})
        st = proc_status(master.pid)
        result.update({"rss_end_kib": st.get("VmRSS"), "hwm_end_kib": st.get("VmHWM")})
        result.update(master.db_bytes())
    finally:
        for c in clients:
            await c.close()

    for how, sig in (("sigterm", signal.SIGTERM), ("sigkill", signal.SIGKILL)):
        if how == "sigkill":  # leave some fresh commits in the WAL first
            client = await connect(master.address)
            try:
                await client.mkdir("/scale/after")
                await run_workers([client], args.concurrency, (f"/scale/after/{how}{i}" for i in range(5000)),
                                  "create")
            finally:
                await client.close()
            result["db_wal_before_kill"] = master.db_bytes()["db_wal"]
        result[f"{how}_stop_seconds"] = round(master.stop(sig), 2)
        started = master.start()
        client = await wait_ready(master)
        result[f"{how}_restart_to_ping_s"] = round(time.monotonic() - started, 2)
        try:
            info = await client.stat(DEEP)
            assert info.path == DEEP
            await client.stat(f"/scale/big/f{big - 1:07d}")
            result[f"{how}_restart_to_deep_stat_s"] = round(time.monotonic() - started, 2)
        finally:
            await client.close()
        result[f"rss_after_{how}_restart_kib"] = proc_status(master.pid).get("VmRSS")
    master.stop()
    result.update({f"final_{k}": v for k, v in master.db_bytes().items()})
    return result


# -- group commit: 1 vs N callers ------------------------------------------------------------------------


def load_store_class(store_file: str | None) -> Any:
    if not store_file:
        from hercules_core.builtin.metadata_sqlite import SqliteMetadataStore

        return SqliteMetadataStore
    spec = importlib.util.spec_from_file_location("hercules_bench_store_under_test", store_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SqliteMetadataStore


async def store_rate(store_class: Any, root: Path, callers: int, count: int) -> float:
    store = store_class(root / "metadata.sqlite3")
    await store.open()
    try:
        await store.mkdir("/d")
        counter = iter(range(count))

        async def caller() -> None:
            for i in counter:
                await store.create(f"/d/f{i:07d}", 3)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        return count / (time.perf_counter() - started)
    finally:
        await store.close()


async def commit_only(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    store_class = load_store_class(args.store_file)
    result: dict[str, Any] = {"store_file": args.store_file or "hercules_core/builtin/metadata_sqlite.py",
                              "master_pythonpath": args.master_pythonpath or "", "repeats": args.repeats}
    for callers, count in ((1, args.commit_count // 4), (args.concurrency, args.commit_count)):
        rates = []
        for r in range(args.repeats):
            where = root / f"store-{callers}-{r}"
            rates.append(await store_rate(store_class, where, callers, count))
            shutil.rmtree(where, ignore_errors=True)
        result[f"store_creates_per_s_{callers}"] = round(statistics.median(rates))
        result[f"store_creates_per_s_{callers}_all"] = [round(x) for x in rates]
    if args.probe > 0:
        for r in range(args.repeats):
            master = Master(root / f"master-{r}", args.master_pythonpath)
            master.start()
            client = await wait_ready(master)
            try:
                one = await probe_rate([client], 1, "/one", args.probe)
                many = await probe_rate([client], args.concurrency, "/many", args.probe)
            finally:
                await client.close()
                master.stop()
                shutil.rmtree(master.root, ignore_errors=True)
            result.setdefault("rpc_creates_per_s_1_all", []).append(round(one))
            result.setdefault(f"rpc_creates_per_s_{args.concurrency}_all", []).append(round(many))
        result["rpc_creates_per_s_1"] = round(statistics.median(result["rpc_creates_per_s_1_all"]))
        result[f"rpc_creates_per_s_{args.concurrency}"] = round(
            statistics.median(result[f"rpc_creates_per_s_{args.concurrency}_all"]))
    return result


# -- report ------------------------------------------------------------------------------------------


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.0f} MiB"


def table(result: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = []
    if "files_created" in result:
        made = result["files_created"]
        rows += [
            ("files created", f"{made:,} of {result['files_asked']:,}" + ("" if result["complete"] else " (budget hit)")),
            ("create rate", f"{result['creates_per_s']:,}/s with {result['concurrency']} in flight "
                            f"({result['create_seconds']} s, {result['create_errors']} errors)"),
        ]
        if "probe_creates_per_s_1" in result:
            rows.append(("create rate probe", f"{result['probe_creates_per_s_1']:,}/s with 1 in flight, "
                                              f"{result['probe_creates_per_s_n']:,}/s with {result['concurrency']}"))
        if "extrapolated_create_seconds_for_all" in result:
            rows.append(("extrapolated (linear)", f"{result['extrapolated_create_seconds_for_all']} s for "
                                                  f"{result['files_asked']:,} files"))
        rows += [
            ("master CPU while creating", f"{result['master_cpu_s_creating']} s"),
            ("master RSS empty", _mib(result.get("rss_empty_kib"))),
            ("master RSS / HWM after creates", f"{_mib(result.get('rss_after_create_kib'))} / "
                                               f"{_mib(result.get('hwm_after_create_kib'))}"),
            ("master RSS / HWM at end", f"{_mib(result.get('rss_end_kib'))} / {_mib(result.get('hwm_end_kib'))}"),
            ("list big dir", f"{result['list_entries']:,} entries in {result['list_pages']} pages: "
                             f"{result['list_seconds']} s ({result['list_entries_per_s']:,} entries/s)"),
            ("stat rate", f"{result['stats_per_s']:,}/s ({result['stats']:,} stats, {result['stat_errors']} errors)"),
            ("database on disk", f"{result['db'] / 2**20:.1f} MiB + WAL {result['db_wal'] / 2**20:.1f} MiB"),
        ]
        for how in ("sigterm", "sigkill"):
            if f"{how}_restart_to_ping_s" in result:
                rows.append((f"restart after {how.upper()}",
                             f"stop {result[f'{how}_stop_seconds']} s; ping after {result[f'{how}_restart_to_ping_s']} s,"
                             f" deep stat after {result[f'{how}_restart_to_deep_stat_s']} s; RSS "
                             f"{_mib(result.get(f'rss_after_{how}_restart_kib'))}"))
    for key, value in result.items():
        if key.startswith(("store_creates_per_s_", "rpc_creates_per_s_")) and not key.endswith("_all"):
            callers = key.rsplit("_", 1)[1]
            where = "in-process store" if key.startswith("store") else "through the master"
            rows.append((f"creates/s, {callers} caller(s), {where}", f"{value:,}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hercules_bench.metadata_scale",
                                description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--files", type=int, default=1_000_000, help="files to create in all (default 1,000,000)")
    p.add_argument("--dirs", type=int, default=100, help="directories sharing the files outside the big one")
    p.add_argument("--big", type=int, default=100_000, help="entries in the one big directory")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    p.add_argument("--clients", type=int, default=4, help="client connections sharing them")
    p.add_argument("--page", type=int, default=1000, help="list page size")
    p.add_argument("--stats", type=int, default=50_000, help="stats to time")
    p.add_argument("--probe", type=float, default=5.0, help="seconds of the 1-vs-N create probe (0: skip)")
    p.add_argument("--create-budget", type=float, default=1500.0, help="stop creating after this many seconds")
    p.add_argument("--root", help="work directory (default: a new temporary one, removed after)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--json", help="write the results here (default: metadata_scale.json in the work directory)")
    p.add_argument("--commit-only", action="store_true", help="only 1 vs N callers: store and master")
    p.add_argument("--commit-count", type=int, default=8000, help="creates per N-caller run (1 caller: a quarter)")
    p.add_argument("--repeats", type=int, default=3, help="runs per --commit-only figure (median reported)")
    p.add_argument("--store-file", help="--commit-only: a metadata_sqlite.py to measure instead of the installed one")
    p.add_argument("--master-pythonpath", help="run the master with this PYTHONPATH first (another source tree)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="hercules-metascale-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        run = commit_only(args, root) if args.commit_only else scale(args, root)
        result = asyncio.run(run)
        result["machine"] = {"cpus": os.cpu_count(), "loadavg": Path("/proc/loadavg").read_text().split()[:3]}
        out = Path(args.json) if args.json else root / "metadata_scale.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(table(result))
        print(f"results: {out}")
    finally:
        if not args.keep:  # the databases are large; the JSON and the master log stay
            for path in root.glob("master*"):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
