"""Multipart upload: each upload is a directory under ``/.s3/multipart`` holding its parts as
files (streamed in, bounded memory) and a JSON record. Complete makes the object of the parts,
in order, published atomically: by sharing their chunks (the master's compose, no byte moves)
when every part but the last is a whole number of chunks long, else by streaming them into it.
The ETag is S3's ``md5-of-md5s-N`` either way.

A part's bytes go to a file of their own name, and its record (``00001.json``) names the file:
a part sent again, even while the first is still arriving, replaces it when its record is
written, so the bytes Complete uses are always those the record's ETag is of. A completed
upload leaves a marker under ``/.s3/completed`` for a day, so that a client retrying its
Complete (the answer was lost) gets the same answer, as from S3."""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from hercules_core.errors import InvalidArgument, IsADirectory, NotFound
from hercules_core.messages import FileInfo
from hercules_s3 import store, xmlio
from hercules_s3.context import S3Context
from hercules_s3.errors import S3Error, invalid_argument
from hercules_s3.objects import copy_source, meta_from_headers, stat_object, upload
from hercules_s3.payload import Body, read_small
from hercules_s3.sigv4 import Signed
from hercules_s3.store import ObjectMeta

MIN_PART = 5 << 20  # every part but the last, as S3 requires
MAX_PART_NUMBER = 10000
COMPLETED = f"{store.SIDE}/completed"  # one marker per upload completed within KEEP_COMPLETED
KEEP_COMPLETED = 86400.0  # seconds a completed upload still answers a retried Complete
SWEEP_PAGE = 16  # markers a Complete looks at for expiry (the oldest-started first)
COPY_RANGE = re.compile(r"bytes=([0-9]+)-([0-9]+)")


def _no_such_upload(upload_id: str) -> S3Error:
    return S3Error("NoSuchUpload", 404, "The specified upload does not exist. The upload ID may be invalid, "
                   "or the upload may have been aborted or completed.", upload_id)


def _dir(upload_id: str) -> str:
    if not upload_id or not upload_id.isalnum():
        raise _no_such_upload(upload_id)
    return f"{store.UPLOADS}/{upload_id}"


def _record_path(upload_id: str, number: int) -> str:
    return f"{_dir(upload_id)}/{number:05d}.json"


def _marker_path(upload_id: str) -> str:
    _dir(upload_id)  # the same check of the id
    return f"{COMPLETED}/{upload_id}"


async def _record(ctx: S3Context, bucket: str, key: str, upload_id: str) -> dict[str, Any]:
    record = await store.read_json(ctx.client, f"{_dir(upload_id)}/upload.json")
    if record is None or record.get("bucket") != bucket or record.get("key") != key:
        raise _no_such_upload(upload_id)
    return record


def _part_number(request: web.Request) -> int:
    raw = request.query.get("partNumber", "")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PART_NUMBER:
        raise invalid_argument(f"Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive")
    return int(raw)


async def create(ctx: S3Context, request: web.Request, bucket: str, key: str) -> web.Response:
    await store.stat_bucket(ctx.client, bucket)
    store.object_path(bucket, key)
    upload_id = f"{time.time_ns():x}{uuid.uuid4().hex}"
    content_type, user, kept = meta_from_headers(request)
    await store.write_json(ctx.client, f"{_dir(upload_id)}/upload.json", {
        "bucket": bucket, "key": key, "initiated": time.time(), "content_type": content_type,
        "user": user, "headers": kept})
    return xmlio.response(xmlio.fields("InitiateMultipartUploadResult", Bucket=bucket, Key=key,
                                       UploadId=upload_id))


async def _save_part(ctx: S3Context, upload_id: str, number: int, source: AsyncIterator[bytes],
                     size: int | None, md5: Any) -> str:
    """The part's bytes under a name of their own, then the record naming them: the last record
    written wins, and the file it replaced goes (one a race leaves behind goes with the upload)."""
    path = f"{_dir(upload_id)}/{number:05d}.{time.time_ns():x}{uuid.uuid4().hex[:8]}"
    info = await upload(ctx, path, source, size, pack=False)  # a packed part has no chunk to share
    etag = md5()
    before = await store.read_json(ctx.client, _record_path(upload_id, number))
    await store.write_json(ctx.client, _record_path(upload_id, number), {
        "etag": etag, "size": info.size, "file_id": info.file_id, "modified": info.mtime, "path": path})
    if before is not None and before.get("path") not in (None, path):
        await store.drop(ctx.client, before["path"])
    return etag


