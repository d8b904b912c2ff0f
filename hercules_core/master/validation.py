"""What the master accepts from the wire before a handler sees it: integers a 64-bit store can
hold, handles it could have allocated, versions in range, addresses that parse.

Any peer may send anything (a stranger without the cluster secret, or a buggy or hostile
chunkserver with it): a value SQLite cannot hold would fail deep inside the store as
``internal``, and one stored would fail every later report. So every message is checked once
at the door (``checked``), and reports are filtered item by item (``valid_handle``).
"""

from __future__ import annotations

import functools
from typing import Any

import attrs

from hercules_core.addresses import Address
from hercules_core.errors import InvalidArgument
from hercules_core.rpc import CallContext, Handler

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
MAX_HANDLE = INT64_MAX  # handles are positive SQLite integers: 1 .. 2**63 - 1


def valid_handle(handle: int) -> bool:
    return 0 < handle <= MAX_HANDLE


def valid_version(version: int) -> bool:
    return 0 <= version <= INT64_MAX


def check_handle(handle: int) -> None:
    if not valid_handle(handle):
        raise InvalidArgument(f"chunk handle {handle} is outside 1..{MAX_HANDLE}")


def check_address(address: str) -> None:
    """A chunkserver's address must parse as ``host:port``, or every allocation naming it fails."""
    try:
        Address.parse(address)
    except ValueError as exc:
        raise InvalidArgument(f"chunkserver address {address!r} does not parse: {exc}") from None


def _out_of_range(value: Any, where: str) -> str | None:
    """The first integer (by field path) a 64-bit signed column cannot hold, or ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return where if not INT64_MIN <= value <= INT64_MAX else None
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = _out_of_range(item, f"{where}[{i}]")
            if found is not None:
                return found
        return None
    if attrs.has(type(value)):
        for field in attrs.fields(type(value)):
            found = _out_of_range(getattr(value, field.name), f"{where}.{field.name}" if where else field.name)
            if found is not None:
                return found
    return None


def check_integers(msg: Any) -> None:
    where = _out_of_range(msg, "")
    if where is not None:
        raise InvalidArgument(f"{type(msg).__name__}.{where} is outside the 64-bit integer range")


def checked(handler: Handler) -> Handler:
    """``handler`` behind ``check_integers``: huge integers are ``invalid_argument``, never ``internal``."""

    @functools.wraps(handler)
    async def guarded(msg: Any, data: memoryview, ctx: CallContext) -> Any:
        check_integers(msg)
        return await handler(msg, data, ctx)

    return guarded
