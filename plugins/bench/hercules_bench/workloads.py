"""The measured workloads: large files, small files, 1 MiB files, metadata, record append, stores.

Each returns ``{result_name: {...}}``; every result carries ``verified`` (reads compared byte for
byte with what was written, metadata answers checked) and raises ``VerificationError`` on any
mismatch. Loops are bounded in count by the options and in time by the phase deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import crc32c

from hercules_bench.datagen import json_lines, random_bytes
from hercules_bench.http import Gateway
from hercules_bench.options import BenchOptions, MiB
from hercules_bench.stats import CpuMeter, VerificationError, latency_summary, mbps, reset_peak_rss, status_kib
from hercules_core.client import connect
from hercules_core.client.client import Client

GRACE = 60.0  # a phase's operations in flight may finish this long after its deadline


@attrs.define
class BenchContext:
    options: BenchOptions
    gateway_url: str
    master_addr: str
    deadline: float  # time.monotonic() by which the whole run must end
    s3_url: str | None = None  # the gateway's S3 port; None: the s3 workload is skipped with a note
    pids: dict[str, int] = attrs.field(factory=dict)  # role name -> pid (local clusters only)
    root: str = "/bench"  # every path this run makes lives under here
    profiler: Any = None
    store_cluster: Callable[[str], Awaitable[Any]] | None = None  # store name -> running LocalCluster (local only)
    results: dict[str, Any] = attrs.field(factory=dict)  # filled as results come in: a failure keeps the rest

    def phase_deadline(self) -> float:
        return min(self.deadline, time.monotonic() + self.options.phase_limit)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    async def client(self) -> Client:
        return await connect(self.master_addr, self.options.transport)

    async def clients(self, count: int) -> list[Client]:
        return list(await asyncio.gather(*(self.client() for _ in range(count))))

    @contextmanager
    def measure(self, name: str, pids: dict[str, int] | None = None) -> Iterator[CpuMeter]:
        """CPU per process over the block, and the profiler's view of it when profiling."""
        meter = CpuMeter(self.pids if pids is None else pids)
        if self.profiler is not None:
            with self.profiler.phase(name, meter.pids), meter:
                yield meter
        else:
            with meter:
                yield meter


async def close_all(clients: list[Client]) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def bounded(coro: Awaitable[Any], deadline: float, what: str) -> Any:
    """Await ``coro`` but never past ``deadline`` + GRACE (a hang is an error, not a stall)."""
    try:
        return await asyncio.wait_for(coro, max(1.0, deadline - time.monotonic()) + GRACE)
    except TimeoutError:
        raise TimeoutError(f"{what}: still running {GRACE:.0f}s past its phase deadline") from None


async def run_concurrent(count: int, concurrency: int, deadline: float,
                         op: Callable[[int, int], Awaitable[None]], what: str) -> tuple[list[float], float, list[int]]:
    """``op(worker, i)`` for i in range(count) by ``concurrency`` workers until done or ``deadline``.

    Returns the per-operation latencies, the wall time and the indexes completed.
    """
    items = iter(range(count))
    latencies: list[float] = []
    done: list[int] = []

    async def worker(w: int) -> None:
        for i in items:  # one shared iterator: each index is taken by exactly one worker
            if time.monotonic() >= deadline:
                return
            t0 = time.perf_counter()
            await op(w, i)
            latencies.append(time.perf_counter() - t0)
            done.append(i)

    started = time.perf_counter()
    await bounded(asyncio.gather(*(worker(w) for w in range(concurrency))), deadline, what)
    return latencies, time.perf_counter() - started, done


def payloads(count: int, size: int, seed: int) -> list[bytes]:
    """``count`` distinct files of ``size`` bytes: a header naming each, then bytes from a random pool."""
    pool = random_bytes(max(4 * size, 8 * MiB), seed)
    out = []
    for i in range(count):
        head = f"hercules-bench file {i} of {count}\n".encode()
        start = (i * 7919 * 64) % (len(pool) - size)
        out.append((head + pool[start:start + size])[:size])
    return out