async def upload_part(ctx: S3Context, request: web.Request, bucket: str, key: str,
                      signed: Signed | None) -> web.Response:
    upload_id = request.query["uploadId"]
    number = _part_number(request)
    await _record(ctx, bucket, key, upload_id)
    body = Body(request, signed)
    etag = await _save_part(ctx, upload_id, number, body.pieces(), body.declared_size, lambda: body.md5)
    return web.Response(headers={"ETag": f'"{etag}"'})


async def upload_part_copy(ctx: S3Context, request: web.Request, bucket: str, key: str) -> web.Response:
    upload_id = request.query["uploadId"]
    number = _part_number(request)
    await _record(ctx, bucket, key, upload_id)
    src_bucket, src_key = copy_source(request)
    info = await stat_object(ctx, src_bucket, src_key)
    offset, length = 0, info.size
    spec = request.headers.get("x-amz-copy-source-range")
    if spec is not None:
        offset, length = _copy_range(spec, info.size)
    digest = hashlib.md5()

    async def pieces() -> AsyncIterator[bytes]:
        async for piece in ctx.client.download(info.path, offset, length):
            digest.update(piece)
            yield bytes(piece)

    etag = await _save_part(ctx, upload_id, number, pieces(), length, digest.hexdigest)
    return xmlio.response(xmlio.fields("CopyPartResult", LastModified=xmlio.iso(time.time()), ETag=f'"{etag}"'))


def _copy_range(spec: str, size: int) -> tuple[int, int]:
    """(offset, length) of ``bytes=first-last``: S3's one form, no suffix, open or multiple range."""
    found = COPY_RANGE.fullmatch(spec)
    if found is None or int(found[1]) > int(found[2]):
        raise invalid_argument("The x-amz-copy-source-range value must be of the form bytes=first-last "
                               "where first and last are the zero-based offsets of the first and last "
                               "bytes to copy")
    first, last = int(found[1]), int(found[2])
    if last >= size:
        raise S3Error("InvalidRange", 416, f"The requested range is not satisfiable: the source is {size} bytes")
    return first, last - first + 1


async def _parts(ctx: S3Context, upload_id: str) -> dict[int, dict[str, Any]]:
    try:
        listing = await ctx.client.list(_dir(upload_id))
    except NotFound:
        raise _no_such_upload(upload_id) from None
    parts: dict[int, dict[str, Any]] = {}
    for entry in listing.entries:
        name = entry.path.rsplit("/", 1)[1]
        if name.endswith(".json") and name[:-5].isdigit():
            record = await store.read_json(ctx.client, entry.path)
            if record is not None:  # a record from before parts had names of their own: 00001
                record.setdefault("path", entry.path.removesuffix(".json"))
                parts[int(name[:-5])] = record
    return parts


async def _assemble(ctx: S3Context, upload_id: str, parts: list[str], sizes: list[int], path: str) -> FileInfo:
    """The parts (their files), in order, as the object at ``path``: their chunks shared into it
    when every part but the last fills whole chunks (the master checks again, in the commit, and
    refuses otherwise), else their bytes streamed into it."""
    chunk = ctx.client.chunk_size
    if not chunk or all(size % chunk == 0 for size in sizes[:-1]):
        try:
            return await ctx.client.compose(path, parts, remove_sources=True, overwrite=True)
        except InvalidArgument:  # not aligned after all (a part replaced meanwhile): copy
            pass
        except IsADirectory:
            raise S3Error("InvalidRequest", 409, f"{path} is a directory here (it holds other keys), "
                          "so no object can have its name") from None
        except NotFound:  # completed or aborted meanwhile
            raise _no_such_upload(upload_id) from None

    async def assembled() -> AsyncIterator[bytes]:
        for part in parts:
            async for piece in ctx.client.download(part):
                yield bytes(piece)

    return await upload(ctx, path, assembled(), sum(sizes))


