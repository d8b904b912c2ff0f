"""The one cattrs converter and the tagged msgpack encoding of wire messages."""

from __future__ import annotations

from typing import Any

import msgpack
from cattrs.preconf.msgpack import make_converter

from hercules_core.errors import ProtocolError
from hercules_core.messages import REGISTRY

converter = make_converter()


def _strict(kind: type, accept: tuple[type, ...]) -> None:
    """No silent coercion: a peer that sends 5 where a path belongs gets an error, not "5"."""

    def structure(value: Any, _type: Any) -> Any:
        if type(value) is bool and kind is not bool or not isinstance(value, accept):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return kind(value)

    converter.register_structure_hook(kind, structure)


_strict(str, (str,))
_strict(int, (int,))
_strict(float, (int, float))
_strict(bool, (bool,))


def encode(msg: Any) -> bytes:
    """``[tag, fields]`` as msgpack."""
    return msgpack.packb([type(msg).TAG, converter.unstructure(msg)], use_bin_type=True)


def decode(raw: bytes | memoryview) -> Any:
    """The message in ``raw``; ``ProtocolError`` for anything malformed or unknown."""
    try:
        tag, body = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:  # noqa: BLE001 - any msgpack failure means a malformed frame
        raise ProtocolError(f"undecodable message: {exc}") from None
    cls = REGISTRY.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message type {tag!r}")
    try:
        return converter.structure(body, cls)
    except Exception as exc:  # noqa: BLE001 - cattrs raises a variety of errors
        raise ProtocolError(f"malformed {tag!r} message: {exc}") from None
