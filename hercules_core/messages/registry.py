"""The registry of wire messages: each attrs class is registered under a short type tag."""

from __future__ import annotations

from typing import TypeVar

import attrs

T = TypeVar("T")
REGISTRY: dict[str, type] = {}


def message(tag: str):
    """Register an attrs class as a wire message under ``tag``."""

    def wrap(cls: type[T]) -> type[T]:
        if tag in REGISTRY:
            raise ValueError(f"duplicate message tag {tag!r}")
        cls = attrs.frozen(cls)
        cls.TAG = tag  # type: ignore[attr-defined]
        REGISTRY[tag] = cls
        return cls

    return wrap
