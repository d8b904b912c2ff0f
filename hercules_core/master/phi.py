"""Phi-accrual failure detection (Hayashibara et al.), in process.

Instead of a fixed timeout, each chunkserver's heartbeat inter-arrival times feed a
normal model; ``phi`` is -log10 of the probability that a heartbeat this late is still
coming. phi 1 means a 10 % chance of a false suspicion, 8 means 1e-8.

Parameters (``PhiParams``): ``threshold`` (8: dead above it), ``window`` (100 intervals
kept), ``min_std`` (floor on the spread, so a perfectly regular sender is not declared dead
after one late beat), ``acceptable_pause`` (added to the mean: pauses up to this long are
treated as normal, e.g. GC or a busy disk). With a 2 s heartbeat and the default 5 s pause,
a silent server crosses phi 8 about 8 s after its last heartbeat.
"""

from __future__ import annotations

import math
import time
from collections import deque

import attrs


@attrs.frozen
class PhiParams:
    threshold: float = 8.0
    window: int = 100
    min_std: float = 0.2
    acceptable_pause: float = 5.0


@attrs.define
class PhiDetector:
    params: PhiParams
    expected_interval: float
    intervals: deque[float] = attrs.field(init=False)
    last: float | None = None

    def __attrs_post_init__(self) -> None:
        self.intervals = deque(maxlen=self.params.window)
        # Seed with the expected interval so a fresh server is judged sensibly from the start.
        self.intervals.extend([self.expected_interval] * 2)

    def heartbeat(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self.last is not None:
            self.intervals.append(now - self.last)
        self.last = now

    def phi(self, now: float | None = None) -> float:
        if self.last is None:
            return 0.0
        now = time.monotonic() if now is None else now
        n = len(self.intervals)
        mean = sum(self.intervals) / n
        var = sum((x - mean) ** 2 for x in self.intervals) / n
        std = max(math.sqrt(var), self.params.min_std)
        y = max(-8.0, (now - self.last - mean - self.params.acceptable_pause) / std)
        # Logistic approximation of the normal CDF tail, as in Akka's detector.
        e = math.exp(-y * (1.5976 + 0.070566 * y * y))
        if y > 0:
            p_later = e / (1.0 + e)
        else:
            p_later = 1.0 - 1.0 / (1.0 + e)
        return max(0.0, -math.log10(max(p_later, 1e-300)))

    def available(self, now: float | None = None) -> bool:
        return self.phi(now) < self.params.threshold
