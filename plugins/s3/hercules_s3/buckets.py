"""Bucket operations: ListBuckets, Create/Delete/HeadBucket, GetBucketLocation, ListObjects v1 and v2."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from hercules_core.errors import AlreadyExists, NotFound
from hercules_core.messages import FileInfo
from hercules_s3 import store, xmlio
from hercules_s3.context import S3Context
from hercules_s3.errors import S3Error, invalid_argument
from hercules_s3.payload import read_small
from hercules_s3.store import ObjectMeta

EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"  # of no bytes: a folder marker's ETag

META_READS = 16  # sidecars read at once for one listing page
OWNER = {"ID": "hercules", "DisplayName": "hercules"}


async def list_buckets(ctx: S3Context, request: web.Request,
                       visible: Callable[[str], bool] = lambda bucket: True) -> web.Response:
    """The top-level directories ``visible`` keeps (a principal sees only the buckets in its scope),
    in name order, a page of ``max-buckets`` after the ``continuation-token`` (the last name sent)."""
    q = request.query
    after = _untoken(q["continuation-token"]) if "continuation-token" in q else ""
    page = _count(q, "max-buckets", 10000, 1)
    listing = await ctx.client.list("/")
    names = sorted(e.path.lstrip("/") for e in listing.entries
                   if e.is_dir and not e.path.startswith("/.") and visible(e.path.lstrip("/")))
    created = {e.path.lstrip("/"): e.ctime for e in listing.entries}
    names = [name for name in names if name > after]
    root = xmlio.element("ListAllMyBucketsResult", xmlio.fields("Owner", **OWNER), xmlio.element("Buckets", *(
        xmlio.fields("Bucket", Name=name, CreationDate=xmlio.iso(created[name])) for name in names[:page])))
    if len(names) > page:
        root.append(xmlio.element("ContinuationToken", text=_token(names[page - 1])))
    return xmlio.response(root)


async def create_bucket(ctx: S3Context, request: web.Request, bucket: str) -> web.Response:
    store.check_bucket_name(bucket)
    body = await read_small(request)
    if body.strip():
        xmlio.parse(body)  # a CreateBucketConfiguration: any region is this one
    try:
        info = await ctx.client.stat(store.bucket_path(bucket))
    except NotFound:
        info = None
    if info is not None:
        raise S3Error("BucketAlreadyOwnedByYou", 409, "Your previous request to create the named bucket "
                      "succeeded and you already own it.", f"/{bucket}")
    try:
        await ctx.client.mkdir(store.bucket_path(bucket))
    except AlreadyExists:
        raise S3Error("BucketAlreadyExists", 409, "The requested bucket name is not available.") from None
    return web.Response(headers={"Location": f"/{bucket}"})


async def delete_bucket(ctx: S3Context, bucket: str) -> web.Response:
    await store.stat_bucket(ctx.client, bucket)
    if await _files(ctx, bucket, "", limit=1):
        raise S3Error("BucketNotEmpty", 409, "The bucket you tried to delete is not empty", f"/{bucket}")
    await ctx.client.delete(store.bucket_path(bucket), True)
    for upload_id, _ in await _uploads_of(ctx, bucket):  # as S3 does, unfinished uploads go with it
        await store.drop(ctx.client, f"{store.UPLOADS}/{upload_id}", True)
    await store.drop(ctx.client, f"{store.META}/{bucket}", True)
    return web.Response(status=204)


async def _uploads_of(ctx: S3Context, bucket: str) -> list[Any]:
    from hercules_s3.multipart import uploads_in  # the multipart module lists its own tree

    return await uploads_in(ctx, bucket)


async def head_bucket(ctx: S3Context, bucket: str) -> web.Response:
    await store.stat_bucket(ctx.client, bucket)
    return web.Response(headers={"x-amz-bucket-region": ctx.region})


async def bucket_location(ctx: S3Context, bucket: str) -> web.Response:
    await store.stat_bucket(ctx.client, bucket)
    root = xmlio.element("LocationConstraint", text=None if ctx.region == "us-east-1" else ctx.region)
    return xmlio.response(root)


async def _files(ctx: S3Context, bucket: str, prefix: str, limit: int = 0) -> list[tuple[str, FileInfo]]:
    """Every (key, file) of the bucket whose key starts with ``prefix``, in key order; an empty
    directory is the folder marker ``dir/`` (a zero-byte ``dir/`` object made it, or a REST mkdir)."""
    top = store.bucket_path(bucket)
    folder = prefix.rpartition("/")[0].strip("/")
    start = f"{top}/{folder}" if folder and all(p not in ("", ".", "..") for p in folder.split("/")) else top
    try:
        listing = await ctx.client.list(start, True, limit) if limit else await ctx.client.list(start, True)
    except NotFound:
        if start == top:
            raise
        return []
    if start != top and not listing.entries and prefix == f"{folder}/":  # the folder itself: its marker
        return [(prefix, await ctx.client.stat(start))]
    parents = {e.path.rpartition("/")[0] for e in listing.entries}
    keys = [(e.path[len(top) + 1:] + ("/" if e.is_dir else ""), e) for e in listing.entries
            if not e.is_dir or e.path not in parents]
    return sorted((k, e) for k, e in keys if k.startswith(prefix))


async def _meta(ctx: S3Context, bucket: str, key: str, info: FileInfo, limit: asyncio.Semaphore) -> Any:
    if info.is_dir:  # a folder marker: the empty object's ETag
        return ObjectMeta(etag=EMPTY_MD5)
    async with limit:
        return await store.load_meta(ctx.client, bucket, key, info)


def _token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def _untoken(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise invalid_argument("The continuation token provided is incorrect") from None


def _count(query: Any, name: str, most: int, least: int = 0) -> int:
    """A page size from the query (``max-keys``, ``max-buckets``): at least ``least``, at most ``most``."""
    raw = query.get(name, str(most))
    try:
        value = int(raw)
    except ValueError:
        raise invalid_argument(f"{name} must be an integer, not {raw[:40]!r}") from None
    if value < least:
        raise invalid_argument(f"{name} must be at least {least}")
    return min(value, most)


async def list_objects(ctx: S3Context, request: web.Request, bucket: str, version: int) -> web.Response:
    """ListObjects ``version`` 1 or 2, or 0 for ListObjectVersions (each key its one "null" version).

    One page of keys after a marker; with a delimiter, keys sharing the part before it are one
    CommonPrefixes entry (a directory's whole subtree collapses into one)."""
    await store.stat_bucket(ctx.client, bucket)
    limit = asyncio.Semaphore(META_READS)
    q = request.query
    prefix, delimiter, max_keys = q.get("prefix", ""), q.get("delimiter", ""), _count(q, "max-keys", 1000)
    if delimiter and q.get("allow-unordered") == "true":  # Ceph's extension: listings are ordered here anyway
        raise invalid_argument("allow-unordered cannot be used with a delimiter")
    url = q.get("encoding-type") == "url"
    if version == 2:
        marker = _untoken(q["continuation-token"]) if "continuation-token" in q else q.get("start-after", "")
    else:
        marker = q.get("key-marker" if version == 0 else "marker", "")
    contents, prefixes, truncated, last = [], [], False, ""
    for key, info in await _files(ctx, bucket, prefix):
        if key <= marker or (marker.endswith(delimiter) and delimiter and key.startswith(marker)):
            continue
        rest = key[len(prefix):]
        common = prefix + rest[:rest.index(delimiter) + len(delimiter)] if delimiter and delimiter in rest else None
        if common is not None and prefixes and prefixes[-1] == common:
            continue
        if len(contents) + len(prefixes) >= max_keys:
            truncated = max_keys > 0  # as S3 answers max-keys=0: nothing, and not truncated
            break
        if common is not None:
            prefixes.append(common)
            last = common
        else:
            contents.append((key, info))
            last = key
    enc = (lambda s: quote(s, safe="/~")) if url else (lambda s: s)
    root = xmlio.element("ListVersionsResult" if version == 0 else "ListBucketResult")
    # v1's Prefix is never encoded (clients do not decode it: botocore, as S3 answers)
    root.extend([xmlio.element("Name", text=bucket),
                 xmlio.element("Prefix", text=prefix if version == 1 else enc(prefix))])
    if version == 2:
        root.append(xmlio.element("KeyCount", text=len(contents) + len(prefixes)))
        if "continuation-token" in q:
            root.append(xmlio.element("ContinuationToken", text=q["continuation-token"]))
        if "start-after" in q:
            root.append(xmlio.element("StartAfter", text=enc(q["start-after"])))
        if truncated:
            root.append(xmlio.element("NextContinuationToken", text=_token(last)))
    elif version == 0:
        root.extend([xmlio.element("KeyMarker", text=enc(marker)), xmlio.element("VersionIdMarker", text="")])
        if truncated:
            root.extend([xmlio.element("NextKeyMarker", text=enc(last)),
                         xmlio.element("NextVersionIdMarker", text="null")])
    else:
        root.append(xmlio.element("Marker", text=enc(marker)))
        if truncated:
            root.append(xmlio.element("NextMarker", text=enc(last)))
    root.append(xmlio.element("MaxKeys", text=max_keys))
    if delimiter:
        root.append(xmlio.element("Delimiter", text=enc(delimiter)))
    if url:
        root.append(xmlio.element("EncodingType", text="url"))
    root.append(xmlio.element("IsTruncated", text=truncated))
    owner = version != 2 or q.get("fetch-owner") == "true"
    metas = await asyncio.gather(*(_meta(ctx, bucket, key, info, limit) for key, info in contents))
    for (key, info), meta in zip(contents, metas):
        versioned = {"VersionId": "null", "IsLatest": True} if version == 0 else {}
        item = xmlio.fields("Version" if version == 0 else "Contents", Key=enc(key), **versioned,
                            LastModified=xmlio.iso(info.mtime), ETag=f'"{meta.etag}"', Size=info.size,
                            StorageClass="STANDARD")
        if owner:
            item.append(xmlio.fields("Owner", **OWNER))
        root.append(item)
    for common in prefixes:
        root.append(xmlio.fields("CommonPrefixes", Prefix=enc(common)))
    return xmlio.response(root)
