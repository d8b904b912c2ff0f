"""Who signed an S3 request and what it may touch: keys from the settings and the gateway's principals.

The one key pair of ``HERCULES_S3_ACCESS_KEY``/``HERCULES_S3_SECRET_KEY`` may do everything, as
before principals existed. With ``HERCULES_AUTH_FILE`` set, a principal's ``s3_access_key`` signs
with its ``s3_secret_key`` and keeps the principal's scopes: its access level (read: no PUT, DELETE,
multipart or CreateBucket) and its prefix (``/photos`` is bucket ``photos``; ``/photos/2026`` the keys
below ``photos/2026/``). The credentials are looked up per request, so a SIGHUP reload applies at once.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from aiohttp import web

from hercules_core.errors import HerculesError
from hercules_core.gateway.auth import Credentials, Principal
from hercules_core.paths import normalize, within
from hercules_s3.errors import S3Error
from hercules_s3.sigv4 import Keys


@attrs.frozen
class KeyRing:
    """The keys requests may be signed with: the settings' pair, and the principals' S3 keys."""

    settings: Keys | None = None
    credentials: Credentials | None = None

    @property
    def enabled(self) -> bool:
        """Whether requests must be signed (neither source configured: anything is accepted)."""
        return self.settings is not None or self.credentials is not None

    def lookup(self, access_key: str) -> tuple[Keys, Principal | None] | None:
        """The key pair for ``access_key`` and the principal holding it (``None`` for the settings' pair)."""
        if self.credentials is not None:
            principal = self.credentials.by_s3_key(access_key)
            if principal is not None and principal.s3_secret_key is not None:
                return Keys(access_key, principal.s3_secret_key), principal
        if self.settings is not None and self.settings.access_key == access_key:
            return self.settings, None
        return None


def denied(principal: Principal, what: str) -> S3Error:
    return S3Error("AccessDenied", 403, f"Access Denied: key of {principal.name!r} (access {principal.access}, "
                   f"prefix {principal.prefix}) may not {what}")


def object_path(bucket: str, key: str = "") -> str | None:
    """The Hercules path of ``bucket``/``key``, or ``None`` if it is no valid path (the handler says why)."""
    try:
        return normalize(f"/{bucket}/{key}" if key else f"/{bucket}")
    except HerculesError:
        return None


def may(principal: Principal | None, access: str, bucket: str, key: str = "") -> bool:
    if principal is None:
        return True
    path = object_path(bucket, key)
    return path is not None and principal.allows(access, path)


def may_list(principal: Principal | None, bucket: str, prefix: str) -> bool:
    """A listing shows only keys in scope: the whole bucket, or a list prefix inside the principal's."""
    if principal is None or may(principal, "read", bucket):
        return True
    inner = principal.prefix.rstrip("/") + "/"
    return principal.allows("read") and f"/{bucket}/{prefix}".startswith(inner)


def visible_bucket(principal: Principal | None) -> Callable[[str], bool]:
    """For ListBuckets: the buckets holding anything in the principal's scope."""
    if principal is None:
        return lambda bucket: True
    top = principal.prefix.strip("/").split("/")[0]
    return lambda bucket: not top or bucket == top


def deletable(principal: Principal | None, bucket: str) -> Callable[[str], bool]:
    """For DeleteObjects: the keys the principal may delete."""
    return lambda key: may(principal, "write", bucket, key)


def authorize(principal: Principal | None, request: web.Request, bucket: str, key: str,
              copy_source: tuple[str, str] | None) -> None:
    """``AccessDenied`` unless the principal may make this request (per key in DeleteObjects: there)."""
    if principal is None:
        return
    method, q = request.method, request.query
    access = "read" if method in ("GET", "HEAD") else "write"
    if not bucket:  # ListBuckets: every principal may, filtered to its buckets (visible_bucket)
        return
    if not key and method == "GET" and "location" not in q:  # objects, versions or uploads under a prefix
        if not may_list(principal, bucket, q.get("prefix", "")):
            raise denied(principal, f"list bucket {bucket!r} with prefix {q.get('prefix', '')!r}")
        return
    if not key and method == "POST" and "delete" in q:  # each key is checked as it is deleted
        if not principal.allows("write"):
            raise denied(principal, f"delete objects in {bucket!r}")
        return
    if not key and method in ("GET", "HEAD"):  # HeadBucket, GetBucketLocation
        if not (principal.allows("read") and (may(principal, "read", bucket)
                                              or within(principal.prefix, f"/{bucket}"))):
            raise denied(principal, f"read bucket {bucket!r}")
        return
    if not may(principal, access, bucket, key):
        target = f"{bucket}/{key}" if key else f"bucket {bucket!r}"
        raise denied(principal, f"{access} {target}")
    if copy_source is not None and not may(principal, "read", *copy_source):
        raise denied(principal, f"read {copy_source[0]}/{copy_source[1]}")


def check_rate(keys: KeyRing, principal: Principal | None) -> None:
    """``SlowDown`` (503, as S3 answers) past the principal's request rate: one bucket per principal,
    shared with its REST token (``hercules_core.gateway.rates``); checked once the signature holds,
    so a stranger who knows only an access key id cannot spend a principal's rate."""
    if principal is None or principal.rate is None or keys.credentials is None:
        return
    if keys.credentials.delay(principal):
        raise S3Error("SlowDown", 503, f"Please reduce your request rate: the key of {principal.name!r} may "
                      f"make {principal.rate}.")
