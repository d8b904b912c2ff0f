"""The blocking client: every call of the async ``Client``, run on a private event loop in a
background thread.

Each method is made from its async counterpart by one of two wrappers (a coroutine becomes a
blocking call, an async iterator a blocking iterator), keeping its signature and docstring; a
test checks that every public coroutine of ``Client`` has its counterpart here.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

from hercules_core.client.client import Client, connect
from hercules_core.client.upload_stream import UploadStream

P = ParamSpec("P")
T = TypeVar("T")


def _blocking(method: Callable[Concatenate[Client, P], Coroutine[Any, Any, T]]
              ) -> Callable[Concatenate[SyncClient, P], T]:
    @functools.wraps(method)
    def call(self: SyncClient, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(getattr(self._client, method.__name__)(*args, **kwargs))
    return call


def _iterating(method: Callable[Concatenate[Client, P], AsyncIterator[T]]
               ) -> Callable[Concatenate[SyncClient, P], Iterator[T]]:
    @functools.wraps(method)
    def call(self: SyncClient, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self._iterate(getattr(self._client, method.__name__)(*args, **kwargs))
    signature = inspect.signature(method)
    returns = str(signature.return_annotation).replace("AsyncIterator", "Iterator")
    call.__signature__ = signature.replace(return_annotation=returns)  # type: ignore[attr-defined]
    return call


async def _next(items: AsyncIterator[T]) -> T:
    return await items.__anext__()


class SyncClient:
    """``with SyncClient("127.0.0.1:9090") as c: c.write(...)``; safe to share between threads
    (calls from several threads run concurrently on the one loop)."""

    def __init__(self, master: str, transport: str = "tcp") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hercules-client", daemon=True)
        self._thread.start()
        try:
            self._client: Client = self._run(connect(master, transport))
        except BaseException:
            self._stop()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._run(_next(items))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None and not self._loop.is_closed():
                if threading.current_thread() is self._thread:  # collected on the loop: no waiting there
                    self._loop.create_task(aclose())
                else:
                    self._run(aclose())

    @property
    def chunk_size(self) -> int:
        return self._client.chunk_size

    def start(self) -> SyncClient:
        """Ask the master for the cluster's chunk size and lease time again (``__init__`` did)."""
        self._run(self._client.start())
        return self

    def close(self) -> None:
        self._run(self._shutdown())
        self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _shutdown(self) -> None:
        """Close the client, then end what is left on the loop (as ``asyncio.run`` does), so no
        connection's reader is destroyed pending when the loop closes."""
        await self._client.close()
        left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        await self._loop.shutdown_asyncgens()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- namespace ---------------------------------------------------------------------------
    ping = _blocking(Client.ping)
    probe_master = _blocking(Client.probe_master)
    mkdir = _blocking(Client.mkdir)
    create = _blocking(Client.create)
    stat = _blocking(Client.stat)
    list = _blocking(Client.list)
    rename = _blocking(Client.rename)
    delete = _blocking(Client.delete)
    snapshot = _blocking(Client.snapshot)
    compose = _blocking(Client.compose)
    undelete = _blocking(Client.undelete)
    trash = _blocking(Client.trash)
    purge_trash = _blocking(Client.purge_trash)
    compact_packs = _blocking(Client.compact_packs)
    cluster = _blocking(Client.cluster)
    chunk_handle = _blocking(Client.chunk_handle)
    chunk_servers = _blocking(Client.chunk_servers)

    # -- data --------------------------------------------------------------------------------
    open = _blocking(Client.open)
    read = _blocking(Client.read)
    download = _iterating(Client.download)
    write = _blocking(Client.write)
    write_stream = _blocking(Client.write_stream)
    append = _blocking(Client.append)
    upload = _blocking(Client.upload)

    def upload_stream(self, path: str, *, overwrite: bool = False, replication: int | None = None) -> UploadStream:
        """A new file fed by ``write`` calls as the data comes, published atomically under ``path``
        by ``close`` (nothing is published after ``abort``, or when a ``with`` block raises)."""
        return UploadStream(self._loop, lambda source: self._client.upload(
            path, source, overwrite=overwrite, replication=replication), path)
