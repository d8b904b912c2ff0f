"""Request bodies as S3 clients send them: plain, or ``aws-chunked`` (boto3's streaming form,
each chunk signed or followed by checksum trailers), read piece by piece with bounded memory.
The MD5 (the object's ETag) and any declared SHA-256 or Content-MD5 are checked on the way."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator

import attrs
from aiohttp import web

from hercules_s3 import sigv4
from hercules_s3.errors import S3Error

MAX_CHUNK = 64 << 20  # one aws-chunked chunk is held whole; clients send 64 KiB to 8 MiB
PIECE = 1 << 20


@attrs.define
class Body:
    """One request body; iterate ``pieces()`` once, then read ``md5`` and ``size``."""

    request: web.Request
    signed: sigv4.Signed | None
    size: int = 0
    _md5: "hashlib._Hash" = attrs.field(factory=hashlib.md5)

    @property
    def streaming(self) -> bool:
        return self.request.headers.get("x-amz-content-sha256", "").startswith("STREAMING-")

    @property
    def declared_size(self) -> int | None:
        raw = self.request.headers.get("x-amz-decoded-content-length") if self.streaming else None
        if raw is not None:
            return int(raw) if raw.isdigit() else None
        return None if self.streaming else self.request.content_length

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    @property
    def md5_digest(self) -> bytes:
        return self._md5.digest()

    async def pieces(self) -> AsyncIterator[bytes]:
        source = self._chunked() if self.streaming else self._plain()
        sha = hashlib.sha256()
        async for piece in source:
            self._md5.update(piece)
            sha.update(piece)
            self.size += len(piece)
            yield piece
        self._check_end(sha.hexdigest())

    def _check_end(self, sha256: str) -> None:
        """Raised before the caller publishes anything, so a bad body leaves no object behind."""
        declared = self.declared_size
        if declared is not None and declared != self.size:
            raise S3Error("IncompleteBody", 400, f"the body has {self.size} bytes, not the {declared} declared")
        claimed = self.request.headers.get("x-amz-content-sha256", "")
        if len(claimed) == 64 and self.signed is not None and claimed != sha256:
            raise S3Error("XAmzContentSHA256Mismatch", 400,
                          "The provided 'x-amz-content-sha256' header does not match what was computed.")
        content_md5 = self.request.headers.get("Content-MD5")
        if content_md5 is not None:
            try:
                wanted = base64.b64decode(content_md5, validate=True)
            except ValueError:
                raise S3Error("InvalidDigest", 400, "The Content-MD5 you specified was invalid.") from None
            if wanted != self.md5_digest:
                raise S3Error("BadDigest", 400, "The Content-MD5 you specified did not match what we received.")

    async def _plain(self) -> AsyncIterator[bytes]:
        if not self.request.body_exists:
            return
        async for data in self.request.content.iter_chunked(PIECE):
            yield data

    async def _chunked(self) -> AsyncIterator[bytes]:
        content = self.request.content
        previous = self.signed.seed_signature if self.signed else ""
        while True:
            line = (await content.readline()).decode("latin-1").strip()
            if not line:
                raise S3Error("IncompleteBody", 400, "an aws-chunked body ended before its last chunk")
            size_text, _, extension = line.partition(";")
            try:
                size = int(size_text, 16)
            except ValueError:
                raise S3Error("IncompleteBody", 400, f"bad aws-chunked chunk header {line[:60]!r}") from None
            if size > MAX_CHUNK:
                raise S3Error("EntityTooLarge", 400, f"an aws-chunked chunk may hold at most {MAX_CHUNK} bytes")
            data = await content.readexactly(size) if size else b""
            if size:
                await content.readexactly(2)  # the CRLF after the data
            if self.signed is not None and extension.startswith("chunk-signature="):
                expected = sigv4.chunk_signature(self.signed, previous, hashlib.sha256(data).hexdigest())
                previous = extension.removeprefix("chunk-signature=")
                if expected != previous:
                    raise S3Error("SignatureDoesNotMatch", 403, "a chunk's signature does not match its bytes")
            if not size:
                break
            yield data
        while (await content.readline()).strip():  # trailers (checksums), then the blank line
            pass


async def read_small(request: web.Request, limit: int = 1 << 20) -> bytes:
    """A small XML request body (DeleteObjects, CompleteMultipartUpload), whole."""
    body = Body(request, None)
    data = bytearray()
    async for piece in body.pieces():
        data += piece
        if len(data) > limit:
            raise S3Error("MaxMessageLengthExceeded", 400, f"the request body may be at most {limit} bytes")
    return bytes(data)
