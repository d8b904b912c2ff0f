"""A thin blocking wrapper: the async client on a private event loop in a background thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from hercules_core.client.client import Client, connect
from hercules_core.messages import ChunkLocation, ClusterInfo, FileInfo, Listing
from hercules_core.plugins.types import Buffer

T = TypeVar("T")


class SyncClient:
    def __init__(self, master: str, transport: str = "tcp") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hercules-client", daemon=True)
        self._thread.start()
        self._client: Client = self._run(connect(master, transport))

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> "SyncClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def mkdir(self, path: str) -> FileInfo:
        return self._run(self._client.mkdir(path))

    def create(self, path: str, replication: int | None = None) -> FileInfo:
        return self._run(self._client.create(path, replication))

    def stat(self, path: str) -> FileInfo:
        return self._run(self._client.stat(path))

    def list(self, path: str, recursive: bool = False, limit: int = 0, cursor: str = "") -> Listing:
        return self._run(self._client.list(path, recursive, limit, cursor))

    def rename(self, source: str, target: str, overwrite: bool = False) -> None:
        self._run(self._client.rename(source, target, overwrite))

    def delete(self, path: str, recursive: bool = False) -> None:
        self._run(self._client.delete(path, recursive))

    def write(self, path: str, offset: int, data: Buffer) -> int:
        return self._run(self._client.write(path, offset, data))

    def read(self, path: str, offset: int = 0, length: int = -1) -> bytes:
        return self._run(self._client.read(path, offset, length))

    def append(self, path: str, data: Buffer) -> int:
        return self._run(self._client.append(path, data))

    def upload(self, path: str, source: Any, overwrite: bool = False, replication: int | None = None) -> FileInfo:
        return self._run(self._client.upload(path, source, overwrite=overwrite, replication=replication))

    def chunk_servers(self, handle: int) -> ChunkLocation:
        return self._run(self._client.chunk_servers(handle))

    def snapshot(self, source: str, target: str) -> FileInfo:
        return self._run(self._client.snapshot(source, target))

    def undelete(self, path: str) -> FileInfo:
        return self._run(self._client.undelete(path))

    def cluster(self) -> ClusterInfo:
        return self._run(self._client.cluster())
