"""Gateway authentication: principals from a TOML credentials file, bearer tokens, scopes.

Off unless ``auth_file`` (``HERCULES_AUTH_FILE``) is set. The file lists principals::

    [[principal]]
    name = "alice"
    token_sha256 = "9f86d0..."   # or token = "..." (kept in clear text in the file)
    access = "write"             # read < write < admin (cluster operations)
    prefix = "/alice"            # optional: only this subtree
    s3_access_key = "AKIA..."    # optional: the same scopes for SigV4 (the S3 route set)
    s3_secret_key = "..."
    rate = 20                    # optional: requests per second (REST and S3 together), see ``rates``
    burst = 40                   # optional: requests at once (default: one second's worth)

Tokens are compared as sha256 digests in constant time, against every principal (no early exit);
no token or secret is ever logged. ``Credentials.reload`` re-reads the file (on SIGHUP); a file
that no longer parses keeps the previous principals and logs why.

Route sets find the credentials with ``credentials(ctx)`` (``None`` when authentication is off)
and check a principal with ``Principal.allows(access, path)``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import tomllib
from pathlib import Path
from typing import Any

import attrs
from aiohttp import web

from hercules_core.errors import ConfigError, Forbidden, HerculesError
from hercules_core.gateway.rates import Rate, RateLimiter, rate_limited
from hercules_core.paths import normalize, within
from hercules_core.plugins.types import GatewayContext

log = logging.getLogger(__name__)
ACCESS_LEVELS = ("read", "write", "admin")
PRINCIPAL_KEY = "hercules.principal"
STATE_KEY = "auth"  # GatewayContext.state[STATE_KEY]: the Credentials, when authentication is on
# Served to anyone: the liveness probe and the API's own description.
OPEN_PATHS = frozenset({"/health", "/api/v1/openapi.json", "/api/v1/docs",
                        # the dashboard's page and assets hold no data; its API calls carry the token
                        "/", "/ui", "/ui/static/app.js", "/ui/static/style.css"})
# Cluster operations: chunk locations, the cluster's servers, the whole trash.
ADMIN_PATHS = frozenset({"/api/v1/cluster", "/api/v1/chunk/handle", "/api/v1/chunk/servers", "/api/v1/trash",
                         "/metrics"})


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@attrs.frozen
class Principal:
    name: str
    token_sha256: str = attrs.field(repr=False)
    access: str = "read"
    prefix: str = "/"
    s3_access_key: str | None = None
    s3_secret_key: str | None = attrs.field(default=None, repr=False)
    rate: Rate | None = None  # requests per second, None: unlimited

    def allows(self, access: str, path: str | None = None) -> bool:
        """Whether this principal may do ``access`` (``read``/``write``/``admin``) on ``path``."""
        if ACCESS_LEVELS.index(self.access) < ACCESS_LEVELS.index(access):
            return False
        return path is None or within(path, self.prefix)

    def check(self, access: str, path: str | None = None) -> None:
        """``Forbidden`` unless ``allows``: the message names the principal and its scope, no secret."""
        if not self.allows(access, path):
            where = f" on {path}" if path is not None else ""
            raise Forbidden(f"principal {self.name!r} (access {self.access}, prefix {self.prefix}) "
                            f"may not {access}{where}")


def _principal(entry: Any, where: str) -> Principal:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise ConfigError(f"{where}: each [[principal]] needs a name")
    name = entry["name"]
    digest = entry.get("token_sha256")
    if digest is None and isinstance(entry.get("token"), str) and entry["token"]:
        digest = token_hash(entry["token"])
    if not isinstance(digest, str) or len(digest) != 64:
        raise ConfigError(f"{where}: principal {name!r} needs token_sha256 (64 hex digits) or token")
    access = entry.get("access", "read")
    if access not in ACCESS_LEVELS:
        raise ConfigError(f"{where}: principal {name!r} has access {access!r}, not one of {', '.join(ACCESS_LEVELS)}")
    try:
        prefix = normalize(entry.get("prefix", "/"), what="prefix")
    except HerculesError as exc:
        raise ConfigError(f"{where}: principal {name!r}: {exc.message}") from None
    keys = entry.get("s3_access_key"), entry.get("s3_secret_key")
    if (keys[0] is None) != (keys[1] is None):
        raise ConfigError(f"{where}: principal {name!r} needs both s3_access_key and s3_secret_key, or neither")
    rate = Rate.parse(entry.get("rate"), entry.get("burst"), f"{where}: principal {name!r}")
    return Principal(name, digest.lower(), access, prefix, *keys, rate=rate)


def load_principals(path: str | Path) -> list[Principal]:
    """The file's principals; ``ConfigError`` naming the file and the entry if it is unusable."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"credentials file {path}: {exc}") from None
    principals = [_principal(e, str(path)) for e in data.get("principal", [])]
    names = [p.name for p in principals]
    if len(set(names)) != len(names):
        raise ConfigError(f"credentials file {path}: a principal name appears twice")
    return principals


