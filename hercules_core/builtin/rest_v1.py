"""Route set ``rest-v1``: the gateway's REST API (namespace, byte ranges, whole files, cluster)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from email.utils import formatdate
from typing import Any

import attrs
from aiohttp import web

from hercules_core.builtin.rest_v1_openapi import openapi
from hercules_core.config import MAX_FILE_SIZE, check_file_end
from hercules_core.errors import HerculesError, InvalidArgument, NotFound, TooLarge
from hercules_core.gateway.app import CONTEXT_KEY
from hercules_core.gateway.auth import require
from hercules_core.gateway.streaming import send_file
from hercules_core.messages import ChunkLocation, FileInfo
from hercules_core.paths import normalize
from hercules_core.plugins import hookimpl
from hercules_core.plugins.types import GatewayContext, RouteSetSpec

READ_PIECE = 1 << 20
INT64_MAX = (1 << 63) - 1  # the widest integer the wire and the metadata store carry
EMPTY_READS_LIMIT = 1000  # a reader answering (b"", not at end) this often in a row is not moving


def file_json(info: FileInfo) -> dict[str, Any]:
    return {"name": info.path.rsplit("/", 1)[-1] or "/", "path": info.path, "is_dir": info.is_dir,
            "size": info.size, "chunk_count": info.chunk_count, "replication": info.replication,
            "created": info.ctime, "modified": info.mtime}


def location_json(loc: ChunkLocation) -> dict[str, Any]:
    return {"handle": loc.handle, "index": loc.index, "version": loc.version, "exists": loc.exists,
            "replicas": loc.replicas, "primary": loc.primary or None,
            "secondaries": [r for r in loc.replicas if r != loc.primary] if loc.primary else [],
            "lease_expires": loc.lease_expires or None}


def _in_range(value: int, name: str, minimum: int, maximum: int) -> int:
    """``value`` if within bounds: larger integers would fail to encode (or overflow the store) later."""
    if value < minimum:
        raise InvalidArgument(f"{name} must be at least {minimum}, not {value}")
    if value > maximum:
        limit = f"{maximum} (the maximum file size)" if maximum == MAX_FILE_SIZE else str(maximum)
        raise InvalidArgument(f"{name} must be at most {limit}, not {value}")
    return value


def _int(request: web.Request, name: str, default: int | None = None, minimum: int = 0,
         maximum: int = INT64_MAX) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise InvalidArgument(f"query parameter {name!r} is required")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"{name} must be an integer, not {raw[:40]!r}") from None
    return _in_range(value, name, minimum, maximum)


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("", "0", "false", "no"):
        return False
    raise InvalidArgument(f"{name} must be true or false, not {value!r}")


def _query_path(request: web.Request, name: str = "path") -> str:
    if name not in request.query:
        raise InvalidArgument(f"query parameter {name!r} is required")
    return normalize(request.query[name], what=name)


async def _body(request: web.Request, *required: str) -> dict[str, Any]:
    if not request.can_read_body:
        raise InvalidArgument(f"a JSON body with {', '.join(required)} is required")
    raw = await _read_body(request, request.app[CONTEXT_KEY].config.http_max_body, "a JSON body", TooLarge)
    try:
        body = json.loads(raw)
    except ValueError as exc:  # bad syntax or UTF-8, or an integer of more digits than Python converts
        raise InvalidArgument(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidArgument("request body is not valid JSON: it is nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidArgument("request body must be a JSON object")
    for name in required:
        value = body.get(name)
        if not isinstance(value, str):
            raise InvalidArgument(f"JSON field {name!r} (a string) is required")
        try:
            value.encode()
        except UnicodeEncodeError:  # a lone surrogate: legal in JSON text, not in a path on the wire
            raise InvalidArgument(f"JSON field {name!r} is not valid UTF-8 (it holds a lone surrogate)") from None
    return body


def _declared_length(request: web.Request) -> int | None:
    """The body's length as the handler receives it, if the client said it: a content-encoded
    body's Content-Length counts the encoded bytes, not the decoded ones read here."""
    if request.headers.get("Content-Encoding", "identity").lower() != "identity":
        return None
    return request.content_length


