"""The two ways the command line reaches a cluster, behind one small interface.

``NativeRemote`` speaks the native protocol through the client library (metadata from the
master, data straight to the chunkservers); ``GatewayRemote`` speaks the gateway's REST API, for
hosts that can reach only its port (a Docker deployment from the host). Both answer in the REST
API's JSON shapes (``file_json``), so ``--json`` prints the same fields whichever is used.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Protocol
from urllib.parse import quote

import attrs

from hercules_core.builtin.rest_v1 import file_json
from hercules_core.cli.errors import Unreachable
from hercules_core.errors import HerculesError, Unavailable

Entry = dict[str, Any]  # one namespace entry as the REST API shows it
DEFAULT_MASTER = "127.0.0.1:9090"
# A first answer is awaited this long (saying so), so a master that is down is one line soon
# instead of after the retries later calls make through a master restart (MASTER_RETRY).
MASTER_PROBE = 5.0
MASTER_RETRY = 30.0


class Remote(Protocol):
    """What every command needs from a cluster."""

    where: str

    async def stat(self, path: str) -> Entry: ...
    async def list(self, path: str, recursive: bool = False) -> list[Entry]: ...
    async def mkdir(self, path: str) -> Entry: ...
    async def create(self, path: str) -> Entry: ...
    async def delete(self, path: str, recursive: bool = False) -> None: ...
    async def rename(self, source: str, target: str) -> None: ...
    async def snapshot(self, source: str, target: str) -> Entry: ...
    async def undelete(self, path: str) -> Entry: ...
    async def trash(self) -> list[dict[str, Any]]: ...
    async def purge_trash(self) -> int: ...
    async def cluster(self) -> dict[str, Any]: ...
    async def upload(self, path: str, source: AsyncIterable[bytes], size: int | None,
                     overwrite: bool) -> Entry: ...
    def download(self, path: str) -> AsyncIterator[bytes]: ...
    async def append(self, path: str, data: bytes) -> dict[str, Any]: ...
    async def close(self) -> None: ...


def trash_json(entry: Any) -> dict[str, Any]:
    """A trash entry as ``GET /api/v1/trash`` shows it."""
    return {"original_path": entry.original_path, "deleted_at": entry.deleted_at, "purge_at": entry.purge_at,
            "is_dir": entry.entry.is_dir, "size": entry.entry.size}


class NativeRemote:
    """The native protocol through ``hercules_core.client.Client``."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.where = f"the master at {client.master}"

    @classmethod
    async def open(cls, master: str, transport: str, on_wait: Any = None) -> NativeRemote:
        """A started client; a master that does not answer within ``MASTER_PROBE`` is ``Unreachable``."""
        from hercules_core.client import Client
        from hercules_core.plugins.manager import make_plugin_manager

        plugins = make_plugin_manager(load_entrypoints=False)
        plugins.load_providing("transport", transport)
        client = Client(master, plugins.transport(transport), master_retry_for=MASTER_PROBE)
        client.on_master_wait = on_wait
        try:
            await client.start()
            client.master_policy = client.master_policy.lasting(MASTER_RETRY)
        except Unavailable as exc:
            await client.close()
            raise Unreachable(f"cannot reach the master at {master}: {_reason(exc.message)} "
                              f"(start one with `hercules dev`, or point --master / HERCULES_MASTER at it)") from None
        except BaseException:
            await client.close()
            raise
        return cls(client)

    async def stat(self, path: str) -> Entry:
        return file_json(await self.client.stat(path))

    async def list(self, path: str, recursive: bool = False) -> list[Entry]:
        return [file_json(e) for e in (await self.client.list(path, recursive=recursive)).entries]

    async def mkdir(self, path: str) -> Entry:
        return file_json(await self.client.mkdir(path))

    async def create(self, path: str) -> Entry:
        return file_json(await self.client.create(path))

    async def delete(self, path: str, recursive: bool = False) -> None:
        await self.client.delete(path, recursive=recursive)

    async def rename(self, source: str, target: str) -> None:
        await self.client.rename(source, target)

    async def snapshot(self, source: str, target: str) -> Entry:
        return file_json(await self.client.snapshot(source, target))

    async def undelete(self, path: str) -> Entry:
        return file_json(await self.client.undelete(path))

    async def trash(self) -> list[dict[str, Any]]:
        return [trash_json(e) for e in (await self.client.trash()).entries]

    async def purge_trash(self) -> int:
        return await self.client.purge_trash()

    async def cluster(self) -> dict[str, Any]:
        return attrs.asdict(await self.client.cluster())

    async def upload(self, path: str, source: AsyncIterable[bytes], size: int | None,
                     overwrite: bool) -> Entry:
        return file_json(await self.client.upload(path, source, overwrite=overwrite, size=size))

    async def download(self, path: str) -> AsyncIterator[bytes]:
        async for piece in self.client.download(path):
            yield bytes(piece)

    async def append(self, path: str, data: bytes) -> dict[str, Any]:
        return {"path": path, "offset": await self.client.append(path, data), "length": len(data)}

    async def close(self) -> None:
        await self.client.close()