@attrs.define
class Credentials:
    """The principals of ``file``, looked up by token or by S3 access key."""

    file: str
    principals: list[Principal] = attrs.field(factory=list)
    rates: RateLimiter = attrs.field(factory=RateLimiter)

    @classmethod
    def open(cls, file: str) -> "Credentials":
        return cls(file, load_principals(file))

    def reload(self) -> None:
        try:
            self.principals = load_principals(self.file)
        except ConfigError as exc:
            log.error("credentials not reloaded, keeping the previous ones: %s", exc.message)
            return
        self.rates.keep({p.name for p in self.principals})
        log.info("credentials reloaded from %s: %d principals", self.file, len(self.principals))

    def by_token(self, token: str) -> Principal | None:
        digest, found = token_hash(token).encode(), None
        for principal in self.principals:  # every one compared: the time says nothing of which matched
            if hmac.compare_digest(digest, principal.token_sha256.encode()):
                found = principal
        return found

    def delay(self, principal: Principal) -> float:
        """0.0 if ``principal`` may make one more request now (counted), else seconds to wait."""
        return 0.0 if principal.rate is None else self.rates.delay(principal.name, principal.rate)

    def by_s3_key(self, access_key: str) -> Principal | None:
        """The principal holding this S3 access key (its ``s3_secret_key`` signs SigV4 requests)."""
        found = None
        for principal in self.principals:
            if principal.s3_access_key is not None and hmac.compare_digest(
                    access_key.encode(), principal.s3_access_key.encode()):
                found = principal
        return found


def credentials(ctx: GatewayContext) -> Credentials | None:
    """The gateway's credentials, for route sets (``None``: authentication is off)."""
    return ctx.state.get(STATE_KEY)


def principal_of(request: web.Request) -> Principal | None:
    """Who sent ``request`` (``None`` when authentication is off)."""
    return request.get(PRINCIPAL_KEY)


def require(request: web.Request, access: str, *paths: str) -> None:
    """``Forbidden`` unless the request's principal may do ``access`` on every path (no-op when off)."""
    principal = principal_of(request)
    if principal is not None:
        for path in paths or (None,):  # type: ignore[assignment]
            principal.check(access, path)


def route_access(request: web.Request) -> str:
    if request.path in ADMIN_PATHS:
        return "admin"
    return "read" if request.method in ("GET", "HEAD", "OPTIONS") else "write"


def _request_paths(request: web.Request) -> list[str]:
    """The paths a request names outside its body (the body's are checked by the handler)."""
    paths = []
    if "path" in request.match_info and request.path.startswith("/api/v1/files/"):
        paths.append("/" + request.match_info["path"])
    if "path" in request.query:
        paths.append(request.query["path"])
    try:
        return [normalize(p) for p in paths]
    except HerculesError:
        return []  # the handler refuses it with its own message


def auth_middleware(creds: Credentials):  # type: ignore[no-untyped-def]
    """401 without a valid ``Authorization: Bearer`` token, 429 past its principal's rate, 403
    outside its scope."""

    @web.middleware
    async def authenticate(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if request.path in OPEN_PATHS:
            return await handler(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        principal = creds.by_token(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
        if principal is None:
            raise web.HTTPUnauthorized(
                headers={"WWW-Authenticate": 'Bearer realm="hercules"'}, content_type="application/json",
                text='{"error": {"code": "unauthenticated", "message": "a valid bearer token is required '
                     '(Authorization: Bearer <token>)"}}')
        wait = creds.delay(principal)
        if wait:
            return rate_limited(principal.name, principal.rate, wait)  # type: ignore[arg-type]
        request[PRINCIPAL_KEY] = principal
        access = route_access(request)
        principal.check(access)
        for path in _request_paths(request):
            principal.check(access, path)
        return await handler(request)

    return authenticate
