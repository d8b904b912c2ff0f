"""Object operations: PutObject, GetObject/HeadObject (ranges, conditions), DeleteObject(s), CopyObject."""

from __future__ import annotations

import calendar
import email.utils
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import unquote

from aiohttp import web

from hercules_core.errors import HerculesError, IsADirectory, NotFound
from hercules_core.gateway.streaming import send_file
from hercules_core.messages import FileInfo
from hercules_core.paths import parent_and_name
from hercules_s3 import store, xmlio
from hercules_s3.context import S3Context
from hercules_s3.errors import S3Error, from_hercules, invalid_argument, no_such_key
from hercules_s3.payload import Body, read_small
from hercules_s3.sigv4 import Signed
from hercules_s3.store import ObjectMeta

MAX_DELETE = 1000
MAX_OBJECT = 5 << 40  # S3's largest object (5 TiB): a larger declared body is refused before it is read
EMPTY_MD5 = hashlib.md5(b"").hexdigest()


def meta_from_headers(request: web.Request) -> tuple[str, dict[str, str], dict[str, str]]:
    content_type = request.headers.get("Content-Type") or "binary/octet-stream"
    user = {k.lower()[len("x-amz-meta-"):]: v for k, v in request.headers.items()
            if k.lower().startswith("x-amz-meta-")}
    kept = {h: request.headers[h] for h in store.STORED_HEADERS if h in request.headers}
    if kept.get("Content-Encoding", "").lower().startswith("aws-chunked"):
        rest = ",".join(e for e in kept["Content-Encoding"].split(",")[1:] if e.strip())
        kept.pop("Content-Encoding")
        if rest:
            kept["Content-Encoding"] = rest.strip()
    return content_type, user, kept


def object_headers(meta: ObjectMeta, info: FileInfo) -> dict[str, str]:
    headers = {"ETag": f'"{meta.etag}"', "Last-Modified": xmlio.http_date(info.mtime),
               "Accept-Ranges": "bytes", "Content-Type": meta.content_type, **meta.headers}
    headers.update({f"x-amz-meta-{k}": v for k, v in meta.user.items()})
    if meta.parts:
        headers["x-amz-mp-parts-count"] = str(meta.parts)
    return headers


async def stat_object(ctx: S3Context, bucket: str, key: str) -> FileInfo:
    path = store.object_path(bucket, key)
    try:
        info = await ctx.client.stat(path)
    except NotFound:
        await store.stat_bucket(ctx.client, bucket)
        raise no_such_key(bucket, key) from None
    if info.is_dir:
        raise no_such_key(bucket, key)
    return info


async def put_object(ctx: S3Context, request: web.Request, bucket: str, key: str,
                     signed: Signed | None) -> web.Response:
    await store.stat_bucket(ctx.client, bucket)
    if key.endswith("/") and key.strip("/"):  # a "folder" marker: a directory here
        await ctx.client.mkdir(store.object_path(bucket, key.rstrip("/")))
        await read_small(request)
        return web.Response(headers={"ETag": f'"{EMPTY_MD5}"'})
    path = store.object_path(bucket, key)
    body = Body(request, signed)
    if (body.declared_size or 0) > MAX_OBJECT:
        raise S3Error("EntityTooLarge", 400, "Your proposed upload exceeds the maximum allowed object size.")
    await check_write_conditions(ctx, request, bucket, key)
    content_type, user, kept = meta_from_headers(request)
    info = await upload(ctx, path, body.pieces(), body.declared_size)
    meta = ObjectMeta(etag=body.md5, content_type=content_type, user=user, headers=kept,
                      file_id=info.file_id, size=info.size)
    await store.save_meta(ctx.client, bucket, key, meta)
    return web.Response(headers={"ETag": f'"{meta.etag}"'})


def _etags(header: str) -> list[str]:
    return [t.strip().strip('"') for t in header.split(",")]


async def check_write_conditions(ctx: S3Context, request: web.Request, bucket: str, key: str) -> None:
    """A conditional PutObject: ``If-Match`` (the current ETag, or ``*``: the key exists) and
    ``If-None-Match`` (``*``: it does not). Checked before the body is read, not atomically with the
    write: two writers racing with ``If-None-Match: *`` may both succeed, the last one winning."""
    if_match, if_none = request.headers.get("If-Match"), request.headers.get("If-None-Match")
    if if_match is None and if_none is None:
        return
    try:
        info = await stat_object(ctx, bucket, key)
    except S3Error as err:
        if err.code != "NoSuchKey":
            raise
        if if_match is not None:
            raise
        return
    etag = (await store.load_meta(ctx.client, bucket, key, info)).etag
    if ((if_match is not None and if_match.strip() != "*" and etag not in _etags(if_match))
            or (if_none is not None and (if_none.strip() == "*" or etag in _etags(if_none)))):
        raise S3Error("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold")


