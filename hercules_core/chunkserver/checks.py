"""What a chunkserver checks in every request before it touches a replica, whoever sent it (a
peer that knows the cluster secret may still be buggy or compromised): handles and versions in
the range the master hands out, extents inside one chunk, leases of a sane length, and peer
addresses that parse. Each failure is an ``InvalidArgument`` naming the field."""

from __future__ import annotations

import math

from hercules_core.addresses import Address
from hercules_core.errors import InvalidArgument

HANDLE_LIMIT = 1 << 63  # handles and versions are SQLite integers on the master: 0 < h < 2^63
MAX_LEASE = 3600.0  # no master grants a lease longer than this


def handle(value: int) -> int:
    if not 0 < value < HANDLE_LIMIT:
        raise InvalidArgument(f"chunk handle {value} is outside 1..2^63-1")
    return value


def handles(values: list[int]) -> list[int]:
    for value in values:
        handle(value)
    return values


def version(value: int) -> int:
    if not 0 <= value < HANDLE_LIMIT:
        raise InvalidArgument(f"chunk version {value} is outside 0..2^63-1")
    return value


def chunk(handle_: int, version_: int) -> None:
    """A request's chunk: its handle and version in range."""
    handle(handle_)
    version(version_)


def serial(value: int) -> int:
    if not 0 < value < HANDLE_LIMIT:
        raise InvalidArgument(f"serial number {value} is outside 1..2^63-1")
    return value


def extent(offset: int, length: int, chunk_size: int) -> None:
    """``length`` bytes at ``offset`` lie inside one chunk of ``chunk_size`` bytes."""
    if offset < 0 or length < 0:
        raise InvalidArgument("offset and length must not be negative")
    if offset + length > chunk_size:
        raise InvalidArgument(f"{length} bytes at offset {offset} reach past the {chunk_size}-byte chunk")


def lease(seconds: float) -> float:
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_LEASE):
        raise InvalidArgument(f"lease of {seconds}s is outside 0..{MAX_LEASE:.0f}s")
    return seconds


def addresses(values: list[str]) -> list[str]:
    """Peer addresses (a write chain, a copy source) that parse as ``host:port``."""
    for value in values:
        try:
            Address.parse(value)
        except ValueError as exc:
            raise InvalidArgument(f"peer address {value!r} does not parse: {exc}") from None
    return values
