"""Where S3 things live in the namespace: a bucket is a top-level directory, a key a path
below it; what a file cannot hold (ETag, Content-Type, ``x-amz-meta-*``) is a JSON sidecar
under ``/.s3/meta``, trusted only while it names the same file (id and size) it was made for."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import attrs

from hercules_core.errors import HerculesError, NotFound
from hercules_core.messages import FileInfo
from hercules_s3.errors import S3Error, no_such_bucket

SIDE = "/.s3"  # the S3 layer's own tree: object metadata and multipart uploads in progress
META = f"{SIDE}/meta"
UPLOADS = f"{SIDE}/multipart"
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


def check_bucket_name(bucket: str) -> None:
    if (not BUCKET_NAME.match(bucket) or any(s in bucket for s in ("..", ".-", "-."))
            or re.match(r"^\d+\.\d+\.\d+\.\d+$", bucket)):
        raise S3Error("InvalidBucketName", 400, "The specified bucket is not valid.", f"/{bucket}")


def bucket_path(bucket: str) -> str:
    if not bucket or bucket.startswith(".") or "/" in bucket:
        raise no_such_bucket(bucket)
    return f"/{bucket}"


def object_path(bucket: str, key: str) -> str:
    """``/bucket/key``; a key that is no path (empty segments, ``.``, ``..``, NUL) is refused."""
    parts = key.split("/")
    if not key or "\x00" in key or any(p in ("", ".", "..") for p in parts) or len(key.encode()) > 1024:
        raise S3Error("InvalidArgument", 400, f"key {key!r} is not supported: keys are paths here, so "
                      "they may not be empty, start or end with '/', hold '//', '.' or '..' segments or NUL",
                      f"/{bucket}/{key}")
    return f"{bucket_path(bucket)}/{key}"


def meta_path(bucket: str, key: str) -> str:
    return f"{META}/{bucket}/{key}"


@attrs.frozen
class ObjectMeta:
    etag: str  # without quotes
    content_type: str = "binary/octet-stream"
    user: dict[str, str] = attrs.field(factory=dict)  # x-amz-meta-* without the prefix
    headers: dict[str, str] = attrs.field(factory=dict)  # Cache-Control, Content-Disposition...
    file_id: int = 0
    size: int = 0
    parts: int = 0  # a multipart object's part count
    part_sizes: list[int] = attrs.field(factory=list)  # and each part's size, for GetObject's partNumber


STORED_HEADERS = ("Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Expires")


def fallback_meta(info: FileInfo) -> ObjectMeta:
    """A file written by another API: a stable ETag of its identity, size and time."""
    tag = hashlib.md5(f"{info.file_id}:{info.size}:{info.mtime}".encode()).hexdigest()
    return ObjectMeta(etag=tag, file_id=info.file_id, size=info.size)


async def read_json(client: Any, path: str) -> dict[str, Any] | None:
    try:
        return json.loads(await client.read(path))
    except (HerculesError, ValueError):
        return None


async def write_json(client: Any, path: str, value: dict[str, Any]) -> None:
    await client.upload(path, json.dumps(value).encode(), overwrite=True)


async def load_meta(client: Any, bucket: str, key: str, info: FileInfo) -> ObjectMeta:
    raw = await read_json(client, meta_path(bucket, key))
    if raw is not None:
        try:
            meta = ObjectMeta(**raw)
        except TypeError:
            meta = None
        if meta is not None and meta.file_id == info.file_id and meta.size == info.size:
            return meta
    return fallback_meta(info)


async def save_meta(client: Any, bucket: str, key: str, meta: ObjectMeta) -> None:
    await write_json(client, meta_path(bucket, key), attrs.asdict(meta))


async def drop(client: Any, path: str, recursive: bool = False) -> None:
    try:
        await client.delete(path, recursive)
    except NotFound:
        pass


async def stat_bucket(client: Any, bucket: str) -> FileInfo:
    try:
        info = await client.stat(bucket_path(bucket))
    except NotFound:
        raise no_such_bucket(bucket) from None
    if not info.is_dir:
        raise no_such_bucket(bucket)
    return info
