"""AWS Signature Version 4: the header form and the query (presigned URL) form, verified
against the key pair its access key names (``lookup``). Pure functions of the request's parts: no I/O."""

from __future__ import annotations

import calendar
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, quote, unquote

import attrs

from hercules_s3.errors import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
MAX_SKEW = 15 * 60  # seconds a signed request's date may differ from ours, as S3 allows
MAX_EXPIRES = 7 * 24 * 3600  # the longest a presigned URL may be valid (X-Amz-Expires), as S3 allows
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@attrs.frozen
class Keys:
    access_key: str
    secret_key: str


@attrs.frozen
class Signed:
    """What a verified request was signed with: chunk signatures of a streamed body chain on."""

    signing_key: bytes
    scope: str
    amz_date: str
    seed_signature: str
    payload_hash: str


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(f"AWS4{secret}".encode(), date)
    return _hmac(_hmac(_hmac(key, region), service), "aws4_request")


def _uri_encode(text: str, safe: str = "-_.~") -> str:
    return quote(text, safe=safe)


def canonical_query(raw_query: str, drop: str = "") -> str:
    pairs = [(k, v) for k, v in parse_qsl(raw_query, keep_blank_values=True) if k != drop]
    return "&".join(f"{_uri_encode(k)}={_uri_encode(v)}" for k, v in sorted(
        (k, v) for k, v in pairs))


def _canonical_headers(headers: Mapping[str, str], signed: list[str]) -> str:
    lines = []
    for name in signed:
        values = headers.getall(name) if hasattr(headers, "getall") else [headers.get(name, "")]  # type: ignore[attr-defined]
        lines.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}\n")
    return "".join(lines)


def string_to_sign(amz_date: str, scope: str, canonical_request: str) -> str:
    return "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()])


def _parse_date(amz_date: str) -> float:
    try:
        return calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise S3Error("AccessDenied", 403, f"X-Amz-Date {amz_date!r} is not a date") from None


def _scope_parts(credential: str, lookup: Callable[[str], Keys | None]) -> tuple[Keys, str, str, str, str]:
    try:
        access, date, region, service, terminal = credential.split("/")
    except ValueError:
        raise S3Error("AuthorizationHeaderMalformed", 400, f"credential {credential!r} is malformed") from None
    keys = lookup(access)
    if keys is None:
        raise S3Error("InvalidAccessKeyId", 403,
                      "The AWS Access Key Id you provided does not exist in our records.")
    if terminal != "aws4_request":
        raise S3Error("AuthorizationHeaderMalformed", 400, f"credential {credential!r} is malformed")
    return keys, date, region, service, f"{date}/{region}/{service}/aws4_request"


def _paths(raw_path: str) -> list[str]:
    """The canonical URI as the client sent it, and as AWS's rules encode it (clients differ)."""
    encoded = quote(unquote(raw_path), safe="/~")
    return [raw_path] if encoded == raw_path else [raw_path, encoded]


def verify(method: str, raw_path: str, raw_query: str, headers: Mapping[str, str],
           lookup: Callable[[str], Keys | None], now: float | None = None) -> Signed:
    """The request's signature checked with the keys ``lookup`` gives for its access key (``None``:
    unknown, InvalidAccessKeyId); ``S3Error`` (403 mostly) says why it does not match."""
    now = time.time() if now is None else now
    auth = headers.get("Authorization", "")
    query = dict(parse_qsl(raw_query, keep_blank_values=True))
    if auth.startswith(ALGORITHM):
        fields = dict(part.strip().split("=", 1) for part in auth[len(ALGORITHM):].split(",") if "=" in part)
        try:
            credential, signed_names, signature = fields["Credential"], fields["SignedHeaders"], fields["Signature"]
        except KeyError as exc:
            raise S3Error("AuthorizationHeaderMalformed", 400, f"the Authorization header lacks {exc}") from None
        amz_date = headers.get("x-amz-date", "")
        if not amz_date:
            raise S3Error("AccessDenied", 403, "a signed request needs an X-Amz-Date header")
        if abs(now - _parse_date(amz_date)) > MAX_SKEW:
            raise S3Error("RequestTimeTooSkewed", 403,
                          "The difference between the request time and the server's time is too large.")
        payload = headers.get("x-amz-content-sha256", EMPTY_SHA256)
        canonical_q = canonical_query(raw_query)
    elif query.get("X-Amz-Algorithm") == ALGORITHM:
        try:
            credential, signed_names, signature = (query["X-Amz-Credential"], query["X-Amz-SignedHeaders"],
                                                   query["X-Amz-Signature"])
            amz_date, expires = query["X-Amz-Date"], int(query.get("X-Amz-Expires", "604800"))
        except (KeyError, ValueError) as exc:
            raise S3Error("AuthorizationQueryParametersError", 400, f"presigned URL lacks {exc}") from None
        if not 0 <= expires <= MAX_EXPIRES:
            raise S3Error("AccessDenied", 403, f"X-Amz-Expires must be between 0 and {MAX_EXPIRES} seconds")
        if now > _parse_date(amz_date) + expires:
            raise S3Error("AccessDenied", 403, "Request has expired")
        payload = UNSIGNED
        canonical_q = canonical_query(raw_query, drop="X-Amz-Signature")
    elif auth.startswith("AWS "):
        raise S3Error("AccessDenied", 403, "Signature Version 2 is not supported: sign with AWS4-HMAC-SHA256")
    else:
        raise S3Error("AccessDenied", 403, "Anonymous access is refused: this endpoint needs signed requests")
    keys, date, region, service, scope = _scope_parts(credential, lookup)
    key = signing_key(keys.secret_key, date, region, service)
    names = signed_names.split(";")
    for path in _paths(raw_path):
        canonical = "\n".join([method, path, canonical_q, _canonical_headers(headers, names), signed_names,
                               payload])
        expected = hmac.new(key, string_to_sign(amz_date, scope, canonical).encode(), hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, signature):
            return Signed(key, scope, amz_date, signature, payload)
    raise S3Error("SignatureDoesNotMatch", 403, "The request signature we calculated does not match the "
                  "signature you provided. Check your key and signing method.")


def chunk_signature(signed: Signed, previous: str, chunk_sha256: str) -> str:
    """The signature of one chunk of a ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` body."""
    text = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", signed.amz_date, signed.scope, previous, EMPTY_SHA256,
                      chunk_sha256])
    return hmac.new(signed.signing_key, text.encode(), hashlib.sha256).hexdigest()
