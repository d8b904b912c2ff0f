"""The floor side of ``--peer seaweedfs``: the cheapest HTTP server Python can be, files in memory.

The bench's client (aiohttp ``Gateway``) spends CPU of its own on every request, and on a small
machine it can fill its core before any server does. This server answers the gateway's requests
doing as little as a server can: uvloop, httptools (the C parser uvicorn uses), one
``asyncio.Protocol`` per connection, a file kept as the pieces the parser handed over and sent
back as those pieces (``writelines``: no join, no copy). What the client reaches against it is
the most any server could reach with that client on that machine, measured in the same run.
No durability, no replication, no limits: a floor, not a store.

It speaks the paths of Hercules's REST gateway: ``PUT /api/v1/files/<path>[?query]`` (201,
``{"size": n}``), ``GET`` of it (200, or 404 naming the path), ``DELETE`` of it (the bench
drops each round's files: rounds must not pile up in memory; ``?recursive=true`` drops
everything under the path) and ``GET /health``; any other method is 405. Requests may be
pipelined on a keep-alive connection, and a body may come in any number of packets.

It runs in a process of its own (``python -m hercules_bench.peer_floor --port-file F``), as the
real servers do, so its CPU is measured apart from the client's. ``FloorServer`` starts it,
reads the port it bound (127.0.0.1, a free one) from ``F``, and stops it by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote_to_bytes

import httptools

FILES = b"/api/v1/files/"
HEALTH = b"/health"
JSON = b"application/json"
HIGH_WATER = 4 << 20  # reading stops while this much is waiting to be sent (pipelined GETs)
PARENT_CHECK_SECONDS = 1.0
STOP_SECONDS = 5.0  # after SIGTERM, then SIGKILL

Files = dict[bytes, list[bytes]]  # the path as the client sent it (still quoted) -> the body's pieces


class FloorProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection: httptools calls back per request; each is answered as it completes.

    Answers go out in request order because the parser completes requests in order and each is
    answered at once. Only the URL and the body are taken from the parser (no ``on_header``:
    each header would cost a Python call).
    """

    def __init__(self, files: Files) -> None:
        self.files = files
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.size = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one, without subclassing it
        self.transport.set_write_buffer_limits(high=HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._answer(b"400 Bad Request", [f"bad request: {exc}\n".encode()], b"text/plain", close=True)

    # A full write buffer stops reading (no more pipelined requests are taken) until it drains.
    def pause_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url, self.body, self.size = b"", [], 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.size += len(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        url = httptools.parse_url(self.url)
        path = url.path
        if path.startswith(FILES):
            self._file(method, path[len(FILES):], url.query or b"")
        elif path == HEALTH and method == b"GET":
            self._answer(b"200 OK", [b"{}"])
        elif path == HEALTH:
            self._not_allowed()
        else:
            self._answer(b"404 Not Found", [b"no such route: " + path + b"\n"], b"text/plain")

    # -- answers ----------------------------------------------------------------------------

    def _file(self, method: bytes, key: bytes, query: bytes) -> None:
        if method == b"PUT":
            self.files[key] = self.body
            self._answer(b"201 Created", [b'{"size": %d}' % self.size])
        elif method == b"GET":
            pieces = self.files.get(key)
            if pieces is None:
                self._missing(key)
            else:
                self._answer(b"200 OK", pieces, b"application/octet-stream", size=sum(map(len, pieces)))
        elif method == b"DELETE":
            found = self.files.pop(key, None) is not None
            if b"recursive=true" in query:
                under = [k for k in self.files if k.startswith(key.rstrip(b"/") + b"/")]
                for k in under:
                    del self.files[k]
                found = found or bool(under)
            if found:
                self._answer(b"200 OK", [b"{}"])
            else:
                self._missing(key)
        else:
            self._not_allowed()

    def _missing(self, key: bytes) -> None:
        name = b"/" + unquote_to_bytes(key)
        self._answer(b"404 Not Found", [b'{"error": "no such file: %s"}' % name.replace(b'"', b'\\"')])

    def _not_allowed(self) -> None:
        self._answer(b"405 Method Not Allowed", [b"method not allowed\n"], b"text/plain")

    def _answer(self, status: bytes, body: list[bytes], ctype: bytes = JSON, size: int | None = None,
                close: bool = False) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        keep = not close and self.parser.should_keep_alive()
        head = b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n" % (
            status, ctype, sum(map(len, body)) if size is None else size, b"" if keep else b"Connection: close\r\n")
        transport.writelines([head, *body])
        if not keep:
            transport.close()


# -- the server's process -----------------------------------------------------------------------


async def serve(port_file: Path, parent: int | None = None) -> None:
    """Listen on 127.0.0.1 (a free port, written to ``port_file``) until SIGTERM or the parent exits."""
    loop = asyncio.get_running_loop()
    files: Files = {}
    server = await loop.create_server(lambda: FloorProtocol(files), "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    partial = port_file.with_name(port_file.name + ".partial")
    partial.write_text(str(port))
    partial.replace(port_file)  # whole or absent: the reader never sees half a number
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    while not stop.is_set():  # a parent killed outright leaves no server behind
        if parent is not None and os.getppid() != parent:
            break
        try:
            await asyncio.wait_for(stop.wait(), PARENT_CHECK_SECONDS)
        except TimeoutError:
            pass
    server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hercules_bench.peer_floor",
                                     description="the in-memory floor server of hercules bench --peer")
    parser.add_argument("--port-file", type=Path, required=True, help="where to write the port it listens on")
    parser.add_argument("--parent", type=int, help="exit when this process is no longer the parent")
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(serve(args.port_file, args.parent))


class FloorServer:
    """The floor's process, started under ``root`` and stopped by its pid (SIGTERM, then SIGKILL)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port_file = root / "floor.port"
        self.args = [sys.executable, "-m", "hercules_bench.peer_floor", "--port-file", str(self.port_file),
                     "--parent", str(os.getpid())]
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pids(self) -> dict[str, int]:
        return {"floor": self.proc.pid} if self.proc is not None else {}

    def describe(self) -> dict[str, Any]:
        return {"server": "in-memory HTTP/1.1: uvloop, httptools, asyncio.Protocol; no durability, no replication",
                "httptools": httptools.__version__, "command": " ".join(self.args[1:])}

    def start(self, timeout: float = 20.0) -> "FloorServer":
        """Start the process and wait until it has written its port; stop it on failure."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.port_file.unlink(missing_ok=True)
        with open(self.root / "floor.log", "ab") as log:
            self.proc = subprocess.Popen(self.args, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        try:
            while not self.port_file.exists():
                if self.proc.poll() is not None:
                    log_text = (self.root / "floor.log").read_text(errors="replace")[-1500:]
                    raise RuntimeError(f"the floor server exited with {self.proc.returncode}; its log ends:\n"
                                       f"{log_text}")
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"the floor server wrote no port in {timeout:.0f}s (log in {self.root})")
                time.sleep(0.02)
            self.port = int(self.port_file.read_text())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        from hercules_core.testing.cluster import stop_process

        if self.proc is not None:
            stop_process(self.proc, timeout=STOP_SECONDS)

    def running(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []


if __name__ == "__main__":
    main()
