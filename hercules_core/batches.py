"""Taking a batch off a queue of waiting records: the one record append both a client and a
primary make of records that queued behind the append in flight."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def take_joining(queue: list[T], first: T, joins: Callable[[T], bool], size: Callable[[T], int],
                 limit: int) -> list[T]:
    """``first`` and, in queue order, the others in ``queue`` that ``joins`` accepts while their
    sizes together stay within ``limit`` (``first`` goes even if it alone is larger); every item
    of the batch leaves ``queue``."""
    batch, total = [first], size(first)
    for item in queue:
        if item is not first and joins(item):
            if total + size(item) > limit:
                break
            batch.append(item)
            total += size(item)
    taken = set(map(id, batch))
    queue[:] = [item for item in queue if id(item) not in taken]
    return batch


__all__ = ["take_joining"]
