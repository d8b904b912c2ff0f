"""Route set ``rest-v1``: the gateway's REST API (namespace, byte ranges, whole files, cluster)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from email.utils import formatdate
from typing import Any

import attrs
from aiohttp import web

from hercules_core.errors import HerculesError, InvalidArgument, NotFound
from hercules_core.messages import ChunkLocation, FileInfo
from hercules_core.paths import normalize
from hercules_core.plugins import hookimpl
from hercules_core.plugins.types import GatewayContext, RouteSetSpec

READ_PIECE = 1 << 20


def file_json(info: FileInfo) -> dict[str, Any]:
    return {"name": info.path.rsplit("/", 1)[-1] or "/", "path": info.path, "is_dir": info.is_dir,
            "size": info.size, "chunk_count": info.chunk_count, "replication": info.replication,
            "created": info.ctime, "modified": info.mtime}


def location_json(loc: ChunkLocation) -> dict[str, Any]:
    return {"handle": loc.handle, "index": loc.index, "version": loc.version, "exists": loc.exists,
            "replicas": loc.replicas, "primary": loc.primary or None,
            "secondaries": [r for r in loc.replicas if r != loc.primary] if loc.primary else [],
            "lease_expires": loc.lease_expires or None}


def _int(request: web.Request, name: str, default: int | None = None, minimum: int = 0) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise InvalidArgument(f"query parameter {name!r} is required")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise InvalidArgument(f"{name} must be at least {minimum}, not {value}")
    return value


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
    try:
        body = json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidArgument("request body must be a JSON object")
    for name in required:
        if not isinstance(body.get(name), str):
            raise InvalidArgument(f"JSON field {name!r} (a string) is required")
    return body


async def _body_parts(request: web.Request) -> AsyncIterator[bytes]:
    """The request body as received, one buffered frame at a time: no joins, so each byte is copied
    once, into the piece it belongs to."""
    content = request.content
    while True:
        data, end_of_http_chunk = await content.readchunk()
        if data:
            yield data
        elif not end_of_http_chunk:  # (b"", False) is the end of the body
            return


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
            pong = await self.client.ping()
        except HerculesError as exc:
            return web.json_response({"status": "degraded", "master": "unreachable", "error": exc.message},
                                     status=503)
        return web.json_response({"status": "ok", "master": "reachable",
                                  "chunkservers_alive": pong.info.get("chunkservers_alive", 0)})

    async def mkdir(self, request: web.Request) -> web.Response:
        body = await _body(request, "path")
        return web.json_response(file_json(await self.client.mkdir(normalize(body["path"]))), status=201)

    async def create(self, request: web.Request) -> web.Response:
        body = await _body(request, "path")
        replication = body.get("replication")
        if replication is not None and (not isinstance(replication, int) or isinstance(replication, bool)):
            raise InvalidArgument("replication must be an integer")
        info = await self.client.create(normalize(body["path"]), replication)
        return web.json_response(file_json(info), status=201)

    async def delete(self, request: web.Request) -> web.Response:
        if "path" in request.query:
            path, recursive = _query_path(request), _bool(request.query.get("recursive"), "recursive")
        else:
            body = await _body(request, "path")
            path = normalize(body["path"])
            recursive = _bool(body.get("recursive", request.query.get("recursive")), "recursive")
        await self.client.delete(path, recursive)
        return web.json_response({"deleted": path})

    async def rename(self, request: web.Request) -> web.Response:
        body = await _body(request, "source", "target")
        source, target = normalize(body["source"], what="source"), normalize(body["target"], what="target")
        await self.client.rename(source, target, _bool(body.get("overwrite"), "overwrite"))
        return web.json_response({"source": source, "target": target})

    async def list(self, request: web.Request) -> web.Response:
        path = _query_path(request)
        listing = await self.client.list(path, _bool(request.query.get("recursive"), "recursive"),
                                         _int(request, "limit", 0), request.query.get("cursor", ""))
        return web.json_response({"path": path, "entries": [file_json(e) for e in listing.entries],
                                  "next_cursor": listing.next_cursor or None})

    async def fileinfo(self, request: web.Request) -> web.Response:
        return web.json_response(file_json(await self.client.stat(_query_path(request))))

    async def read(self, request: web.Request) -> web.StreamResponse:
        path = _query_path(request)
        offset, length = _int(request, "offset", 0), _int(request, "length", -1, minimum=-1)
        info = await self.client.open(path, offset, length)
        if info.is_dir:
            raise InvalidArgument(f"{path} is a directory")
        end = info.size if length < 0 else min(info.size, offset + length)
        return await self._stream(request, info, offset, max(0, end - offset), 200)

    async def _stream(self, request: web.Request, info: FileInfo, offset: int, length: int, status: int,
                      headers: dict[str, str] | None = None) -> web.StreamResponse:
        """Send ``length`` bytes from ``offset`` of the file ``info`` (from ``open``, so the first
        chunks are already located), in the client's pieces as they arrive."""
        response = web.StreamResponse(status=status, headers={"Content-Type": "application/octet-stream",
                                                              **(headers or {})})
        response.content_length = length
        async with self.transfers:
            pieces = self.client.download(info.path, offset, length, info=info)
            first = await anext(pieces, b"")  # fail before the status line is sent
            await response.prepare(request)
            if first:
                await response.write(first)
            async for piece in pieces:
                await response.write(piece)
        await response.write_eof()
        return response

    async def write(self, request: web.Request) -> web.Response:
        path = _query_path(request)
        async with self.transfers:
            written = await self.client.write_stream(path, _int(request, "offset", 0), _body_parts(request))
        return web.json_response({"path": path, "written": written})

    async def append(self, request: web.Request) -> web.Response:
        path = _query_path(request)
        limit = max(1, (self.client.chunk_size or 1 << 30) // 4)
        if request.content_length is not None and request.content_length > limit:
            raise InvalidArgument(f"a record may be at most {limit} bytes")
        data = await request.content.read(limit + 1)
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
        return web.json_response(attrs.asdict(await self.client.cluster()))

    async def snapshot(self, request: web.Request) -> web.Response:
        body = await _body(request, "source", "target")
        info = await self.client.snapshot(normalize(body["source"], what="source"),
                                          normalize(body["target"], what="target"))
        return web.json_response(file_json(info), status=201)

    async def undelete(self, request: web.Request) -> web.Response:
        body = await _body(request, "path")
        return web.json_response(file_json(await self.client.undelete(normalize(body["path"]))))

    async def trash(self, request: web.Request) -> web.Response:
        listing = await self.client.trash()
        return web.json_response({"entries": [{"original_path": e.original_path, "deleted_at": e.deleted_at,
                                               "purge_at": e.purge_at, "is_dir": e.entry.is_dir,
                                               "size": e.entry.size} for e in listing.entries]})

    async def put_file(self, request: web.Request) -> web.Response:
        path = _file_path(request)
        replication = _int(request, "replication", 0)
        overwrite = _bool(request.query.get("overwrite"), "overwrite")
        async with self.transfers:
            info = await self.client.upload(path, _body_parts(request), overwrite=overwrite,
                                            replication=replication or None, size=request.content_length)
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
    app.router.add_put("/api/v1/files/{path:.+}", api.put_file)
    app.router.add_get("/api/v1/files/{path:.+}", api.get_file)  # also answers HEAD
    app.router.add_delete("/api/v1/files/{path:.+}", api.delete_file)


@hookimpl
def hercules_gateway_routes() -> Iterator[RouteSetSpec]:
    yield RouteSetSpec(name="rest-v1", register=register,
                       description="REST API v1: namespace, byte ranges, whole files, cluster status")