# -- (a) large files ------------------------------------------------------------------------


async def large_files(ctx: BenchContext) -> dict[str, Any]:
    o = ctx.options
    data = random_bytes(o.large_size, o.seed)
    crc = crc32c.crc32c(data)
    results = ctx.results
    gateway_pid = ctx.pids.get("gateway")
    gw = Gateway(ctx.gateway_url, connections=2, timeout=max(60.0, o.phase_limit + GRACE))
    client = await ctx.client()
    try:
        for via in ("gateway", "client"):
            for rf in (3, 1):
                name = f"large_{via}_rf{rf}"
                path = f"{ctx.root}/large/{via}-rf{rf}.bin"
                entry: dict[str, Any] = {"via": via, "replication": rf, "bytes": len(data), "cpu": {}}
                rss: dict[str, Any] = {}
                if via == "gateway" and gateway_pid:
                    rss["baseline_kib"] = status_kib(gateway_pid, "VmRSS")
                    rss["reset"] = reset_peak_rss(gateway_pid)
                deadline = ctx.phase_deadline()
                with ctx.measure(f"{name}_write") as cpu:
                    t0 = time.perf_counter()
                    if via == "gateway":
                        info = await bounded(gw.put(path, data, replication=rf, stream=True), deadline, name)
                        size, replication = info["size"], info["replication"]
                    else:
                        finfo = await bounded(client.upload(path, data, replication=rf), deadline, name)
                        size, replication = finfo.size, finfo.replication
                    seconds = time.perf_counter() - t0
                if size != len(data) or replication != rf:
                    raise VerificationError(f"{name}: stored {size} bytes at rf={replication}, "
                                            f"expected {len(data)} at rf={rf}")
                entry["write"] = {"seconds": round(seconds, 3), "MBps": mbps(len(data), seconds)}
                entry["cpu"]["write"] = cpu.result
                if via == "gateway" and gateway_pid:
                    rss["write_peak_kib"] = status_kib(gateway_pid, "VmHWM")
                    reset_peak_rss(gateway_pid)
                deadline = ctx.phase_deadline()
                with ctx.measure(f"{name}_read") as cpu:
                    t0 = time.perf_counter()
                    if via == "gateway":
                        got = await bounded(gw.get_verify(path, len(data), crc), deadline, name)
                    else:
                        got = await bounded(_client_read_verify(client, path, len(data), crc), deadline, name)
                    seconds = time.perf_counter() - t0
                entry["read"] = {"seconds": round(seconds, 3), "MBps": mbps(got, seconds)}
                entry["cpu"]["read"] = cpu.result
                if via == "gateway" and gateway_pid:
                    rss["read_peak_kib"] = status_kib(gateway_pid, "VmHWM")
                    entry["gateway_rss"] = rss
                entry["verified"] = True
                results[name] = entry
                await client.delete(path)  # soft delete keeps the namespace small; GC reclaims later
    finally:
        await gw.close()
        await client.close()
    return results


async def _client_read_verify(client: Client, path: str, size: int, crc: int) -> int:
    """Stream a file through the client library; its length and CRC32C must match what was written."""
    got, value = 0, 0
    async for piece in client.download(path):
        value = crc32c.crc32c(piece, value)
        got += len(piece)
    if got != size or value != crc:
        raise VerificationError(f"read {path}: got {got} bytes with CRC32C {value:08x}; "
                                f"wrote {size} bytes with CRC32C {crc:08x}")
    return got


def check_content(what: str, got: bytes, size: int, crc: int) -> None:
    if len(got) != size or crc32c.crc32c(got) != crc:
        raise VerificationError(f"{what}: content differs from what was written "
                                f"({len(got)} bytes read, {size} written)")


# -- (b), (c) many files ----------------------------------------------------------------------


