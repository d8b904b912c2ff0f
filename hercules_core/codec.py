"""The one cattrs converter and the tagged msgpack encoding of wire messages.

Every RPC encodes and decodes two messages, so the per-message work is kept small: the cattrs
hooks of each message class are looked up once, the generated structure code skips cattrs'
detailed validation (any failure becomes one ``ProtocolError`` anyway), and each thread reuses
one msgpack packer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import msgpack
from cattrs.preconf.msgpack import make_converter

from hercules_core.errors import ProtocolError
from hercules_core.messages import REGISTRY

converter = make_converter(detailed_validation=False)


def _strict(kind: type, accept: tuple[type, ...]) -> None:
    """No silent coercion: a peer that sends 5 where a path belongs gets an error, not "5"."""

    def structure(value: Any, _type: Any) -> Any:
        if type(value) is kind:  # what msgpack produces: no checks needed
            return value
        if type(value) is bool and kind is not bool or not isinstance(value, accept):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return kind(value)

    converter.register_structure_hook(kind, structure)


_strict(str, (str,))
_strict(int, (int,))
_strict(float, (int, float))
_strict(bool, (bool,))

_unstructure: dict[type, Callable[[Any], Any]] = {}
_structure: dict[str, Callable[[Any], Any]] = {}
_local = threading.local()


def _unstructure_hook(cls: type) -> Callable[[Any], Any]:
    hook = _unstructure[cls] = converter.get_unstructure_hook(cls)
    return hook


def _structure_hook(tag: Any) -> Callable[[Any], Any] | None:
    cls = REGISTRY.get(tag) if isinstance(tag, str) else None
    if cls is None:
        return None
    hook = converter.get_structure_hook(cls)
    _structure[tag] = structure = lambda body: hook(body, cls)  # noqa: E731 - bound once per tag
    return structure


def _packer() -> msgpack.Packer:
    packer = _local.packer = msgpack.Packer(use_bin_type=True)
    return packer


def encode(msg: Any) -> bytes:
    """``[tag, fields]`` as msgpack."""
    cls = type(msg)
    fields = (_unstructure.get(cls) or _unstructure_hook(cls))(msg)
    packer = getattr(_local, "packer", None) or _packer()
    return packer.pack([cls.TAG, fields])


def decode(raw: bytes | memoryview) -> Any:
    """The message in ``raw``; ``ProtocolError`` for anything malformed or unknown."""
    try:
        tag, body = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:  # noqa: BLE001 - any msgpack failure means a malformed frame
        raise ProtocolError(f"undecodable message: {exc}") from None
    try:
        structure = _structure.get(tag) or _structure_hook(tag)
    except TypeError:  # an unhashable tag
        structure = None
    if structure is None:
        raise ProtocolError(f"unknown message type {tag!r}")
    try:
        return structure(body)
    except KeyError as exc:
        raise ProtocolError(f"malformed {tag!r} message: missing field {exc}") from None
    except Exception as exc:  # noqa: BLE001 - cattrs raises a variety of errors
        raise ProtocolError(f"malformed {tag!r} message: {exc}") from None
