"""The gateway side of the benchmark: whole files over HTTP with aiohttp, streamed both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import crc32c

from hercules_bench.options import MiB
from hercules_bench.stats import VerificationError

STREAM_PIECE = 1 * MiB


class GatewayError(Exception):
    pass


class Gateway:
    """One aiohttp session (keep-alive connections, at most ``connections`` at once)."""

    def __init__(self, url: str, connections: int = 8, timeout: float = 300.0) -> None:
        self.url = url.rstrip("/")
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections),
            timeout=aiohttp.ClientTimeout(total=timeout), auto_decompress=False)

    async def close(self) -> None:
        await self.session.close()

    def _file_url(self, path: str) -> str:
        return f"{self.url}/api/v1/files/{quote(path.lstrip('/'))}"

    def _put_params(self, replication: int | None) -> dict[str, str]:
        """Query parameters of a PUT: the replication, when one is asked for (a peer spells it its way)."""
        return {"replication": str(replication)} if replication else {}

    async def _put_info(self, resp: aiohttp.ClientResponse) -> dict[str, Any]:
        """The answer to a PUT as a dict with at least ``size`` (the bytes the server stored)."""
        info: dict[str, Any] = await resp.json()
        return info

    def _auth(self, method: str, url: str) -> dict[str, str]:
        """Extra headers authenticating a request (none on the REST API; S3 signs)."""
        return {}

    @staticmethod
    async def _check(resp: aiohttp.ClientResponse, *ok: int) -> None:
        if resp.status not in ok:
            body = await resp.text()
            raise GatewayError(f"{resp.method} {resp.url.path}: HTTP {resp.status}: {body[:300]}")

    async def health(self) -> dict[str, Any]:
        async with self.session.get(f"{self.url}/health") as resp:
            await self._check(resp, 200)
            return await resp.json()

    async def put(self, path: str, data: bytes, *, replication: int | None = None,
                  stream: bool = False) -> dict[str, Any]:
        """PUT a whole file; ``stream`` sends it in 1 MiB pieces (views, no copies) instead of one body."""
        body: Any = _pieces(data) if stream else data
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}
        async with self.session.put(self._file_url(path), data=body, params=self._put_params(replication),
                                    headers=headers) as resp:
            await self._check(resp, 201)
            info = await self._put_info(resp)
        if info.get("size") != len(data):
            raise VerificationError(f"PUT {path}: gateway reports {info.get('size')} bytes, sent {len(data)}")
        return info

    async def get_verify(self, path: str, size: int, crc: int) -> int:
        """GET a whole file, streamed; its length and CRC32C must match what was written.

        Pieces are taken as they arrive (``iter_any``): regrouping them into fixed sizes
        (``iter_chunked``) costs this process about three times the CPU, which on a small
        machine is taken from the cluster being measured.
        """
        got, value = 0, 0
        url = self._file_url(path)
        async with self.session.get(url, headers=self._auth("GET", url)) as resp:
            await self._check(resp, 200)
            async for piece in resp.content.iter_any():
                value = crc32c.crc32c(piece, value)
                got += len(piece)
                if got > size:
                    break
        if got != size or value != crc:
            raise VerificationError(f"GET {path}: read {got} bytes with CRC32C {value:08x}; "
                                    f"wrote {size} bytes with CRC32C {crc:08x}")
        return got

    async def get(self, path: str) -> bytes:
        url = self._file_url(path)
        async with self.session.get(url, headers=self._auth("GET", url)) as resp:
            await self._check(resp, 200)
            return await resp.read()

    async def delete(self, path: str, recursive: bool = False) -> None:
        params = {"recursive": "true"} if recursive else {}
        async with self.session.delete(self._file_url(path), params=params) as resp:
            await self._check(resp, 200, 404)


async def _pieces(data: bytes) -> AsyncIterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(view), STREAM_PIECE):
        yield view[start:start + STREAM_PIECE]