async def many_files(ctx: BenchContext, label: str, count: int, size: int, concurrency: int) -> dict[str, Any]:
    """``count`` files of ``size`` bytes written then read by ``concurrency`` clients, both ways."""
    files = payloads(count, size, ctx.options.seed + size)
    crcs = [crc32c.crc32c(f) for f in files]
    results = ctx.results
    timeout = max(60.0, ctx.options.phase_limit + GRACE)

    # through the gateway: one PUT (create + write + publish) and one GET per file
    gw = Gateway(ctx.gateway_url, connections=concurrency, timeout=timeout)
    base = f"{ctx.root}/{label}/gateway"
    try:
        async def put(w: int, i: int) -> None:
            await gw.put(f"{base}/{i:06d}", files[i])

        async def get(w: int, i: int) -> None:
            check_content(f"GET {base}/{i:06d}", await gw.get(f"{base}/{i:06d}"), size, crcs[i])

        results[f"{label}_gateway"] = await _write_read(ctx, f"{label}_gateway", "gateway", files, count,
                                                        concurrency, put, get)
    finally:
        await gw.close()

    # through the client library: create + write, then read; one client per worker
    clients = await ctx.clients(concurrency)
    base = f"{ctx.root}/{label}/client"
    try:
        await clients[0].mkdir(base)

        async def create_write(w: int, i: int) -> None:
            path = f"{base}/{i:06d}"
            await clients[w].create(path)
            await clients[w].write(path, 0, files[i])

        async def read(w: int, i: int) -> None:
            check_content(f"read {base}/{i:06d}", await clients[w].read(f"{base}/{i:06d}"), size, crcs[i])

        results[f"{label}_client"] = await _write_read(ctx, f"{label}_client", "client", files, count,
                                                       concurrency, create_write, read)
    finally:
        await close_all(clients)
    return results


async def _write_read(ctx: BenchContext, name: str, via: str, files: list[bytes], count: int, concurrency: int,
                      write: Callable[[int, int], Awaitable[None]],
                      read: Callable[[int, int], Awaitable[None]]) -> dict[str, Any]:
    size = len(files[0])
    with ctx.measure(f"{name}_write") as wcpu:
        wlat, wsec, written = await run_concurrent(count, concurrency, ctx.phase_deadline(), write, f"{name} write")
    if not written:
        raise TimeoutError(f"{name}: no file was written before the phase deadline")
    order = sorted(written)
    with ctx.measure(f"{name}_read") as rcpu:
        rlat, rsec, read_done = await run_concurrent(
            len(order), concurrency, ctx.phase_deadline(), lambda w, k: read(w, order[k]), f"{name} read")
    entry: dict[str, Any] = {
        "via": via, "files": len(written), "file_size": size, "concurrency": concurrency,
        "write": {**latency_summary(wlat, wsec), "MBps": mbps(len(written) * size, wsec)},
        "read": {**latency_summary(rlat, rsec), "MBps": mbps(len(read_done) * size, rsec)},
        "complete": len(written) == count and len(read_done) == len(written),
        "verified": bool(read_done), "cpu": {"write": wcpu.result, "read": rcpu.result}}
    return entry


async def small_files(ctx: BenchContext) -> dict[str, Any]:
    o = ctx.options
    return await many_files(ctx, "small", o.small_count, o.small_size, o.small_concurrency)


async def medium_files(ctx: BenchContext) -> dict[str, Any]:
    o = ctx.options
    return await many_files(ctx, "medium", o.medium_count, o.medium_size, o.medium_concurrency)


# -- (b') objects through S3 ------------------------------------------------------------------