class GatewayRemote:
    """The gateway's REST API over HTTP (``--gateway URL``)."""

    def __init__(self, url: str, token: str | None = None) -> None:
        import aiohttp

        self.url = url.rstrip("/")
        self.where = f"the gateway at {self.url}"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                                             headers=headers)

    @classmethod
    async def open(cls, url: str, token: str | None = None) -> GatewayRemote:
        remote = cls(url, token)
        try:
            await remote._call("GET", "/health", ok=(200, 503))
        except BaseException:
            await remote.close()
            raise
        return remote

    async def _call(self, method: str, path: str, ok: tuple[int, ...] = (200, 201), **kwargs: Any) -> Any:
        async with self._request(method, path, ok, **kwargs) as resp:
            return await resp.json()

    def _request(self, method: str, path: str, ok: tuple[int, ...] = (200, 201), **kwargs: Any) -> Any:
        return _Checked(self, method, path, ok, kwargs)

    @staticmethod
    def _file(path: str) -> str:
        return "/api/v1/files/" + quote(path.lstrip("/"))

    async def stat(self, path: str) -> Entry:
        return await self._call("GET", "/api/v1/fileinfo", params={"path": path})

    async def list(self, path: str, recursive: bool = False) -> list[Entry]:
        params = {"path": path, "recursive": "true" if recursive else "false"}
        return (await self._call("GET", "/api/v1/list", params=params))["entries"]

    async def mkdir(self, path: str) -> Entry:
        return await self._call("POST", "/api/v1/mkdir", json={"path": path})

    async def create(self, path: str) -> Entry:
        return await self._call("POST", "/api/v1/create", json={"path": path})

    async def delete(self, path: str, recursive: bool = False) -> None:
        await self._call("DELETE", "/api/v1/delete", params={"path": path, "recursive": str(recursive).lower()})

    async def rename(self, source: str, target: str) -> None:
        await self._call("PATCH", "/api/v1/rename", json={"source": source, "target": target})

    async def snapshot(self, source: str, target: str) -> Entry:
        return await self._call("POST", "/api/v1/snapshot", json={"source": source, "target": target})

    async def undelete(self, path: str) -> Entry:
        return await self._call("POST", "/api/v1/undelete", json={"path": path})

    async def trash(self) -> list[dict[str, Any]]:
        return (await self._call("GET", "/api/v1/trash"))["entries"]

    async def purge_trash(self) -> int:
        return (await self._call("DELETE", "/api/v1/trash"))["purged_chunks"]

    async def cluster(self) -> dict[str, Any]:
        return await self._call("GET", "/api/v1/cluster")

    async def upload(self, path: str, source: AsyncIterable[bytes], size: int | None,
                     overwrite: bool) -> Entry:
        headers = {"Content-Length": str(size)} if size is not None else {}
        return await self._call("PUT", self._file(path), params={"overwrite": str(overwrite).lower()},
                                data=source, headers=headers)

    async def download(self, path: str) -> AsyncIterator[bytes]:
        async with self._request("GET", self._file(path)) as resp:
            async for piece in resp.content.iter_chunked(1 << 20):
                yield piece

    async def append(self, path: str, data: bytes) -> dict[str, Any]:
        return await self._call("PATCH", "/api/v1/append", params={"path": path}, data=data)

    async def close(self) -> None:
        await self.session.close()


@attrs.define
class _Checked:
    """One request as an async context manager; a status outside ``ok`` raises the error the
    gateway named (its JSON ``error.code``), a refused connection says the gateway is unreachable."""

    remote: GatewayRemote
    method: str
    path: str
    ok: tuple[int, ...]
    kwargs: dict[str, Any]
    resp: Any = None

    async def __aenter__(self) -> Any:
        import aiohttp

        try:
            self.resp = await self.remote.session.request(self.method, self.remote.url + self.path, **self.kwargs)
        except aiohttp.ClientConnectionError as exc:
            raise Unreachable(f"cannot reach the gateway at {self.remote.url}: {_reason(str(exc))} "
                              f"(point --gateway / HERCULES_GATEWAY at it)") from None
        if self.resp.status not in self.ok:
            try:
                error = (await self.resp.json())["error"]
                code, message = error["code"], error["message"]
            except Exception:  # noqa: BLE001 - not our gateway's JSON: keep the status line
                code, message = "internal", f"HTTP {self.resp.status} {self.resp.reason}"
            self.resp.release()
            raise HerculesError.from_code(code, message)
        return self.resp

    async def __aexit__(self, *exc: object) -> None:
        self.resp.release()


def _reason(message: str) -> str:
    """The last, most specific part of a chained error message, without an errno's number."""
    return re.sub(r"^\[Errno \d+\] ", "", message.rsplit(": ", 1)[-1])


async def open_remote(master: str | None, gateway: str | None, transport: str = "tcp",
                      on_wait: Any = None, token: str | None = None) -> Remote:
    """``--gateway`` (or ``HERCULES_GATEWAY``) if given, with ``--token`` (or ``HERCULES_TOKEN``)
    where the gateway wants one; else the native protocol to ``--master`` (or ``HERCULES_MASTER``,
    else ``MASTER_ADDR``, else 127.0.0.1:9090)."""
    gateway = gateway or os.environ.get("HERCULES_GATEWAY")
    if gateway:
        return await GatewayRemote.open(gateway, token or os.environ.get("HERCULES_TOKEN"))
    master = master or os.environ.get("HERCULES_MASTER") or os.environ.get("MASTER_ADDR") or DEFAULT_MASTER
    return await NativeRemote.open(master, transport, on_wait)