def _wanted(body: bytes) -> list[tuple[int, str]]:
    """The (part number, ETag) pairs a Complete names, in ascending order; a number listed twice
    in a row is its last entry (as RGW reads the list), a number lower than the one before is
    ``InvalidPartOrder``."""
    wanted: list[tuple[int, str]] = []
    for element in xmlio.children(xmlio.parse(body), "Part"):
        raw = xmlio.child_text(element, "PartNumber", "") or ""
        pair = (int(raw) if raw.isdigit() else -1, (xmlio.child_text(element, "ETag", "") or "").strip('"'))
        if wanted and pair[0] < wanted[-1][0]:
            raise S3Error("InvalidPartOrder", 400, "The list of parts was not in ascending order.")
        if wanted and pair[0] == wanted[-1][0]:
            wanted.pop()
        wanted.append(pair)
    if not wanted:
        raise S3Error("MalformedXML", 400, "a CompleteMultipartUpload needs at least one part")
    return wanted


def _invalid_part() -> S3Error:
    return S3Error("InvalidPart", 400, "One or more of the specified parts could not be found. The part "
                   "may not have been uploaded, or the specified entity tag may not match the part's.")


def _completed_answer(bucket: str, key: str, etag: str) -> web.Response:
    return xmlio.response(xmlio.fields("CompleteMultipartUploadResult", Location=f"/{bucket}/{key}",
                                       Bucket=bucket, Key=key, ETag=f'"{etag}"'))


async def _completed(ctx: S3Context, upload_id: str) -> dict[str, Any] | None:
    """The marker of ``upload_id`` if it completed within ``KEEP_COMPLETED``."""
    marker = await store.read_json(ctx.client, _marker_path(upload_id))
    if marker is None or marker.get("completed", 0) < time.time() - KEEP_COMPLETED:
        return None
    return marker


def _started(upload_id: str) -> float:
    """When the upload was created: its id begins with the time in hex nanoseconds (``create``)."""
    try:
        return int(upload_id[:-32], 16) / 1e9
    except ValueError:
        return 0.0


async def _sweep_completed(ctx: S3Context) -> None:
    """Drop expired markers among the oldest-started few: each Complete sweeps a page, so the
    markers stay about as many as the uploads completed in a day. Only a marker of an upload
    started over a day ago can have expired, so younger ones cost no read."""
    try:
        listing = await ctx.client.list(COMPLETED, limit=SWEEP_PAGE)
    except NotFound:
        return
    cutoff = time.time() - KEEP_COMPLETED
    for entry in listing.entries:
        if _started(entry.path.rsplit("/", 1)[1]) >= cutoff:
            continue
        marker = await store.read_json(ctx.client, entry.path)
        if marker is None or marker.get("completed", 0) < cutoff:
            await store.drop(ctx.client, entry.path)


async def _answer_again(ctx: S3Context, upload_id: str, bucket: str, key: str,
                        wanted: list[tuple[int, str]]) -> web.Response:
    """A Complete of an upload already completed: the first answer again if it names the same
    parts (a client's retry), else S3's refusal."""
    marker = await _completed(ctx, upload_id)
    if marker is None or marker.get("bucket") != bucket or marker.get("key") != key:
        raise _no_such_upload(upload_id)
    if [list(pair) for pair in wanted] != marker.get("parts"):
        raise _invalid_part()
    return _completed_answer(bucket, key, marker["etag"])


