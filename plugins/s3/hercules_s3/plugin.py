"""Route set ``s3``: the S3 API on the gateway's second port (``HERCULES_S3_ADDR``, 8333).

Its settings (``SETTINGS``) are read as ``HERCULES_ROUTES_S3_<NAME>`` or the shorter
``HERCULES_S3_<NAME>``: a key pair requests may be signed with (beside the S3 keys of the
gateway's principals, ``HERCULES_AUTH_FILE``, see ``access``; neither: any request is accepted, and
a warning says so), the region, and the host names under which
``bucket.<domain>`` is virtual-host style addressing.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from urllib.parse import unquote

from aiohttp import web

from hercules_core.plugins import hookimpl
from hercules_core.plugins.types import GatewayContext, RouteSetSpec, SettingSpec
from hercules_core.gateway.auth import Principal, credentials
from hercules_core.gateway.limits import REFUSAL_KEY
from hercules_s3 import access, buckets, multipart, objects, sigv4
from hercules_s3.context import S3Context
from hercules_s3.errors import S3Error, refusal, s3_errors

log = logging.getLogger(__name__)
DEFAULT_ADDR = "8333"
# Sub-resources of features not offered: answered 501 NotImplemented rather than misread as a listing.
UNSUPPORTED = ("acl", "versioning", "policy", "lifecycle", "cors", "website", "tagging", "logging",
               "notification", "replication", "encryption", "object-lock", "retention", "legal-hold",
               "accelerate", "requestPayment", "analytics", "inventory", "metrics", "intelligent-tiering",
               "ownershipControls", "publicAccessBlock", "policyStatus", "restore", "select", "torrent",
               "attributes")


SETTINGS = (
    SettingSpec("access_key", str, "", "access key id requests must be signed with (none: no signing)",
                env_aliases=("HERCULES_S3_ACCESS_KEY",)),
    SettingSpec("secret_key", str, "", "its secret key", env_aliases=("HERCULES_S3_SECRET_KEY",)),
    SettingSpec("region", str, "us-east-1", "the region reported and signed for",
                env_aliases=("HERCULES_S3_REGION",)),
    SettingSpec("domains", str, "localhost", "comma-separated hosts whose sub-domains name buckets",
                env_aliases=("HERCULES_S3_DOMAINS",)),
)


def settings_keys(options: dict[str, object]) -> sigv4.Keys | None:
    access, secret = str(options.get("access_key", "")), str(options.get("secret_key", ""))
    return sigv4.Keys(access, secret) if access and secret else None


def split_target(request: web.Request, domains: tuple[str, ...]) -> tuple[str, str]:
    """(bucket, key) from virtual-host style (``bucket.domain``) or path style (``/bucket/key``)."""
    host = request.host.rsplit(":", 1)[0] if not request.host.startswith("[") else ""
    path = unquote(request.raw_path.split("?", 1)[0])
    for domain in domains:
        if host.endswith("." + domain):
            return host[: -len(domain) - 1], path[1:]
    bucket, _, key = path[1:].partition("/")
    return bucket, key


def preflight(request: web.Request) -> web.Response:
    """S3's answers to a CORS preflight (``OPTIONS``), for a bucket without CORS configuration."""
    if "Origin" not in request.headers or "Access-Control-Request-Method" not in request.headers:
        raise S3Error("BadRequest", 400, "Insufficient information. Origin request header needed.")
    raise S3Error("CORSResponse", 403, "CORS is not enabled for this bucket.")


