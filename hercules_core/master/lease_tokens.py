"""Lease tokens: what proves a mutation comes from the primary the master granted a lease to.

The token of chunk ``h`` at version ``v`` is an HMAC of ``h:v`` under a key only the master
holds. The master sends it to the primary alone, with the lease (``CreateChunk``/``SetVersion``);
the primary puts it on every ``ApplyMutation``; a secondary asks the master once per version
(``CheckLease``) whether a token is right, then remembers its digest. A peer that was never
granted the lease, a stranger or another chunkserver, cannot apply a mutation anywhere.

The key lives in the master's ``ROOT_DIR`` (``lease-key``, mode 0600), so tokens stay valid
across a master restart: primaries keep their leases through one, as clients expect. A new
grant always bumps the version, and so the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from hercules_core.chunkstore.fileio import write_atomic

KEY_FILE = "lease-key"


def digest(token: str) -> str:
    """What a secondary remembers of a token it has had checked."""
    return hashlib.sha256(token.encode()).hexdigest()


class LeaseTokens:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._key: bytes | None = None  # read (or made) on first use: a master granting nothing writes nothing

    def token(self, handle: int, version: int) -> str:
        return hmac.new(self._load(), f"{handle}:{version}".encode(), hashlib.sha256).hexdigest()

    def valid(self, handle: int, version: int, token: str) -> bool:
        # as bytes: compare_digest refuses a str with non-ASCII characters (TypeError), and a token
        # comes from the wire
        return hmac.compare_digest(self.token(handle, version).encode(), token.encode(errors="replace"))

    def _load(self) -> bytes:
        if self._key is None:
            path = self.root / KEY_FILE
            try:
                self._key = path.read_bytes()
            except FileNotFoundError:
                self._key = _create(path)
        return self._key


def _create(path: Path) -> bytes:
    """A new random key, durable before any token made with it leaves the master."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    write_atomic(path, key, mode=0o600)
    return key