async def s3_objects(ctx: BenchContext) -> dict[str, Any]:
    """The large file and the small files again, as objects through the S3 port (default rf)."""
    from hercules_bench.s3 import S3Bucket, Signer, s3_available

    if ctx.s3_url is None:
        why = "the s3 plugin (hercules-s3) is not installed" if not s3_available() else \
            "no S3 endpoint: give --s3 URL with --gateway/--master"
        return {"s3": {"skipped": why}}
    o = ctx.options
    results = ctx.results
    bucket, signer = ctx.root.strip("/"), Signer.from_env()
    timeout = max(60.0, o.phase_limit + GRACE)
    data = random_bytes(o.large_size, o.seed)
    crc = crc32c.crc32c(data)
    client = await ctx.client()
    s3 = S3Bucket(ctx.s3_url, bucket, connections=max(2, o.small_concurrency), timeout=timeout, signer=signer)
    try:
        await s3.create()
        key = "s3/large.bin"
        entry: dict[str, Any] = {"via": "s3", "signed": signer is not None, "bytes": len(data), "cpu": {}}
        with ctx.measure("s3_large_write") as cpu:
            t0 = time.perf_counter()
            await bounded(s3.put(key, data, stream=True), ctx.phase_deadline(), "s3_large")
            seconds = time.perf_counter() - t0
        info = await client.stat(f"/{bucket}/{key}")
        if info.size != len(data):
            raise VerificationError(f"s3_large: stored {info.size} bytes, sent {len(data)}")
        entry.update(replication=info.replication, write={"seconds": round(seconds, 3),
                                                          "MBps": mbps(len(data), seconds)})
        entry["cpu"]["write"] = cpu.result
        with ctx.measure("s3_large_read") as cpu:
            t0 = time.perf_counter()
            got = await bounded(s3.get_verify(key, len(data), crc), ctx.phase_deadline(), "s3_large")
            seconds = time.perf_counter() - t0
        entry["read"] = {"seconds": round(seconds, 3), "MBps": mbps(got, seconds)}
        entry["cpu"]["read"] = cpu.result
        entry["verified"] = True
        results["s3_large"] = entry
        await client.delete(f"/{bucket}/{key}")

        count, size = o.small_count, o.small_size
        files = payloads(count, size, o.seed + size)
        crcs = [crc32c.crc32c(f) for f in files]

        async def put(w: int, i: int) -> None:
            await s3.put(f"s3/small/{i:06d}", files[i])

        async def get(w: int, i: int) -> None:
            check_content(f"GetObject s3/small/{i:06d}", await s3.get(f"s3/small/{i:06d}"), size, crcs[i])

        small = await _write_read(ctx, "s3_small", "s3", files, count, o.small_concurrency, put, get)
        results["s3_small"] = {**small, "signed": signer is not None}
    finally:
        await s3.close()
        await client.close()
    return results


# -- (d) metadata ----------------------------------------------------------------------------


