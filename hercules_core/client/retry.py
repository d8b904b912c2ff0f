"""One retry policy for every client call: how long it keeps trying, how it backs off, what it retries.

The master calls, the chunk reads and writes and the record appends differ only in these numbers
and in what they do on a failure (forget a cached location, say what they wait for), so each
passes its own hooks to the same loop instead of keeping a loop of its own.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs

from hercules_core.errors import (
    ChecksumMismatch,
    NoSpace,
    NotFound,
    NotPrimary,
    StaleVersion,
    TooFewChunkservers,
    Unavailable,
)

T = TypeVar("T")
Errors = tuple[type[Exception], ...]
# A data operation retries these: a replica or the master went away, the lease moved, a replica is
# stale or lost the chunk, a block failed its checksum: another try (at fresh locations) may succeed.
DATA_RETRYABLE: Errors = (Unavailable, NotPrimary, StaleVersion, NotFound, ChecksumMismatch)
# Never retried, though Unavailable: the cluster is short of servers or space, and waiting
# on it would only hide that from the caller.
FATAL: Errors = (TooFewChunkservers, NoSpace)


@attrs.frozen
class RetryPolicy:
    """Retry ``retryable`` errors (except ``fatal`` ones) for ``retry_for`` seconds, with jittered
    exponential backoff from ``first_delay`` up to ``max_delay``. A try that would start past the
    deadline is not made: the last error is turned into the caller's ``give_up`` error instead."""

    retry_for: float
    first_delay: float = 0.05
    max_delay: float = 1.0
    retryable: Errors = (Unavailable,)
    fatal: Errors = FATAL

    def lasting(self, retry_for: float) -> RetryPolicy:
        """The same policy with another deadline."""
        return attrs.evolve(self, retry_for=retry_for)

    async def run(self, attempt: Callable[[], Awaitable[T]], *,
                  give_up: Callable[[Exception], Exception],
                  on_error: Callable[[Exception], None] | None = None,
                  on_wait: Callable[[Exception], None] | None = None) -> T:
        """``attempt()`` until it succeeds, fails with an error not retried, or time is up.

        ``on_error`` sees every retried error, the last one included (to drop what it proved
        wrong); ``on_wait`` is told once, before the first wait, what the call waits for.
        """
        deadline = time.monotonic() + self.retry_for
        delay = self.first_delay
        waited = False
        while True:
            try:
                return await attempt()
            except self.fatal:
                raise
            except self.retryable as exc:
                if on_error is not None:
                    on_error(exc)
                if time.monotonic() + delay > deadline:
                    raise give_up(exc) from exc
                if not waited and on_wait is not None:
                    on_wait(exc)
                waited = True
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.max_delay)