async def complete(ctx: S3Context, request: web.Request, bucket: str, key: str) -> web.Response:
    upload_id = request.query["uploadId"]
    _dir(upload_id)
    wanted = _wanted(await read_small(request))
    try:
        record = await _record(ctx, bucket, key, upload_id)
        stored = await _parts(ctx, upload_id)
    except S3Error as error:
        if error.code != "NoSuchUpload":
            raise
        return await _answer_again(ctx, upload_id, bucket, key, wanted)
    for number, etag in wanted:
        if number not in stored or stored[number]["etag"] != etag:
            raise _invalid_part()
    numbers = [number for number, _ in wanted]
    for number in numbers[:-1]:
        if stored[number]["size"] < MIN_PART:
            raise S3Error("EntityTooSmall", 400, "Your proposed upload is smaller than the minimum allowed size")
    sizes = [stored[n]["size"] for n in numbers]
    try:
        info = await _assemble(ctx, upload_id, [stored[n]["path"] for n in numbers], sizes,
                               store.object_path(bucket, key))
    except S3Error as error:  # a retry raced this Complete and won
        if error.code != "NoSuchUpload":
            raise
        return await _answer_again(ctx, upload_id, bucket, key, wanted)
    etag = hashlib.md5(b"".join(bytes.fromhex(stored[n]["etag"]) for n in numbers)).hexdigest() + f"-{len(numbers)}"
    meta = ObjectMeta(etag=etag, content_type=record["content_type"], user=record["user"],
                      headers=record["headers"], file_id=info.file_id, size=info.size, parts=len(numbers),
                      part_sizes=sizes)
    await store.save_meta(ctx.client, bucket, key, meta)
    await store.write_json(ctx.client, _marker_path(upload_id), {
        "bucket": bucket, "key": key, "etag": etag, "parts": [list(pair) for pair in wanted],
        "completed": time.time()})
    await store.drop(ctx.client, _dir(upload_id), True)
    await _sweep_completed(ctx)
    return _completed_answer(bucket, key, etag)


async def abort(ctx: S3Context, request: web.Request, bucket: str, key: str) -> web.Response:
    upload_id = request.query["uploadId"]
    await _record(ctx, bucket, key, upload_id)
    await store.drop(ctx.client, _dir(upload_id), True)
    return web.Response(status=204)


async def list_parts(ctx: S3Context, request: web.Request, bucket: str, key: str) -> web.Response:
    upload_id = request.query["uploadId"]
    await _record(ctx, bucket, key, upload_id)
    raw_max, raw_marker = request.query.get("max-parts", "1000"), request.query.get("part-number-marker", "0")
    if not raw_max.isdigit() or not raw_marker.isdigit():
        raise invalid_argument("max-parts and part-number-marker must be integers")
    max_parts, marker = min(int(raw_max), 1000), int(raw_marker)
    stored = await _parts(ctx, upload_id)
    numbers = sorted(n for n in stored if n > marker)
    page, truncated = numbers[:max_parts], len(numbers) > max_parts
    root = xmlio.fields("ListPartsResult", Bucket=bucket, Key=key, UploadId=upload_id,
                        PartNumberMarker=marker, NextPartNumberMarker=page[-1] if page else marker,
                        MaxParts=max_parts, IsTruncated=truncated, StorageClass="STANDARD")
    for n in page:
        root.append(xmlio.fields("Part", PartNumber=n, LastModified=xmlio.iso(stored[n].get("modified", 0)),
                                 ETag=f'"{stored[n]["etag"]}"', Size=stored[n]["size"]))
    return xmlio.response(root)


async def uploads_in(ctx: S3Context, bucket: str) -> list[tuple[str, dict[str, Any]]]:
    """(upload id, record) of every upload in progress into ``bucket``, oldest first."""
    try:
        listing = await ctx.client.list(store.UPLOADS)
    except NotFound:
        return []
    found = []
    for entry in sorted(listing.entries, key=lambda e: e.path):
        upload_id = entry.path.rsplit("/", 1)[1]
        record = await store.read_json(ctx.client, f"{entry.path}/upload.json")
        if record is not None and record.get("bucket") == bucket:
            found.append((upload_id, record))
    return found


async def list_uploads(ctx: S3Context, request: web.Request, bucket: str) -> web.Response:
    await store.stat_bucket(ctx.client, bucket)
    prefix = request.query.get("prefix", "")
    root = xmlio.fields("ListMultipartUploadsResult", Bucket=bucket, KeyMarker="", UploadIdMarker="",
                        Prefix=prefix, MaxUploads=1000, IsTruncated=False)
    for upload_id, record in await uploads_in(ctx, bucket):
        if record["key"].startswith(prefix):
            root.append(xmlio.fields("Upload", Key=record["key"], UploadId=upload_id,
                                     Initiated=xmlio.iso(record["initiated"]), StorageClass="STANDARD"))
    return xmlio.response(root)