async def metadata(ctx: BenchContext) -> dict[str, Any]:
    o = ctx.options
    n, k = o.meta_count, o.meta_clients
    clients = await ctx.clients(k)
    base = f"{ctx.root}/meta"
    entry: dict[str, Any] = {"clients": k, "cpu": {}}
    try:
        await asyncio.gather(*(clients[0].mkdir(f"{base}/f{w}") for w in range(k)))
        created: list[tuple[int, int]] = []  # (worker dir, i)

        def file_path(w: int, i: int) -> str:
            return f"{base}/f{i % k}/{i:06d}"

        async def do_mkdir(w: int, i: int) -> None:
            info = await clients[w].mkdir(f"{base}/d/{i % k}/{i:06d}")
            if not info.is_dir:
                raise VerificationError(f"mkdir {base}/d/{i % k}/{i:06d} did not make a directory")

        async def do_create(w: int, i: int) -> None:
            info = await clients[w].create(file_path(w, i))
            if info.is_dir or info.size != 0:
                raise VerificationError(f"create {file_path(w, i)}: unexpected {info}")
            created.append((i % k, i))

        async def do_stat(w: int, j: int) -> None:
            _, i = created[j]
            info = await clients[w].stat(file_path(w, i))
            if info.path != file_path(w, i) or info.is_dir:
                raise VerificationError(f"stat {file_path(w, i)} answered {info.path} (is_dir={info.is_dir})")

        per_dir: dict[int, int] = {}
        entries_seen: list[int] = []

        async def do_list(w: int, j: int) -> None:
            d = j % k
            listing = await clients[w].list(f"{base}/f{d}")
            if len(listing.entries) != per_dir.get(d, 0):
                raise VerificationError(f"list {base}/f{d}: {len(listing.entries)} entries, "
                                        f"expected {per_dir.get(d, 0)}")
            entries_seen.append(len(listing.entries))

        renamed: list[int] = []

        async def do_rename(w: int, j: int) -> None:
            d, i = created[j]
            await clients[w].rename(f"{base}/f{d}/{i:06d}", f"{base}/f{d}/r{i:06d}")
            renamed.append(j)

        await clients[0].mkdir(f"{base}/d")
        await asyncio.gather(*(clients[0].mkdir(f"{base}/d/{w}") for w in range(k)))
        for op_name, fn, count in [("mkdir", do_mkdir, n), ("create", do_create, n)]:
            with ctx.measure(f"metadata_{op_name}") as cpu:
                lat, sec, _ = await run_concurrent(count, k, ctx.phase_deadline(), fn, f"metadata {op_name}")
            entry[op_name] = latency_summary(lat, sec)
            entry["cpu"][op_name] = cpu.result
        for _, i in created:
            per_dir[i % k] = per_dir.get(i % k, 0) + 1
        for op_name, fn, count in [("stat", do_stat, len(created)), ("list", do_list, min(n, len(created))),
                                   ("rename", do_rename, len(created))]:
            with ctx.measure(f"metadata_{op_name}") as cpu:
                lat, sec, _ = await run_concurrent(count, k, ctx.phase_deadline(), fn, f"metadata {op_name}")
            entry[op_name] = latency_summary(lat, sec)
            entry["cpu"][op_name] = cpu.result
        entry["list"]["entries_per_list"] = round(sum(entries_seen) / len(entries_seen), 1) if entries_seen else 0
        # the renames really happened: every renamed file is listed under its new name
        names: set[str] = set()
        for d in range(k):
            names.update(e.path for e in (await clients[0].list(f"{base}/f{d}")).entries)
        missing = [j for j in renamed if f"{base}/f{created[j][0]}/r{created[j][1]:06d}" not in names]
        if missing:
            raise VerificationError(f"metadata: {len(missing)} renamed files are not listed under their new name")
        wanted = {"mkdir": n, "create": n, "stat": len(created), "list": min(n, len(created)),
                  "rename": len(created)}
        entry["complete"] = all(entry[op]["ops"] == count for op, count in wanted.items())
        entry["verified"] = True
    finally:
        await close_all(clients)
    return {"metadata": entry}


# -- (e) record append -------------------------------------------------------------------------


async def record_append(ctx: BenchContext) -> dict[str, Any]:
    o = ctx.options
    clients = await ctx.clients(o.appenders)
    path = f"{ctx.root}/append/log"
    pool = random_bytes(max(8 * MiB, 4 * o.append_size), o.seed + 7)
    offsets: dict[int, int] = {}

    def record(i: int) -> bytes:
        head = f"record {i:08d} ".encode()
        start = (i * 4099) % (len(pool) - o.append_size)
        return (head + pool[start:start + o.append_size])[:o.append_size]

    try:
        await clients[0].mkdir(f"{ctx.root}/append")
        await clients[0].create(path)

        async def append(w: int, i: int) -> None:
            offsets[i] = await clients[w].append(path, record(i))

        with ctx.measure("append") as cpu:
            lat, sec, done = await run_concurrent(o.append_count, o.appenders, ctx.phase_deadline(), append,
                                                  "record append")
        data = await bounded(clients[0].read(path), ctx.phase_deadline(), "append read-back")
        bad = [i for i in done if data[offsets[i]:offsets[i] + o.append_size] != record(i)]
        if bad:
            raise VerificationError(f"append: {len(bad)} of {len(done)} records are not at their returned offset")
        if len(set(offsets.values())) != len(offsets):
            raise VerificationError("append: two records were given the same offset")
        summary = latency_summary(lat, sec)
        return {"append": {"appenders": o.appenders, "record_size": o.append_size,
                           "records": summary["ops"], "records_per_s": summary["ops_per_s"],
                           "MBps": mbps(len(done) * o.append_size, sec), "p50_ms": summary["p50_ms"],
                           "p99_ms": summary["p99_ms"], "max_ms": summary["max_ms"], "seconds": summary["seconds"],
                           "file_bytes": len(data), "complete": len(done) == o.append_count,
                           "verified": True, "cpu": cpu.result}}
    finally:
        await close_all(clients)


