"""Sans-I/O framing: the one frame format every transport moves.

A frame is a 16-byte header, a msgpack *meta* part (the typed message) and a raw
*data* part (chunk bytes, never re-encoded). Transports read the header, ask
``parse_header`` how much follows, read exactly that, and hand back a ``Frame``.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import NamedTuple

import attrs

from hercules_core.errors import ProtocolError

MAGIC = b"HF"
WIRE_VERSION = 1
_HEADER = struct.Struct("!2sBBIII")
HEADER_SIZE = _HEADER.size


class Kind(IntEnum):
    REQUEST = 1
    RESPONSE = 2


_KINDS = {int(kind): kind for kind in Kind}  # a dict lookup is several times cheaper than Kind(n)


@attrs.frozen
class FrameLimits:
    """What a transport enforces on each connection: frame sizes (a frame over them closes its
    connection) and, on the serving side, how long a peer may stay silent (``idle_timeout``) or
    take to send a frame it has started (``frame_timeout``, against slowloris peers); 0 is no limit."""

    max_meta: int = 1 << 20
    max_data: int = 16 << 20
    idle_timeout: float = 0.0
    frame_timeout: float = 0.0


class Frame(NamedTuple):
    """One frame; a named tuple because one is built for every message sent or received."""

    kind: Kind
    request_id: int
    meta: bytes
    data: bytes | bytearray | memoryview = b""

    def header(self) -> bytes:
        return _HEADER.pack(MAGIC, WIRE_VERSION, self.kind, self.request_id, len(self.meta), len(self.data))


class Header(NamedTuple):
    kind: Kind
    request_id: int
    meta_len: int
    data_len: int


def parse_header(raw: bytes | bytearray | memoryview, limits: FrameLimits) -> Header:
    """Validate a header; ``ProtocolError`` names what is wrong with it."""
    if len(raw) != HEADER_SIZE:
        raise ProtocolError(f"short frame header: {len(raw)} of {HEADER_SIZE} bytes")
    return parse_header_from(raw, 0, limits)


def parse_header_from(buffer: bytes | bytearray | memoryview, offset: int, limits: FrameLimits) -> Header:
    """``parse_header`` of the header at ``offset`` of a receive buffer, without slicing it out."""
    magic, version, kind, request_id, meta_len, data_len = _HEADER.unpack_from(buffer, offset)
    if magic != MAGIC:
        raise ProtocolError(f"bad frame magic {bytes(magic)!r}; not a Hercules peer")
    if version != WIRE_VERSION:
        raise ProtocolError(f"unsupported wire version {version}")
    known = _KINDS.get(kind)
    if known is None:
        raise ProtocolError(f"unknown frame kind {kind}")
    if meta_len == 0 or meta_len > limits.max_meta:
        raise ProtocolError(f"message of {meta_len} bytes is outside 1..{limits.max_meta}")
    if data_len > limits.max_data:
        raise ProtocolError(f"data of {data_len} bytes exceeds the {limits.max_data}-byte frame limit")
    return Header(known, request_id, meta_len, data_len)
