"""The machine's ceilings: what the disk and loopback TCP can do with no Hercules in the way.

* ``disk_stream``: sequential writes of ``piece`` bytes each followed by ``fdatasync`` (what a
  chunk store does per 4 MiB mutation), on the file system holding the data directory.
* ``disk_sync_ops``: 4 KiB write + ``fdatasync`` round trips per second (the cost floor of
  a small durable write).
* ``loopback``: bytes between two processes over 127.0.0.1, in 1 MiB frames, plain blocking
  sockets (``socket``) and asyncio streams on uvloop as Hercules uses them (``asyncio``).
* ``round_trips``: small request/response pairs per second between two processes over
  loopback, 8 connections each with one request outstanding (asyncio on uvloop): the floor of
  any one-RPC operation such as a metadata call.
* ``thread_hop``: CPU per ``run_in_executor`` round trip of a function that does nothing, the
  hop a chunk store makes once per mutation to keep ``fdatasync`` off the event loop.
* ``page_cache_write``: CPU per MiB written into the page cache (``pwrite``, no sync) of a
  growing file: what every replica pays per byte before the disk is involved.

Every loop is bounded in bytes and in time.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hercules_core.cli import run_async
from hercules_bench.options import MB, MiB
from hercules_bench.stats import mbps

FRAME = 1 * MiB
SOCKET_TIMEOUT = 30.0


def _mp_context() -> Any:
    """fork where there is one: ceilings run before any thread or event loop exists, and a fork
    needs no re-import of ``__main__`` (spawn would, and fails for unguarded scripts)."""
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


@contextmanager
def _scratch(directory: Path, name: str) -> Iterator[int]:
    """A new file in ``directory`` open for writing, removed afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"bench-{name}-{os.getpid()}.tmp"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        yield fd
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def disk_stream(directory: Path, total: int, piece: int, time_limit: float) -> dict[str, Any]:
    """MB/s of ``piece``-sized writes, each made durable with fdatasync, up to ``total`` bytes."""
    buf = os.urandom(min(piece, 4 * MiB))
    block = (buf * (piece // len(buf) + 1))[:piece]
    written = 0
    with _scratch(directory, "disk") as fd:
        started = time.perf_counter()
        deadline = started + time_limit
        while written < total and time.perf_counter() < deadline:
            view = memoryview(block)[:min(piece, total - written)]
            while view:
                n = os.write(fd, view)
                view = view[n:]
                written += n
            os.fdatasync(fd)
        seconds = time.perf_counter() - started
    return {"bytes": written, "piece": piece, "seconds": round(seconds, 3), "MBps": mbps(written, seconds),
            "complete": written >= total}


def disk_sync_ops(directory: Path, count: int, time_limit: float, size: int = 4096) -> dict[str, Any]:
    """Round trips per second of an in-place ``size``-byte pwrite followed by fdatasync."""
    data = os.urandom(size)
    done = 0
    with _scratch(directory, "sync") as fd:
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        started = time.perf_counter()
        deadline = started + time_limit
        while done < count and time.perf_counter() < deadline:
            os.pwrite(fd, data, (done % 16) * size)
            os.fdatasync(fd)
            done += 1
        seconds = time.perf_counter() - started
    return {"ops": done, "seconds": round(seconds, 3), "ops_per_s": round(done / seconds, 1) if seconds else 0.0,
            "latency_ms": round(seconds / done * 1e3, 3) if done else 0.0}


# -- loopback TCP ------------------------------------------------------------------------


def _receive_plain(port_q: Any, result_q: Any, total: int) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(SOCKET_TIMEOUT)
        port_q.put(server.getsockname()[1])
        conn, _ = server.accept()
        with conn:
            conn.settimeout(SOCKET_TIMEOUT)
            buf = bytearray(FRAME)
            view = memoryview(buf)
            got = 0
            started = 0.0
            while got < total:
                n = conn.recv_into(view)
                if not n:
                    break
                if not got:
                    started = time.perf_counter()
                got += n
            seconds = time.perf_counter() - started
            conn.sendall(b"k")
    result_q.put((got, seconds))


def _send_plain(port: int, total: int) -> None:
    frame = os.urandom(FRAME)
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
        sent = 0
        while sent < total:
            piece = frame if total - sent >= FRAME else frame[:total - sent]
            sock.sendall(piece)
            sent += len(piece)
        sock.recv(1)


def _receive_asyncio(port_q: Any, result_q: Any, total: int) -> None:
    import asyncio

    async def main() -> tuple[int, float]:
        done: asyncio.Future[tuple[int, float]] = asyncio.get_running_loop().create_future()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            got, started = 0, 0.0
            try:
                while got < total:
                    piece = await reader.readexactly(min(FRAME, total - got))  # one frame, as rpc reads it
                    if not got:
                        started = time.perf_counter()
                    got += len(piece)
                seconds = time.perf_counter() - started
                writer.write(b"k")
                await writer.drain()
                done.set_result((got, seconds))
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                done.set_exception(exc)
            finally:
                writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0, limit=8 * MiB)
        port_q.put(server.sockets[0].getsockname()[1])
        try:
            return await asyncio.wait_for(done, SOCKET_TIMEOUT * 4)
        finally:
            server.close()

    result_q.put(run_async(main()))


def _send_asyncio(port: int, total: int) -> None:
    import asyncio

    async def main() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=8 * MiB)
        frame = os.urandom(FRAME)
        sent = 0
        while sent < total:
            piece = frame if total - sent >= FRAME else frame[:total - sent]
            writer.write(piece)
            await writer.drain()
            sent += len(piece)
        await asyncio.wait_for(reader.readexactly(1), SOCKET_TIMEOUT)
        writer.close()

    run_async(main())