# -- (f) chunk stores ----------------------------------------------------------------------------


def disk_bytes(chunk_dirs: list[Path], handles: list[int]) -> tuple[int, int]:
    """(data-file bytes, sidecar bytes) allocated on disk (st_blocks) for ``handles`` on all servers."""
    data = meta = 0
    for handle in handles:
        stem = f"{handle:016x}"
        for root in chunk_dirs:
            for path in root.rglob(f"{handle & 0xFF:02x}/{stem}*"):
                if path.name.endswith(".tmp"):
                    continue
                allocated = path.stat().st_blocks * 512
                if path.suffix == ".meta":
                    meta += allocated
                else:
                    data += allocated
    return data, meta


async def stores(ctx: BenchContext) -> dict[str, Any]:
    if ctx.store_cluster is None:
        return {"stores": {"skipped": "needs local clusters (not with --gateway/--master)"}}
    o = ctx.options
    kinds = {"json": json_lines(o.store_size, o.seed + 11), "random": random_bytes(o.store_size, o.seed + 13)}
    crcs = {kind: crc32c.crc32c(data) for kind, data in kinds.items()}
    results = ctx.results
    for store in ("fs", "zstd"):
        cluster = await ctx.store_cluster(store)
        try:
            pids = {name: p.proc.pid for name, p in cluster.procs.items() if p.proc is not None}
            client = await connect(cluster.master_addr, o.transport)
            try:
                for kind, data in kinds.items():
                    name = f"store_{store}_{kind}"
                    path = f"{ctx.root}/stores/{kind}.bin"
                    with ctx.measure(f"{name}_write", pids) as wcpu:
                        t0 = time.perf_counter()
                        info = await bounded(client.upload(path, data), ctx.phase_deadline(), name)
                        wsec = time.perf_counter() - t0
                    with ctx.measure(f"{name}_read", pids) as rcpu:
                        t0 = time.perf_counter()
                        got = await bounded(_client_read_verify(client, path, len(data), crcs[kind]),
                                            ctx.phase_deadline(), name)
                        rsec = time.perf_counter() - t0
                    handles = [(await client.chunk_handle(path, i)).handle for i in range(info.chunk_count)]
                    on_disk, sidecars = disk_bytes([cluster.chunk_dir(i) for i in range(cluster.chunkservers)],
                                                   handles)
                    logical = len(data) * info.replication
                    results[name] = {"store": store, "data": kind, "bytes": len(data),
                                     "replication": info.replication,
                                     "write": {"seconds": round(wsec, 3), "MBps": mbps(len(data), wsec)},
                                     "read": {"seconds": round(rsec, 3), "MBps": mbps(got, rsec)},
                                     "disk_bytes": on_disk, "sidecar_bytes": sidecars,
                                     "disk_ratio": round(on_disk / logical, 3) if logical else 0.0,
                                     "verified": True, "cpu": {"write": wcpu.result, "read": rcpu.result}}
            finally:
                await client.close()
        finally:
            if store != "fs":  # the fs cluster is the main one: the runner stops it at the end
                await asyncio.to_thread(cluster.stop)
    return results


WORKLOAD_FUNCS: dict[str, Callable[[BenchContext], Awaitable[dict[str, Any]]]] = {
    "large": large_files, "small": small_files, "s3": s3_objects, "medium": medium_files, "metadata": metadata,
    "append": record_append, "stores": stores,
}
