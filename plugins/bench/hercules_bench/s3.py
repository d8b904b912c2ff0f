"""The S3 side of the benchmark: objects through the gateway's S3 port, beside the REST figures.

Unsigned when no key is configured (the S3 port then accepts anything); with
``HERCULES_S3_ACCESS_KEY`` and ``HERCULES_S3_SECRET_KEY`` set, each request carries a SigV4
header signature over ``UNSIGNED-PAYLOAD``, built from the s3 plugin's own signing functions
(so the bench signs exactly as the gateway verifies, and hashes no payload on the client side).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
from typing import Any
from urllib.parse import quote, urlsplit

import attrs

from hercules_bench.http import Gateway, GatewayError, _pieces
from hercules_bench.stats import VerificationError


def s3_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("hercules_s3") is not None


@attrs.frozen
class Signer:
    """SigV4, header form, payload left unsigned (``x-amz-content-sha256: UNSIGNED-PAYLOAD``)."""

    access_key: str
    secret_key: str
    region: str = "us-east-1"

    @classmethod
    def from_env(cls) -> "Signer | None":
        access, secret = os.environ.get("HERCULES_S3_ACCESS_KEY"), os.environ.get("HERCULES_S3_SECRET_KEY")
        return cls(access, secret) if access and secret else None

    def headers(self, method: str, url: str, now: datetime.datetime | None = None) -> dict[str, str]:
        from hercules_s3 import sigv4

        parts = urlsplit(url)
        now = now or datetime.datetime.now(datetime.timezone.utc)
        amz_date, date = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        scope = f"{date}/{self.region}/s3/aws4_request"
        headers = {"host": parts.netloc, "x-amz-content-sha256": sigv4.UNSIGNED, "x-amz-date": amz_date}
        names = sorted(headers)
        canonical = "\n".join([method, parts.path or "/", sigv4.canonical_query(parts.query),
                               "".join(f"{n}:{headers[n]}\n" for n in names), ";".join(names), sigv4.UNSIGNED])
        key = sigv4.signing_key(self.secret_key, date, self.region, "s3")
        signature = hmac.new(key, sigv4.string_to_sign(amz_date, scope, canonical).encode(),
                             hashlib.sha256).hexdigest()
        headers["Authorization"] = (f"{sigv4.ALGORITHM} Credential={self.access_key}/{scope}, "
                                    f"SignedHeaders={';'.join(names)}, Signature={signature}")
        del headers["host"]  # aiohttp sends the same Host itself
        return headers


class S3Bucket(Gateway):
    """One bucket on the S3 port, with the REST client's session, streaming and verification."""

    def __init__(self, url: str, bucket: str, connections: int = 8, timeout: float = 300.0,
                 signer: Signer | None = None) -> None:
        super().__init__(url, connections, timeout)
        self.bucket = bucket
        self.signer = signer

    def _file_url(self, path: str) -> str:
        return f"{self.url}/{self.bucket}/{quote(path.lstrip('/'))}"

    def _auth(self, method: str, url: str) -> dict[str, str]:
        return self.signer.headers(method, url) if self.signer else {}

    async def create(self) -> None:
        """CreateBucket; one that exists already (made by another workload) is fine."""
        url = f"{self.url}/{self.bucket}"
        async with self.session.put(url, headers=self._auth("PUT", url)) as resp:
            if resp.status == 409 and "BucketAlreadyOwnedByYou" in await resp.text():
                return
            await self._check(resp, 200)

    async def put(self, path: str, data: bytes, *, replication: int | None = None,
                  stream: bool = False) -> dict[str, Any]:
        """PutObject; the ETag S3 returns for a single upload is the MD5 of what it stored."""
        url = self._file_url(path)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data)),
                   **self._auth("PUT", url)}
        body: Any = _pieces(data) if stream else data
        async with self.session.put(url, data=body, headers=headers) as resp:
            await self._check(resp, 200)
            etag = resp.headers.get("ETag", "").strip('"')
        if not etag:
            raise VerificationError(f"PutObject {path}: no ETag in the answer")
        return {"etag": etag}


__all__ = ["GatewayError", "S3Bucket", "Signer", "s3_available"]
