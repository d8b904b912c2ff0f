"""Small HTTP and on-disk helpers for the end-to-end tests."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import struct
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hercules_core import codec
from hercules_core.framing import HEADER_SIZE, Frame, Kind
from hercules_core.testing.cluster import LocalCluster

MiB = 1 << 20
FAST = {  # small chunks and quick failure detection keep the suite fast
    "HERCULES_CHUNK_SIZE": "1MiB",
    "HERCULES_HEARTBEAT_INTERVAL": "0.3",
    "HERCULES_DEAD_AFTER": "2",
    "HERCULES_LEASE_SECONDS": "8",
}


class Http:
    """One keep-alive HTTP connection to the gateway."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
                ) -> tuple[int, dict[str, str], bytes]:
        headers = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    def json(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
             ) -> tuple[int, Any]:
        status, _, data = self.request(method, path, body, headers)
        return status, json.loads(data) if data else None

    def put_files(self, files: dict[str, bytes]) -> dict[str, bytes]:
        """PUT each of ``files`` (path -> content) whole; each must be created. Returns ``files``."""
        for path, data in files.items():
            assert self.json("PUT", f"/api/v1/files{path}", data)[0] == 201, path
        return files

    def close(self) -> None:
        self.conn.close()


def flip_byte(path: Path, at: int) -> None:
    """Corrupt one byte of a file in place (a bit rot the CRCs must catch)."""
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunk_files(cluster: LocalCluster, handle: int) -> list[Path]:
    """Every on-disk data file of ``handle``, across the cluster's chunkservers."""
    name = f"{handle:016x}"
    return [p for i in range(cluster.chunkservers) for p in cluster.chunk_dir(i).rglob(f"{name}.*")
            if p.suffix in (".chunk", ".zst", ".data") or p.name.startswith(name + ".") and p.suffix != ".meta"]


def disk_usage(paths: list[Path]) -> int:
    return sum(f.stat().st_blocks * 512 for p in paths for f in p.rglob("*") if f.is_file())


GFS = {**FAST, "HERCULES_TRASH_GRACE": "2", "HERCULES_REBALANCE_INTERVAL": "0.5",
       "HERCULES_SCRUB_RATE": "64MiB", "HERCULES_SCRUB_INTERVAL": "1", "HERCULES_FULL_REPORT_EVERY": "5"}


async def replica_contents(client, handle: int) -> dict[str, bytes]:  # noqa: ANN001
    """Every live replica's full bytes of one chunk, read straight from its chunkserver."""
    from hercules_core import messages as m

    loc = await client.chunk_servers(handle)
    out = {}
    for replica in loc.replicas:
        _, data = await client.pool.call(replica, m.ReadChunk(handle, loc.version, 0, client.chunk_size))
        out[replica] = bytes(data)
    return out


async def file_handles(client, path: str) -> list[int]:  # noqa: ANN001
    """The handles of the chunks of ``path``; a packed file (a record in a shared pack) has none of
    its own, which a test about its chunks must not take for an empty list."""
    info = await client.stat(path)
    assert info.chunk_count or not info.size, f"{path} is packed: no chunk of its own"
    handles = []
    for index in range(info.chunk_count):
        loc = await client.chunk_handle(path, index)
        if loc.exists:
            handles.append(loc.handle)
    return handles


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):  # noqa: ANN001, ANN201
    import time

    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def replicas_identical(master: str, paths: list[str], copies: int = 3) -> bool:
    """Whether every chunk of ``paths`` has ``copies`` live replicas holding the same bytes."""
    from hercules_core.client import connect

    from hercules_core.errors import StaleVersion

    client = await connect(master)
    try:
        for path in paths:
            for handle in await file_handles(client, path):
                try:
                    contents = await replica_contents(client, handle)
                except StaleVersion:  # a version bump (a move, a lease) between lookup and read: not settled
                    return False
                if len(contents) != copies or len(set(contents.values())) != 1:
                    return False
        return True
    finally:
        await client.close()


def read_http_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read an HTTP answer until the peer closes: its status, headers (names lower-cased) and body."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


class RawPeer:
    """A native-protocol peer on a plain socket: sends any bytes, reads whatever frames come back
    (what a hostile or broken client does; ``hercules_core.rpc`` would refuse to send most of it)."""

    def __init__(self, address: str, timeout: float = 10.0, source: str = "127.0.0.1") -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout, source_address=(source, 0))
        self._buf = b""

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def request(self, msg: Any, request_id: int = 1, data: bytes = b"") -> None:
        frame = Frame(Kind.REQUEST, request_id, codec.encode(msg), data)
        self.send(frame.header() + frame.meta + data)

    def read_frame(self) -> tuple[int, Any] | None:
        """The next reply as (request id, decoded message); ``None`` once the server closed."""
        while True:
            if len(self._buf) >= HEADER_SIZE:
                _, _, _, request_id, meta_len, data_len = struct.unpack_from("!2sBBIII", self._buf)  # framing's header
                end = HEADER_SIZE + meta_len + data_len
                if len(self._buf) >= end:
                    meta = self._buf[HEADER_SIZE:HEADER_SIZE + meta_len]
                    self._buf = self._buf[end:]
                    return request_id, codec.decode(meta)
            try:
                more = self.sock.recv(1 << 16)
            except ConnectionResetError:
                more = b""
            if not more:
                return None
            self._buf += more

    def close(self) -> None:
        self.sock.close()


def rss_bytes(pid: int) -> int:
    """A process's resident memory, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for pid {pid}")
