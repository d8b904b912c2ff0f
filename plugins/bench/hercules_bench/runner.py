"""``hercules bench``: ceilings, a local cluster (or a running one), the workloads, the report."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from hercules_core.cli import run_async
from hercules_bench import ceilings as ceil
from hercules_bench.http import Gateway
from hercules_bench.options import WORKLOADS, BenchOptions, human_size
from hercules_bench.peer import peer_missing, peer_table, run_peer
from hercules_bench.report import ceilings_table, cpu_table, evaluate, results_table, rss_table
from hercules_bench.s3 import s3_available
from hercules_bench.stats import VerificationError
from hercules_bench.workloads import WORKLOAD_FUNCS, BenchContext

EXIT_OK, EXIT_MISMATCH, EXIT_ERROR, EXIT_INCOMPLETE = 0, 1, 2, 3
MIN_PHASE_SECONDS = 3.0  # a workload is not started with less time than this left
CEILING_TRIES = 3


# -- the machine ------------------------------------------------------------------------------


def machine_info(data_dir: Path) -> dict[str, Any]:
    info: dict[str, Any] = {"nproc": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_bytes"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    usage = shutil.disk_usage(data_dir)
    info["disk"] = {"path": str(data_dir), "total_bytes": usage.total, "free_bytes": usage.free,
                    **_mount_of(data_dir)}
    return info


def software_info() -> dict[str, Any]:
    """What was measured: the package version and, in a git checkout, the commit (and local edits)."""
    import subprocess

    import hercules_core

    info: dict[str, Any] = {"hercules": getattr(hercules_core, "__version__", "?")}
    repo = Path(hercules_core.__file__).resolve().parent.parent
    if (repo / ".git").exists():
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                                  timeout=10).stdout.strip()

        try:
            info["git_commit"] = git("rev-parse", "--short=12", "HEAD")
            status = git("status", "--porcelain", "--untracked-files=no")
            info["git_modified_files"] = len([line for line in status.splitlines() if line.strip()])
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def _mount_of(path: Path) -> dict[str, str]:
    best: dict[str, str] = {}
    try:
        real = str(path.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, fstype = line.split()[:3]
            if (real == mount or real.startswith(mount.rstrip("/") + "/")) and \
                    len(mount) >= len(best.get("mount", "")):
                best = {"device": device, "mount": mount, "fstype": fstype}
    except OSError:
        pass
    return best


def measure_ceilings(o: BenchOptions, data_dir: Path) -> dict[str, Any]:
    """Each ceiling is the best of ``CEILING_TRIES`` tries: a ceiling is what the machine *can* do,
    and on a shared machine a single try mostly measures the neighbours."""
    limit = o.phase_limit

    def best(key: str, measure: Any) -> dict[str, Any]:
        tries = [measure() for _ in range(CEILING_TRIES)]
        top = max(tries, key=lambda r: r[key])
        return {**top, "tries": [t[key] for t in tries]}

    return {"disk_stream": best("MBps", lambda: ceil.disk_stream(data_dir, o.disk_size, o.disk_piece, limit)),
            "disk_sync_ops": best("ops_per_s", lambda: ceil.disk_sync_ops(data_dir, o.sync_ops, min(limit, 10.0))),
            "loopback_socket": best("MBps", lambda: ceil.loopback(o.loopback_size, "socket", timeout=limit + 30)),
            "loopback_asyncio": best("MBps", lambda: ceil.loopback(o.loopback_size, "asyncio",
                                                                   timeout=limit + 30)),
            "round_trips": best("per_s", lambda: ceil.round_trips(o.rtt_count, min(limit, 10.0))),
            "thread_hop": best("per_s", lambda: ceil.thread_hop(o.hop_count, min(limit, 5.0))),
            "page_cache_write": best("MBps", lambda: ceil.page_cache_write(data_dir, o.page_cache_size,
                                                                           min(limit, 10.0)))}


def machine_load() -> dict[str, Any]:
    """Load average and CPU pressure now: other work on the machine makes every figure smaller."""
    load: dict[str, Any] = {}
    try:
        load["loadavg"] = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        pass
    try:
        for line in Path("/proc/pressure/cpu").read_text().splitlines():
            if line.startswith("some"):
                load["cpu_pressure"] = {k: float(v) for k, v in (f.split("=") for f in line.split()[1:])
                                        if k.startswith("avg")}
    except OSError:
        pass
    return load


# -- running -----------------------------------------------------------------------------------


class Run:
    def __init__(self, options: BenchOptions, out: TextIO) -> None:
        self.o = options
        self.out = out
        self.started = time.monotonic()
        self.deadline = self.started + options.time_limit
        self.clusters: list[Any] = []
        self.results: dict[str, Any] = {}
        self.errors: list[dict[str, str]] = []
        self.skipped: dict[str, str] = {}
        self.tmp: Path | None = None
        self.cluster_info: dict[str, Any] = {}  # what the master says of itself: chunk size, replication
        self.peer: dict[str, Any] | None = None  # --peer: the side-by-side section (peer.py)

    def log(self, message: str) -> None:
        sys.stderr.write(f"[{time.monotonic() - self.started:6.1f}s] {message}\n")  # one write: threads log too
        sys.stderr.flush()

    def workdir(self) -> Path:
        """A fresh directory for this run (removed afterwards unless ``--keep``)."""
        parent = None
        if self.o.data_dir:
            parent = Path(self.o.data_dir).resolve()
            parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix="hercules-bench-", dir=parent))
        return self.tmp

    def start_cluster(self, name: str, store: str = "fs") -> Any:
        from hercules_core.testing.cluster import LocalCluster

        root = self.root_dir / f"cluster-{name}"
        # S3 keys in our environment are given to the gateway too: the s3 workload then signs (SigV4);
        # so are the settings an A/B run of the data path varies (docs/performance.md)
        passed = ("HERCULES_S3_ACCESS_KEY", "HERCULES_S3_SECRET_KEY", "HERCULES_PACK_THRESHOLD",
                  "HERCULES_PACK_LANES", "HERCULES_HEAP_KEEP", "HERCULES_ENTRY_LEASE", "HERCULES_GATEWAY_ENTRY_CACHE")
        keys = {k: os.environ[k] for k in passed if os.environ.get(k)}
        cluster = LocalCluster(root, chunkservers=self.o.chunkservers, store=store,
                               settings={"HERCULES_CHUNK_SIZE": str(self.o.chunk_size), **keys})
        self.clusters.append(cluster)
        self.log(f"starting cluster {name} (store {store}, {self.o.chunkservers} chunkservers, "
                 f"chunk size {human_size(self.o.chunk_size)}) in {root}")
        return cluster.start(timeout=60.0)

    def execute(self) -> int:
        if self.o.peer and (missing := peer_missing()):  # before anything is measured: it could not compare
            sys.stderr.write(f"hercules bench: error: {missing}\n")
            return EXIT_ERROR
        self.root_dir = self.workdir()
        doc: dict[str, Any] = {"version": 1, "tool": "hercules bench",
                               "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                               "options": self.o.as_dict(), "machine": machine_info(self.root_dir),
                               "software": software_info(), "load_start": machine_load()}
        code = EXIT_OK
        try:
            self.log("measuring the machine's ceilings (disk, loopback TCP, thread hop, page cache)")
            doc["ceilings"] = measure_ceilings(self.o, self.root_dir)
            code = run_async(self._workloads())
        except VerificationError as exc:  # workloads report their own; this is a last resort
            self.errors.append({"workload": "-", "error": f"verification failed: {exc}"})
            code = EXIT_MISMATCH
        except KeyboardInterrupt:
            self.errors.append({"workload": "-", "error": "interrupted"})
            code = EXIT_ERROR
        finally:
            for cluster in self.clusters:
                cluster.stop()
            if self.tmp is not None and not self.o.keep:
                shutil.rmtree(self.tmp, ignore_errors=True)
            elif self.tmp is not None:
                self.log(f"kept {self.tmp} (cluster data, logs under cluster-*/logs; a peer's under peer-*)")
        doc.update({"duration_s": round(time.monotonic() - self.started, 1), "load_end": machine_load(),
                    "cluster": self.cluster_info, "results": self.results, "skipped": self.skipped,
                    "errors": self.errors, "exit_code": code})
        if self.peer is not None:
            doc["peer"] = self.peer
        doc["rows"] = evaluate(self.results, doc.get("ceilings", {}))
        doc["ok"] = code == EXIT_OK
        self.print_report(doc)
        self.write_json(doc)
        return code

    async def _workloads(self) -> int:
        o = self.o
        local = o.local
        zstd: asyncio.Task[Any] | None = None
        if local:
            if "stores" in o.only:  # started beside the main one: it idles until the stores workload
                zstd = asyncio.ensure_future(asyncio.to_thread(self.start_cluster, "zstd", "zstd"))
            try:
                cluster = await asyncio.to_thread(self.start_cluster, "main")
            finally:
                if zstd is not None:
                    await asyncio.wait([zstd])
            if zstd is not None:
                zstd.result()  # raises if the second cluster did not start
            gateway_url, master_addr = cluster.gateway_url, cluster.master_addr
            s3_url = cluster.s3_url if s3_available() else None
            pids = {name: p.proc.pid for name, p in cluster.procs.items() if p.proc is not None}
        else:
            gateway_url, master_addr, pids = o.gateway or "", o.master or "", {}
            s3_url = o.s3 if s3_available() else None
        profiler = None
        if o.profile_dir:
            from hercules_bench.profiling import Profiler

            profiler = Profiler(Path(o.profile_dir))
            self.log(f"profiling into {o.profile_dir} (py-spy: {profiler.py_spy or 'not found, client side only'})")

        async def store_cluster(store: str) -> Any:
            """The cluster for the stores workload: the main one for fs, the second one for zstd."""
            if store == "fs":
                return cluster
            if store == "zstd" and zstd is not None:
                return zstd.result()
            raise ValueError(f"no cluster with store {store}")

        ctx = BenchContext(options=o, gateway_url=gateway_url, master_addr=master_addr, deadline=self.deadline,
                           s3_url=s3_url, pids=pids, root=f"/bench-{secrets.token_hex(3)}", profiler=profiler,
                           store_cluster=store_cluster if local else None, results=self.results)
        await self._check_reachable(ctx)
        try:
            code = await self._run_all(ctx)
            if o.peer and code == EXIT_OK:
                code = await self._run_peer(ctx, gateway_url)
        finally:
            if not local:
                await self._cleanup(ctx)
        for name, entry in list(self.results.items()):
            if isinstance(entry, dict) and "skipped" in entry:
                self.skipped[name] = entry.pop("skipped")
                del self.results[name]
        if code != EXIT_OK:
            return code
        if self.errors:
            return EXIT_ERROR
        if any(v.startswith("time limit reached") for v in self.skipped.values()):
            return EXIT_INCOMPLETE
        return EXIT_OK

    async def _run_all(self, ctx: BenchContext) -> int:
        for name in WORKLOADS:
            if name not in self.o.only:
                continue
            if ctx.remaining() < MIN_PHASE_SECONDS:
                self.skipped[name] = "time limit reached"
                self.log(f"skipping {name}: the run's time limit is reached")
                continue
            self.log(f"running {name}")
            try:
                self.results.update(await WORKLOAD_FUNCS[name](ctx))
            except VerificationError as exc:
                self.errors.append({"workload": name, "error": f"verification failed: {exc}"})
                self.log(f"{name}: VERIFICATION FAILED: {exc}")
                return EXIT_MISMATCH  # a wrong answer ends the run: later figures would mean nothing
            except Exception as exc:  # noqa: BLE001 - reported, and the run goes on to the next workload
                self.errors.append({"workload": name, "error": f"{type(exc).__name__}: {exc}"})
                self.log(f"{name} failed: {type(exc).__name__}: {exc}")
        return EXIT_OK

    async def _run_peer(self, ctx: BenchContext, gateway_url: str) -> int:
        """The side-by-side rounds, after the workloads: the peer's processes run only meanwhile."""
        self.log(f"running the comparison with {self.o.peer}, {self.o.peer_rounds} rounds per workload")
        try:
            self.peer = await run_peer(ctx, gateway_url, ctx.pids, self.root_dir / f"peer-{self.o.peer}", self.log)
        except Exception as exc:  # noqa: BLE001 - reported like a workload's failure
            mismatch = isinstance(exc, VerificationError)
            why = f"verification failed: {exc}" if mismatch else f"{type(exc).__name__}: {exc}"
            self.errors.append({"workload": "peer", "error": why})
            self.log(f"peer: {why}")
            return EXIT_MISMATCH if mismatch else EXIT_OK
        self.skipped.update({f"peer {workload}": why for workload, why in self.peer["skipped"].items()})
        return EXIT_OK

    async def _check_reachable(self, ctx: BenchContext) -> None:
        gw = Gateway(ctx.gateway_url, connections=1, timeout=10)
        try:
            health = await gw.health()
        finally:
            await gw.close()
        client = await ctx.client()
        try:
            pong = await client.ping()
        finally:
            await client.close()
        self.cluster_info = {"chunk_size": int(pong.info.get("chunk_size", 0)),
                        "replication": int(pong.info.get("replication", 0)),
                        "chunkservers_alive": health.get("chunkservers_alive")}
        self.log(f"cluster reachable: {self.cluster_info}")

    async def _cleanup(self, ctx: BenchContext) -> None:
        """On someone else's cluster, remove what this run made (soft delete; GC reclaims it)."""
        client = await ctx.client()
        try:
            await client.delete(ctx.root, recursive=True)
        except Exception as exc:  # noqa: BLE001 - cleanup is best effort, and said so
            self.log(f"could not remove {ctx.root}: {exc}")
        finally:
            await client.close()

    # -- output ------------------------------------------------------------------------------

    def print_report(self, doc: dict[str, Any]) -> None:
        m = doc["machine"]
        disk = m.get("disk", {})
        w = self.out.write
        w(f"hercules bench{' --quick' if self.o.quick else ''}: {m.get('nproc')} cores ({m.get('cpu', '?')}), "
          f"{m.get('memory_bytes', 0) / (1 << 30):.1f} GiB memory, data on {disk.get('device', '?')} "
          f"({disk.get('fstype', '?')}, {disk.get('free_bytes', 0) / (1 << 30):.0f} GiB free)\n")
        target = "a local cluster" if self.o.local else f"gateway {self.o.gateway}, master {self.o.master}"
        chunk = self.cluster_info.get("chunk_size") or self.o.chunk_size
        w(f"target: {target}; chunk size {human_size(chunk)}; large file "
          f"{human_size(self.o.large_size)}; {self.o.small_count} x {human_size(self.o.small_size)} files; "
          f"{self.o.medium_count} x {human_size(self.o.medium_size)} files; MB = 10^6 bytes\n")
        sw = doc.get("software", {})
        if sw.get("git_commit"):
            w(f"code: hercules {sw.get('hercules')}, commit {sw['git_commit']}"
              + (f" with {sw['git_modified_files']} locally modified files" if sw.get("git_modified_files") else "")
              + "\n")
        w(_load_line(doc, m.get("nproc") or 1) + "\n\n")
        if doc.get("ceilings"):
            w(ceilings_table(doc["ceilings"]) + "\n\n")
        if doc["rows"]:
            w(results_table(doc["rows"]) + "\n\n")
        if self.peer and self.peer.get("rows"):
            w(peer_table(self.peer) + "\n\n")
        rss = rss_table(self.results)
        if rss:
            w(rss + "\n\n")
        cpu = cpu_table(self.results)
        if cpu:
            w("CPU per process (cores busy: CPU seconds per wall second; 'total' over all processes, "
              f"of {m.get('nproc')} cores)\n" + cpu + "\n\n")
        incomplete = [n for n, e in self.results.items() if isinstance(e, dict) and e.get("complete") is False]
        if incomplete:
            w(f"cut short by the phase time limit ({self.o.phase_limit:.0f}s): {', '.join(incomplete)}\n")
        for name, why in self.skipped.items():
            w(f"skipped {name}: {why}\n")
        for err in self.errors:
            w(f"ERROR in {err['workload']}: {err['error']}\n")
        verdict = {EXIT_OK: "all reads verified", EXIT_MISMATCH: "VERIFICATION FAILED",
                   EXIT_ERROR: "errors", EXIT_INCOMPLETE: "incomplete"}[doc["exit_code"]]
        w(f"{verdict}; {doc['duration_s']} s\n")
        self.out.flush()

    def write_json(self, doc: dict[str, Any]) -> None:
        if not self.o.json_path:
            return
        text = json.dumps(doc, indent=2, default=str)
        if self.o.json_path == "-":
            self.out.write(text + "\n")
        else:
            Path(self.o.json_path).write_text(text + "\n")
            self.log(f"results written to {self.o.json_path}")


def _load_line(doc: dict[str, Any], nproc: int) -> str:
    """Load before and after: the benchmark shares the machine with whatever else runs on it."""
    parts = []
    for key, label in (("load_start", "before"), ("load_end", "after")):
        load = doc.get(key) or {}
        if "loadavg" in load:
            psi = load.get("cpu_pressure", {}).get("avg60")
            parts.append(f"{label}: load average {load['loadavg'][0]:.2f}"
                         + (f", CPU pressure {psi:.0f}% (avg60)" if psi is not None else ""))
    busy = max((doc.get(k) or {}).get("loadavg", [0.0])[0] for k in ("load_start", "load_end"))
    warning = "  WARNING: the machine was busy with other work; figures understate Hercules" \
        if busy > 0.5 * nproc else ""
    return "machine load " + "; ".join(parts) + warning if parts else ""


def run(options: BenchOptions, out: TextIO | None = None) -> int:
    return Run(options, out or sys.stdout).execute()