async def _body_parts(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as received, one buffered frame at a time: no joins, so each byte is copied
    once, into the piece it belongs to. A body that ends short of its Content-Length is an error,
    and so is one that stops moving for ``http_body_timeout`` (a slow client holds no slot forever)."""
    if not request.body_exists:  # aiohttp's shared empty payload answers (b"", True) forever: never read it
        return
    content, expected = request.content, _declared_length(request)
    timeout = request.app[CONTEXT_KEY].config.http_body_timeout
    received = empty = 0
    while True:
        try:
            data, _ = await asyncio.wait_for(content.readchunk(), timeout)
        except TimeoutError:
            raise InvalidArgument(f"request body sent nothing for {timeout:g} s (after {received} bytes)") from None
        if data:
            received += len(data)
            empty = 0
            yield data
        elif content.at_eof():
            break
        else:  # the end of an HTTP chunk; a few in a row at most
            empty += 1
            if empty > EMPTY_READS_LIMIT:
                raise InvalidArgument("request body stopped without ending")
    if expected is not None and received != expected:
        raise InvalidArgument(f"request body has {received} bytes, not the {expected} of its Content-Length")


async def _read_body(request: web.Request, limit: int, what: str,
                     error: type[HerculesError] = InvalidArgument) -> bytes:
    """The whole body, however many reads it arrives in, if it has at most ``limit`` bytes."""
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise error(f"{what} may be at most {limit} bytes")
    body = bytearray()
    async for part in _body_parts(request):
        body += part
        if len(body) > limit:
            raise error(f"{what} may be at most {limit} bytes")
    return bytes(body)


def _file_path(request: web.Request) -> str:
    return normalize("/" + request.match_info["path"])


def _parse_range(header: str, size: int) -> tuple[int, int]:
    """One ``bytes=a-b`` range as (offset, length); ``HTTPRequestRangeNotSatisfiable`` if unusable."""
    unit, _, spec = header.partition("=")
    try:
        if unit.strip() != "bytes" or "," in spec:
            raise ValueError
        first, _, last = spec.strip().partition("-")
        if first == "":
            length = min(int(last), size)
            if length <= 0:
                raise ValueError
            return size - length, length
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if start < 0 or start >= size or end < start:
            raise ValueError
        return start, end - start + 1
    except ValueError:
        raise web.HTTPRequestRangeNotSatisfiable(
            headers={"Content-Range": f"bytes */{size}"},
            text=json.dumps({"error": {"code": "range_not_satisfiable",
                                       "message": f"range {header!r} does not fit a {size}-byte file"}}),
            content_type="application/json") from None


@attrs.define
class RestV1:
    """The handlers. At most ``gateway_max_inflight`` uploads and downloads move data at once
    (each holds a few pieces in memory); more wait their turn, so the gateway's memory is bounded."""

    ctx: GatewayContext
    transfers: asyncio.Semaphore = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.transfers = asyncio.Semaphore(self.ctx.config.gateway_max_inflight)

    @property
    def client(self) -> Any:
        return self.ctx.client

    async def health(self, request: web.Request) -> web.Response:
        try:
            pong = await self.client.probe_master()  # one short try: health answers at once
        except HerculesError as exc:
            return web.json_response({"status": "degraded", "master": "unreachable", "error": exc.message},
                                     status=503)
        return web.json_response({"status": "ok", "master": "reachable",
                                  "chunkservers_alive": pong.info.get("chunkservers_alive", 0)})

    async def mkdir(self, request: web.Request) -> web.Response:
        body = await _body(request, "path")
        path = normalize(body["path"])
        require(request, "write", path)
        return web.json_response(file_json(await self.client.mkdir(path)), status=201)

    async def create(self, request: web.Request) -> web.Response:
        body = await _body(request, "path")
        replication = body.get("replication")
        if replication is not None and (not isinstance(replication, int) or isinstance(replication, bool)):
            raise InvalidArgument("replication must be an integer")
        if replication is not None:
            _in_range(replication, "replication", -INT64_MAX, INT64_MAX)
        path = normalize(body["path"])
        require(request, "write", path)
        info = await self.client.create(path, replication)
        return web.json_response(file_json(info), status=201)

    async def delete(self, request: web.Request) -> web.Response:
        if "path" in request.query:
            path, recursive = _query_path(request), _bool(request.query.get("recursive"), "recursive")
        else:
            body = await _body(request, "path")
            path = normalize(body["path"])
            recursive = _bool(body.get("recursive", request.query.get("recursive")), "recursive")
            require(request, "write", path)
        await self.client.delete(path, recursive)
        return web.json_response({"deleted": path})

    async def rename(self, request: web.Request) -> web.Response:
        body = await _body(request, "source", "target")
        source, target = normalize(body["source"], what="source"), normalize(body["target"], what="target")
        require(request, "write", source, target)
        await self.client.rename(source, target, _bool(body.get("overwrite"), "overwrite"))
        return web.json_response({"source": source, "target": target})

    async def list(self, request: web.Request) -> web.Response:
        """Without ``limit`` every entry (assembled from the master's pages); with it, one page."""
        path = _query_path(request)
        listing = await self.client.list(path, _bool(request.query.get("recursive"), "recursive"),
                                         _int(request, "limit", 0), request.query.get("cursor", ""))
        return web.json_response({"path": path, "entries": [file_json(e) for e in listing.entries],
                                  "next_cursor": listing.next_cursor or None})

    async def fileinfo(self, request: web.Request) -> web.Response:
        return web.json_response(file_json(await self.client.stat(_query_path(request))))

    async def read(self, request: web.Request) -> web.StreamResponse:
        path = _query_path(request)
        offset = _int(request, "offset", 0, maximum=MAX_FILE_SIZE)
        length = _int(request, "length", -1, minimum=-1, maximum=MAX_FILE_SIZE)
        info = await self.client.open(path, offset, length)
        if info.is_dir:
            raise InvalidArgument(f"{path} is a directory")
        end = info.size if length < 0 else min(info.size, offset + length)
        return await self._stream(request, info, offset, max(0, end - offset), 200)

    async def _stream(self, request: web.Request, info: FileInfo, offset: int, length: int, status: int,
                      headers: dict[str, str] | None = None) -> web.StreamResponse:
        """Send ``length`` bytes from ``offset`` of the file ``info`` (from ``open``, so the first
        chunks are already located), in the client's pieces as they arrive. A client that stops
        reading for ``http_write_timeout`` loses the response and gives its transfer slot back."""
        headers = {"Content-Type": "application/octet-stream", **(headers or {})}
        async with self.transfers:
            pieces = self.client.download(info.path, offset, length, info=info)
            return await send_file(request, status, headers, length, pieces)

    async def write(self, request: web.Request) -> web.Response:
        path = _query_path(request)
        offset = _int(request, "offset", 0, maximum=MAX_FILE_SIZE)
        length = _declared_length(request)
        if length is not None:
            check_file_end(offset + length, f"{length} bytes at offset {offset}")
        async with self.transfers:
            written = await self.client.write_stream(path, offset, _body_parts(request))
        return web.json_response({"path": path, "written": written})

    async def append(self, request: web.Request) -> web.Response:
        path = _query_path(request)
        limit = max(1, (self.client.chunk_size or 1 << 30) // 4)
        data = await _read_body(request, limit, "a record")
        offset = await self.client.append(path, data)
        return web.json_response({"path": path, "offset": offset, "length": len(data)})

    async def chunk_handle(self, request: web.Request) -> web.Response:
        loc = await self.client.chunk_handle(_query_path(request), _int(request, "index", None))
        if not loc.exists:
            raise NotFound(f"chunk {loc.index} of {request.query['path']} does not exist")
        return web.json_response(location_json(loc))

    async def chunk_servers(self, request: web.Request) -> web.Response:
        return web.json_response(location_json(await self.client.chunk_servers(_int(request, "handle", None, 1))))

    async def cluster(self, request: web.Request) -> web.Response:
        body = attrs.asdict(await self.client.cluster())
        metrics_on = self.ctx.config.metrics_addr != "off"
        body["gateway_metrics_url"] = f"{request.url.origin()}/metrics" if metrics_on else ""
        return web.json_response(body)

    async def snapshot(self, request: web.Request) -> web.Response:
        body = await _body(request, "source", "target")
        source, target = normalize(body["source"], what="source"), normalize(body["target"], what="target")
        require(request, "write", source, target)
        info = await self.client.snapshot(source, target)
        return web.json_response(file_json(info), status=201)

    async def undelete(self, request: web.Request) -> web.Response:
        body = await _body(request, "path")
        path = normalize(body["path"])
        require(request, "write", path)
        return web.json_response(file_json(await self.client.undelete(path)))

    async def trash(self, request: web.Request) -> web.Response:
        """Without ``limit`` the whole trash (assembled from the master's pages); with it, one page."""
        listing = await self.client.trash(_int(request, "limit", 0), request.query.get("cursor", ""))
        return web.json_response({"entries": [{"original_path": e.original_path, "deleted_at": e.deleted_at,
                                               "purge_at": e.purge_at, "is_dir": e.entry.is_dir,
                                               "size": e.entry.size} for e in listing.entries],
                                  "next_cursor": listing.next_cursor or None})

    async def purge_trash(self, request: web.Request) -> web.Response:
        """Empty the trash now: nothing in it can be restored afterwards."""
        return web.json_response({"purged_chunks": await self.client.purge_trash()})

    async def put_file(self, request: web.Request) -> web.Response:
        path = _file_path(request)
        replication = _int(request, "replication", 0)
        overwrite = _bool(request.query.get("overwrite"), "overwrite")
        size = _declared_length(request)
        if size is not None:
            check_file_end(size, "the upload")
        async with self.transfers:
            info = await self.client.upload(path, _body_parts(request), overwrite=overwrite,
                                            replication=replication or None, size=size)
        return web.json_response(file_json(info), status=201)

    async def get_file(self, request: web.Request) -> web.StreamResponse:
        path = _file_path(request)
        info = await (self.client.stat(path) if request.method == "HEAD" else self.client.open(path))
        if info.is_dir:
            raise InvalidArgument(f"{path} is a directory; use /api/v1/list")
        headers = {"Accept-Ranges": "bytes", "Last-Modified": formatdate(info.mtime, usegmt=True)}
        if request.method == "HEAD":
            return web.Response(status=200, headers={**headers, "Content-Length": str(info.size),
                                                     "Content-Type": "application/octet-stream"})
        if "Range" in request.headers:
            offset, length = _parse_range(request.headers["Range"], info.size)
            headers["Content-Range"] = f"bytes {offset}-{offset + length - 1}/{info.size}"
            return await self._stream(request, info, offset, length, 206, headers)
        return await self._stream(request, info, 0, info.size, 200, headers)

    async def delete_file(self, request: web.Request) -> web.Response:
        path = _file_path(request)
        await self.client.delete(path, _bool(request.query.get("recursive"), "recursive"))
        return web.json_response({"deleted": path})


def register(app: web.Application, ctx: GatewayContext) -> None:
    api = RestV1(ctx)
    ctx.state["transfers"] = api.transfers  # read by the gateway's metrics (slots in use)
    app.router.add_get("/health", api.health)
    app.router.add_post("/api/v1/mkdir", api.mkdir)
    app.router.add_post("/api/v1/create", api.create)
    app.router.add_delete("/api/v1/delete", api.delete)
    app.router.add_patch("/api/v1/rename", api.rename)
    app.router.add_get("/api/v1/list", api.list)
    app.router.add_get("/api/v1/fileinfo", api.fileinfo)
    app.router.add_get("/api/v1/read", api.read)
    app.router.add_post("/api/v1/write", api.write)
    app.router.add_patch("/api/v1/append", api.append)
    app.router.add_get("/api/v1/chunk/handle", api.chunk_handle)
    app.router.add_get("/api/v1/chunk/servers", api.chunk_servers)
    app.router.add_get("/api/v1/cluster", api.cluster)
    app.router.add_post("/api/v1/snapshot", api.snapshot)
    app.router.add_post("/api/v1/undelete", api.undelete)
    app.router.add_get("/api/v1/trash", api.trash)
    app.router.add_delete("/api/v1/trash", api.purge_trash)
    app.router.add_put("/api/v1/files/{path:.+}", api.put_file)
    app.router.add_get("/api/v1/files/{path:.+}", api.get_file)  # also answers HEAD
    app.router.add_delete("/api/v1/files/{path:.+}", api.delete_file)


@hookimpl
def hercules_gateway_routes() -> Iterator[RouteSetSpec]:
    yield RouteSetSpec(name="rest-v1", register=register, openapi=openapi,
                       description="REST API v1: namespace, byte ranges, whole files, cluster status")
