"""Request rates per principal: a token bucket each, in memory, shared by every port of the gateway.

A principal with ``rate`` (requests per second) in the credentials file has a bucket of ``burst``
requests (default: one second's worth, at least 1) refilled continuously at that rate; a request
finding it empty is refused (REST: 429 ``rate_limited`` with ``Retry-After``; the S3 port: S3's
``SlowDown``). The gateway runs one event loop, so a bucket is a plain object changed without a
lock: one dict lookup and a few float operations per request. Buckets are keyed by principal name:
a SIGHUP reload keeps each one's state and applies a changed rate at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import attrs
from aiohttp import web

from hercules_core.errors import ConfigError
from hercules_core.gateway.limits import json_error


@attrs.frozen
class Rate:
    per_second: float
    burst: float

    @classmethod
    def parse(cls, rate: object, burst: object, where: str) -> "Rate | None":
        """The entry's ``rate`` and ``burst`` (``None``: no limit); ``ConfigError`` naming ``where``."""
        if rate is None:
            if burst is not None:
                raise ConfigError(f"{where}: burst needs a rate (requests per second)")
            return None
        if not _positive(rate):
            raise ConfigError(f"{where}: rate must be a positive number of requests per second, not {rate!r}")
        if burst is None:
            return cls(float(rate), max(1.0, float(rate)))  # type: ignore[arg-type]
        if not _positive(burst) or float(burst) < 1:  # type: ignore[arg-type]
            raise ConfigError(f"{where}: burst must be a number of requests, at least 1, not {burst!r}")
        return cls(float(rate), float(burst))  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.per_second:g} requests per second (burst {self.burst:g})"


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@attrs.define
class _Bucket:
    tokens: float
    stamp: float


@attrs.define
class RateLimiter:
    """The buckets of the principals that have a rate."""

    clock: Callable[[], float] = time.monotonic
    buckets: dict[str, _Bucket] = attrs.field(factory=dict)

    def delay(self, name: str, rate: Rate) -> float:
        """0.0 if ``name`` may make a request now (and it is counted), else the seconds until it may."""
        now = self.clock()
        bucket = self.buckets.get(name)
        if bucket is None:
            bucket = self.buckets[name] = _Bucket(rate.burst, now)
        else:
            bucket.tokens = min(rate.burst, bucket.tokens + (now - bucket.stamp) * rate.per_second)
            bucket.stamp = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / rate.per_second

    def keep(self, names: set[str]) -> None:
        """Forget the buckets of principals no longer in the file."""
        for name in self.buckets.keys() - names:
            del self.buckets[name]


def rate_limited(name: str, rate: Rate, delay: float) -> web.Response:
    """The REST answer past a principal's rate: 429 in our shape, ``Retry-After`` in whole seconds."""
    retry = max(1, math.ceil(delay))
    response = json_error(429, "rate_limited", f"principal {name!r} may make {rate}; retry in {retry} s")
    response.headers["Retry-After"] = str(retry)
    return response