async def upload(ctx: S3Context, path: str, source: AsyncIterator[bytes], size: int | None,
                 pack: bool = True) -> FileInfo:
    """``pack=False`` for a file whose chunks are to be shared later (a multipart upload's part)."""
    async with ctx.transfers:
        try:
            return await ctx.client.upload(path, source, overwrite=True, size=size, pack=pack)
        except IsADirectory:
            raise S3Error("InvalidRequest", 409, f"{path} is a directory here (it holds other keys), "
                          "so no object can have its name") from None


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(offset, length) of one ``bytes=`` range; None to send it all (as S3 does for bad syntax)."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            length = min(int(last), size)
            if length <= 0:
                raise S3Error("InvalidRange", 416, "The requested range is not satisfiable")
            return size - length, length
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size:
        raise S3Error("InvalidRange", 416, "The requested range is not satisfiable")
    if end < start:
        return None
    return start, min(end, size - 1) - start + 1


def _part_range(raw: str, meta: ObjectMeta, size: int) -> tuple[int, int]:
    """(offset, length) of part ``raw`` of an object: a single upload is its one part 1."""
    sizes = meta.part_sizes if meta.parts else [size]
    number = int(raw) if raw.isdigit() else 0
    if not 1 <= number <= 10000:
        raise invalid_argument("Part number must be an integer between 1 and 10000, inclusive")
    if number > len(sizes) or len(sizes) != max(meta.parts, 1):
        raise S3Error("InvalidPart", 400, f"The object has no part {number} (it has {max(meta.parts, 1)})")
    return sum(sizes[:number - 1]), sizes[number - 1]


def _http_time(value: str) -> float | None:
    try:
        parsed = email.utils.parsedate_tz(value)
        return None if parsed is None else float(email.utils.mktime_tz(parsed))
    except (TypeError, ValueError, OverflowError):
        return None


def check_conditions(headers: "web.BaseRequest.headers", etag: str, mtime: float, prefix: str = "") -> int:
    """0 to go on, 304 (not modified) or 412 (precondition failed), by RFC 7232's order."""
    modified = int(mtime)
    if_match = headers.get(f"{prefix}If-Match")
    if if_match is not None:
        if if_match.strip() != "*" and etag not in _etags(if_match):
            return 412
    else:
        since = _http_time(headers.get(f"{prefix}If-Unmodified-Since", ""))
        if since is not None and modified > since:
            return 412
    if_none = headers.get(f"{prefix}If-None-Match")
    if if_none is not None:
        if if_none.strip() == "*" or etag in _etags(if_none):
            return 304
    else:
        since = _http_time(headers.get(f"{prefix}If-Modified-Since", ""))
        if since is not None and modified <= since:
            return 304
    return 0


OVERRIDES = {"response-content-type": "Content-Type", "response-content-language": "Content-Language",
             "response-expires": "Expires", "response-cache-control": "Cache-Control",
             "response-content-disposition": "Content-Disposition",
             "response-content-encoding": "Content-Encoding"}


async def get_object(ctx: S3Context, request: web.Request, bucket: str, key: str) -> web.StreamResponse:
    info = await stat_object(ctx, bucket, key)
    meta = await store.load_meta(ctx.client, bucket, key, info)
    headers = object_headers(meta, info)
    headers.update({h: request.query[q] for q, h in OVERRIDES.items() if q in request.query})
    condition = check_conditions(request.headers, meta.etag, info.mtime)
    if condition == 412:
        raise S3Error("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold")
    if condition == 304:
        return web.Response(status=304, headers={"ETag": headers["ETag"], "Last-Modified": headers["Last-Modified"]})
    offset, length, status = 0, info.size, 200
    if "partNumber" in request.query:
        if "Range" in request.headers:
            raise invalid_argument("Cannot specify both Range header and partNumber query parameter")
        offset, length = _part_range(request.query["partNumber"], meta, info.size)
        if meta.parts:
            status = 206
            headers["Content-Range"] = f"bytes {offset}-{offset + length - 1}/{info.size}"
    elif "Range" in request.headers and info.size > 0:
        wanted = _parse_range(request.headers["Range"], info.size)
        if wanted is not None:
            offset, length = wanted
            status = 206
            headers["Content-Range"] = f"bytes {offset}-{offset + length - 1}/{info.size}"
    elif "Range" in request.headers and request.headers["Range"].startswith("bytes="):
        raise S3Error("InvalidRange", 416, "The requested range is not satisfiable")
    if request.method == "HEAD":
        return web.Response(status=status, headers={**headers, "Content-Length": str(length)})
    async with ctx.transfers:
        opened = await ctx.client.open(info.path, offset, length)
        pieces = ctx.client.download(info.path, offset, length, info=opened)
        return await send_file(request, status, headers, length, pieces)  # a client that stops reading is cut off