class S3Api:
    def __init__(self, ctx: S3Context) -> None:
        self.ctx = ctx

    def authenticate(self, request: web.Request) -> tuple[sigv4.Signed | None, Principal | None]:
        """The verified signature and its principal (``None``: the settings' key pair, or no keys at all)."""
        if not self.ctx.keys.enabled:
            return None, None
        found: list[Principal | None] = []

        def lookup(access_key: str) -> sigv4.Keys | None:
            entry = self.ctx.keys.lookup(access_key)
            found.append(entry[1] if entry else None)
            return entry[0] if entry else None

        raw_path, _, raw_query = request.raw_path.partition("?")
        signed = sigv4.verify(request.method, raw_path, raw_query, request.headers, lookup)
        access.check_rate(self.ctx.keys, found[-1])
        return signed, found[-1]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":  # a CORS preflight: never signed, and no bucket has CORS rules here
            return preflight(request)
        signed, principal = self.authenticate(request)
        bucket, key = split_target(request, self.ctx.domains)
        q, method, ctx = request.query, request.method, self.ctx
        copying = method == "PUT" and bool(key) and "x-amz-copy-source" in request.headers
        access.authorize(principal, request, bucket, key, objects.copy_source(request) if copying else None)
        unsupported = [name for name in UNSUPPORTED if name in q]
        if unsupported:
            raise S3Error("NotImplemented", 501, f"?{unsupported[0]} is not offered by Hercules' S3 API")
        if not bucket:
            if method == "GET":
                return await buckets.list_buckets(ctx, request, access.visible_bucket(principal))
        elif not key:
            if method == "PUT":
                return await buckets.create_bucket(ctx, request, bucket)
            if method == "DELETE":
                return await buckets.delete_bucket(ctx, bucket)
            if method == "HEAD":
                return await buckets.head_bucket(ctx, bucket)
            if method == "POST" and "delete" in q:
                return await objects.delete_objects(ctx, request, bucket, access.deletable(principal, bucket))
            if method == "GET":
                if "location" in q:
                    return await buckets.bucket_location(ctx, bucket)
                if "uploads" in q:
                    return await multipart.list_uploads(ctx, request, bucket)
                if "versions" in q:
                    return await buckets.list_objects(ctx, request, bucket, 0)
                return await buckets.list_objects(ctx, request, bucket, 2 if q.get("list-type") == "2" else 1)
        elif "uploadId" in q:
            if method == "PUT" and "x-amz-copy-source" in request.headers:
                return await multipart.upload_part_copy(ctx, request, bucket, key)
            if method == "PUT":
                return await multipart.upload_part(ctx, request, bucket, key, signed)
            if method == "POST":
                return await multipart.complete(ctx, request, bucket, key)
            if method == "DELETE":
                return await multipart.abort(ctx, request, bucket, key)
            if method == "GET":
                return await multipart.list_parts(ctx, request, bucket, key)
        else:
            if method == "PUT" and "x-amz-copy-source" in request.headers:
                return await objects.copy_object(ctx, request, bucket, key)
            if method == "PUT":
                return await objects.put_object(ctx, request, bucket, key, signed)
            if method in ("GET", "HEAD"):
                return await objects.get_object(ctx, request, bucket, key)
            if method == "DELETE":
                return await objects.delete_object(ctx, bucket, key)
            if method == "POST" and "uploads" in q:
                return await multipart.create(ctx, request, bucket, key)
        raise S3Error("MethodNotAllowed", 405, "The specified method is not allowed against this resource.")


def register(app: web.Application, gateway: GatewayContext) -> None:
    options = {**{s.name: s.default for s in SETTINGS}, **gateway.options}
    keys = access.KeyRing(settings_keys(options), credentials(gateway))
    if not keys.enabled:
        log.warning("S3 API: neither HERCULES_S3_ACCESS_KEY and HERCULES_S3_SECRET_KEY nor HERCULES_AUTH_FILE "
                    "is set, so every request is accepted unsigned: anyone who reaches the port can read and write")
    domains = tuple(d.strip() for d in str(options["domains"]).split(",") if d.strip())
    ctx = S3Context(client=gateway.client, keys=keys, region=str(options["region"]),
                    domains=domains, transfers=asyncio.Semaphore(gateway.config.gateway_max_inflight))
    app.middlewares.append(s3_errors)
    app[REFUSAL_KEY] = refusal  # the listener's own refusals (bad request line, 431...) as S3's XML too
    app.router.add_route("*", "/{tail:.*}", S3Api(ctx).handle)


@hookimpl
def hercules_gateway_routes() -> Iterator[RouteSetSpec]:
    yield RouteSetSpec(name="s3", register=register, listen=os.environ.get("HERCULES_S3_ADDR", DEFAULT_ADDR), settings=SETTINGS,
                       description="S3-compatible API (buckets are top-level directories) on its own port")