def loopback(total: int, kind: str = "socket", timeout: float = 120.0) -> dict[str, Any]:
    """MB/s from a sender process to a receiver process over 127.0.0.1 (``socket`` or ``asyncio``)."""
    receive, send = (_receive_plain, _send_plain) if kind == "socket" else (_receive_asyncio, _send_asyncio)
    ctx = _mp_context()
    port_q, result_q = ctx.Queue(), ctx.Queue()
    receiver = ctx.Process(target=receive, args=(port_q, result_q, total), daemon=True)
    receiver.start()
    sender = None
    try:
        port = port_q.get(timeout=SOCKET_TIMEOUT)
        sender = ctx.Process(target=send, args=(port, total), daemon=True)
        sender.start()
        got, seconds = result_q.get(timeout=timeout)
    finally:
        for proc in (sender, receiver):
            if proc is not None:
                proc.join(5)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(5)
    return {"bytes": got, "frame": FRAME, "seconds": round(seconds, 3), "MBps": mbps(got, seconds),
            "complete": got >= total, "MB": round(got / MB, 1)}


# -- small round trips ---------------------------------------------------------------------

RTT_MESSAGE = 64


def _echo_server(port_q: Any, stop_after: float) -> None:
    import asyncio

    async def main() -> None:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    writer.write(await reader.readexactly(RTT_MESSAGE))
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port_q.put(server.sockets[0].getsockname()[1])
        await asyncio.sleep(stop_after)  # bounded: the server ends on its own
        server.close()

    run_async(main())


def _rtt_client(port: int, connections: int, count: int, time_limit: float, result_q: Any) -> None:
    import asyncio

    async def main() -> tuple[int, float]:
        done = 0
        deadline = time.monotonic() + time_limit
        message = b"x" * RTT_MESSAGE

        async def one() -> None:
            nonlocal done
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                while done < count and time.monotonic() < deadline:
                    writer.write(message)
                    await reader.readexactly(RTT_MESSAGE)
                    done += 1
            finally:
                writer.close()

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(connections)))
        return done, time.perf_counter() - started

    result_q.put(run_async(main()))


def round_trips(count: int, time_limit: float, connections: int = 8) -> dict[str, Any]:
    """Request/response pairs per second between two processes (``connections`` in parallel)."""
    ctx = _mp_context()
    port_q, result_q = ctx.Queue(), ctx.Queue()
    server = ctx.Process(target=_echo_server, args=(port_q, time_limit + 30), daemon=True)
    server.start()
    client = None
    try:
        port = port_q.get(timeout=SOCKET_TIMEOUT)
        client = ctx.Process(target=_rtt_client, args=(port, connections, count, time_limit, result_q), daemon=True)
        client.start()
        done, seconds = result_q.get(timeout=time_limit + 30)
    finally:
        for proc in (client, server):
            if proc is not None:
                proc.join(1 if proc is server else 5)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(5)
    return {"round_trips": done, "connections": connections, "seconds": round(seconds, 3),
            "per_s": round(done / seconds, 1) if seconds else 0.0,
            "latency_us": round(seconds * connections / done * 1e6, 1) if done else 0.0}


# -- per-operation floors ------------------------------------------------------------------


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def thread_hop(count: int, time_limit: float) -> dict[str, Any]:
    """Round trips to the default executor and back per second, and CPU (both threads) per hop."""

    async def main() -> tuple[int, float, float]:
        loop = asyncio.get_running_loop()
        done, deadline = 0, time.monotonic() + time_limit
        cpu, started = _cpu(), time.perf_counter()
        while done < count and time.monotonic() < deadline:
            await loop.run_in_executor(None, int)
            done += 1
        return done, time.perf_counter() - started, _cpu() - cpu

    done, seconds, cpu = run_async(main())
    return {"hops": done, "seconds": round(seconds, 3), "per_s": round(done / seconds, 1) if seconds else 0.0,
            "cpu_us": round(cpu / done * 1e6, 1) if done else 0.0}


def page_cache_write(directory: Path, total: int, time_limit: float) -> dict[str, Any]:
    """MB/s of 1 MiB ``pwrite``s extending a file (no sync), and their CPU per MiB."""
    block = os.urandom(FRAME)
    written = 0
    with _scratch(directory, "pagecache") as fd:
        deadline = time.monotonic() + time_limit
        cpu, started = _cpu(), time.perf_counter()
        while written < total and time.monotonic() < deadline:
            written += os.pwrite(fd, block, written)
        seconds, cpu = time.perf_counter() - started, _cpu() - cpu
    return {"bytes": written, "seconds": round(seconds, 3), "MBps": mbps(written, seconds),
            "cpu_ms_per_MiB": round(cpu / (written / MiB) * 1e3, 2) if written else 0.0}
