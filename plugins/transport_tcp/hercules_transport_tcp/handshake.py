"""The cluster-secret handshake: both ends of a connection prove they know the secret first.

An HMAC-SHA256 challenge-response in four frames of request id 0, before any message:

1. the dialler sends a fresh nonce ``Nc``;
2. the listener answers with its nonce ``Ns`` and ``HMAC(secret, "server" Nc Ns)``;
3. the dialler checks it (the listener knows the secret) and sends ``HMAC(secret, "client" Nc Ns)``;
4. the listener checks that and answers ``OK``; only then is the connection handed to the role.

The two proofs are labelled by direction and cover both nonces, so no answer can be replayed or
reflected; digests are compared with ``hmac.compare_digest``. The secret itself never travels.
A peer that sends a request instead of step 1 (it has no secret) gets one ``unauthenticated``
error reply, and the connection is closed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets

from hercules_core import codec
from hercules_core.errors import ProtocolError, Unauthenticated
from hercules_core.framing import Frame, Kind
from hercules_core.messages import ErrorReply
from hercules_core.plugins.types import FrameConnection

log = logging.getLogger(__name__)

HELLO, CHALLENGE, ANSWER, ACCEPTED = b"HXC1", b"HXS1", b"HXA1", b"HXOK"
NONCE = 32
DIGEST = hashlib.sha256().digest_size
ACCEPT_TIMEOUT = 10.0  # a listener gives a silent or slow dialler this long to prove itself
NO_SECRET = "this cluster requires the cluster secret (HERCULES_CLUSTER_SECRET) on every connection"


def _proof(secret: bytes, label: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    return hmac.new(secret, label + client_nonce + server_nonce, hashlib.sha256).digest()


async def _send(conn: FrameConnection, tag: bytes, body: bytes = b"") -> None:
    await conn.write_frame(Frame(Kind.REQUEST, 0, tag + body))


async def _receive(conn: FrameConnection, tag: bytes, size: int) -> bytes:
    frame = await conn.read_frame()
    meta = bytes(frame.meta)
    if not meta.startswith(tag) or len(meta) != len(tag) + size or frame.data:
        raise _unexpected(meta)
    return meta[len(tag):]


def _unexpected(meta: bytes) -> Unauthenticated:
    try:
        reply = codec.decode(meta)
    except ProtocolError:
        reply = None
    if isinstance(reply, ErrorReply) and reply.code == Unauthenticated.code:
        return Unauthenticated(f"the peer refused the handshake: {reply.message}")
    return Unauthenticated("the peer does not speak the cluster-secret handshake: is HERCULES_CLUSTER_SECRET "
                           "set there too?")


async def prove_as_client(conn: FrameConnection, secret: bytes) -> None:
    """The dialler's side; ``Unauthenticated`` if the listener does not prove the same secret."""
    client_nonce = secrets.token_bytes(NONCE)
    await _send(conn, HELLO, client_nonce)
    try:
        challenge = await _receive(conn, CHALLENGE, NONCE + DIGEST)
        server_nonce, proof = challenge[:NONCE], challenge[NONCE:]
        if not hmac.compare_digest(proof, _proof(secret, b"server", client_nonce, server_nonce)):
            raise Unauthenticated(f"{conn.peer} does not know the cluster secret")
        await _send(conn, ANSWER, _proof(secret, b"client", client_nonce, server_nonce))
        await _receive(conn, ACCEPTED, 0)
    except (EOFError, ConnectionError) as exc:
        raise Unauthenticated(f"{conn.peer} closed the connection during the cluster-secret handshake "
                              f"(is the same secret set there?): {exc or type(exc).__name__}") from None


async def prove_as_server(conn: FrameConnection, secret: bytes) -> bool:
    """The listener's side: whether the dialler proved the secret (if not, it was told, and is closed)."""
    try:
        async with asyncio.timeout(ACCEPT_TIMEOUT):
            frame = await conn.read_frame()
            meta = bytes(frame.meta)
            if not meta.startswith(HELLO) or len(meta) != len(HELLO) + NONCE:
                await _refuse(conn, frame.request_id, NO_SECRET)
                return False
            client_nonce, server_nonce = meta[len(HELLO):], secrets.token_bytes(NONCE)
            await _send(conn, CHALLENGE, server_nonce + _proof(secret, b"server", client_nonce, server_nonce))
            answer = await conn.read_frame()
            expected = ANSWER + _proof(secret, b"client", client_nonce, server_nonce)
            if not hmac.compare_digest(bytes(answer.meta), expected):
                await _refuse(conn, answer.request_id, "wrong cluster secret")
                return False
            await _send(conn, ACCEPTED)
            return True
    except (EOFError, ConnectionError, OSError, ProtocolError, TimeoutError) as exc:
        log.warning("closing connection from %s: no cluster-secret handshake (%s)", conn.peer,
                    exc or type(exc).__name__)
        conn.close()
        return False


async def _refuse(conn: FrameConnection, request_id: int, why: str) -> None:
    log.warning("refused connection from %s: %s", conn.peer, why)
    try:
        await conn.write_frame(Frame(Kind.RESPONSE, request_id, codec.encode(ErrorReply(Unauthenticated.code, why))))
    except (ConnectionError, OSError):
        pass
    conn.close()