async def prune(ctx: S3Context, bucket: str, path: str) -> None:
    """Remove the directories a deleted key leaves empty, up to the bucket: S3 has no folders."""
    top = store.bucket_path(bucket)
    parent, _ = parent_and_name(path)
    while parent != top and parent.startswith(top + "/"):
        try:
            listing = await ctx.client.list(parent, False, 1)
            if listing.entries:
                return
            await ctx.client.delete(parent, False)
        except HerculesError:
            return
        parent, _ = parent_and_name(parent)


async def remove_object(ctx: S3Context, bucket: str, key: str) -> None:
    if key.endswith("/") and key.strip("/"):
        path = store.object_path(bucket, key.rstrip("/"))
        try:
            await ctx.client.delete(path, False)
        except HerculesError:
            return
    else:
        path = store.object_path(bucket, key)
        try:
            info = await ctx.client.stat(path)
        except NotFound:
            return
        if info.is_dir:
            return
        await store.drop(ctx.client, path)
        await store.drop(ctx.client, store.meta_path(bucket, key))
    await prune(ctx, bucket, path)


async def delete_object(ctx: S3Context, bucket: str, key: str) -> web.Response:
    await store.stat_bucket(ctx.client, bucket)
    await remove_object(ctx, bucket, key)
    return web.Response(status=204)


async def delete_objects(ctx: S3Context, request: web.Request, bucket: str,
                         allowed: Callable[[str], bool] = lambda key: True) -> web.Response:
    """DeleteObjects: each key deleted or answered with its error (AccessDenied outside ``allowed``)."""
    await store.stat_bucket(ctx.client, bucket)
    root = xmlio.parse(await read_small(request))
    quiet = (xmlio.child_text(root, "Quiet", "false") or "").strip().lower() == "true"
    objects = list(xmlio.children(root, "Object"))
    if len(objects) > MAX_DELETE:
        raise S3Error("MalformedXML", 400, f"at most {MAX_DELETE} keys may be deleted at once")
    result = xmlio.element("DeleteResult")
    for obj in objects:
        key = xmlio.child_text(obj, "Key") or ""
        try:
            if not allowed(key):
                raise S3Error("AccessDenied", 403, f"Access Denied: {key} is outside this key's scope")
            await remove_object(ctx, bucket, key)
        except (S3Error, HerculesError) as exc:
            err = exc if isinstance(exc, S3Error) else from_hercules(exc)
            result.append(xmlio.fields("Error", Key=key, Code=err.code, Message=err.message))
            continue
        if not quiet:
            result.append(xmlio.fields("Deleted", Key=key))
    return xmlio.response(result)


def copy_source(request: web.Request) -> tuple[str, str]:
    raw = unquote(request.headers["x-amz-copy-source"]).split("?versionId=")[0].lstrip("/")
    bucket, _, key = raw.partition("/")
    if not bucket or not key:
        raise invalid_argument("x-amz-copy-source must be bucket/key")
    return bucket, key


async def copy_object(ctx: S3Context, request: web.Request, bucket: str, key: str) -> web.Response:
    """Server side, copy-on-write: a snapshot of the source file renamed into place."""
    src_bucket, src_key = copy_source(request)
    await store.stat_bucket(ctx.client, bucket)
    src_info = await stat_object(ctx, src_bucket, src_key)
    src_meta = await store.load_meta(ctx.client, src_bucket, src_key, src_info)
    condition = check_conditions(request.headers, src_meta.etag, src_info.mtime, "x-amz-copy-source-")
    if condition:
        raise S3Error("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold")
    replace = request.headers.get("x-amz-metadata-directive", "COPY").upper() == "REPLACE"
    target = store.object_path(bucket, key)
    if target == src_info.path and not replace:
        raise S3Error("InvalidRequest", 400, "This copy request is illegal because it is trying to copy an "
                      "object to itself without changing the object's metadata, storage class, website "
                      "redirect location or encryption attributes.")
    if target == src_info.path:
        info = src_info
    else:
        temp = f"{store.SIDE}/tmp/{uuid.uuid4().hex}"
        await ctx.client.mkdir(f"{store.SIDE}/tmp")
        await ctx.client.snapshot(src_info.path, temp)
        try:
            await ctx.client.mkdir(parent_and_name(target)[0])
            await ctx.client.rename(temp, target, True)
        except BaseException:
            await store.drop(ctx.client, temp)
            raise
        info = await ctx.client.stat(target)
    if replace:
        content_type, user, kept = meta_from_headers(request)
    else:
        content_type, user, kept = src_meta.content_type, src_meta.user, src_meta.headers
    meta = ObjectMeta(etag=src_meta.etag, content_type=content_type, user=user, headers=kept,
                      file_id=info.file_id, size=info.size, parts=src_meta.parts)
    await store.save_meta(ctx.client, bucket, key, meta)
    return xmlio.response(xmlio.fields("CopyObjectResult", LastModified=xmlio.iso(info.mtime),
                                       ETag=f'"{meta.etag}"'))
