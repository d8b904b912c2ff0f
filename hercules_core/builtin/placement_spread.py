"""Placement policy ``spread``: distinct hosts first, weighted towards free space.

A pure function of the servers it is shown: the master passes only live chunkservers.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

from hercules_core.plugins import hookimpl
from hercules_core.plugins.types import PlacementSpec, ServerView


class SpreadPolicy:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def choose(self, servers: Sequence[ServerView], count: int,
               exclude: frozenset[str] = frozenset()) -> list[ServerView]:
        pool = [s for s in servers if s.server_id not in exclude and s.free_bytes > 0]
        chosen: list[ServerView] = []
        hosts = {s.address.host for s in servers if s.server_id in exclude}  # holders' hosts are taken
        # Two passes: first one replica per host, then (if hosts run out) any remaining server.
        for distinct_hosts in (True, False):
            candidates = [s for s in pool if s not in chosen and (not distinct_hosts or s.address.host not in hosts)]
            while candidates and len(chosen) < count:
                pick = self._weighted(candidates)
                chosen.append(pick)
                hosts.add(pick.address.host)
                candidates = [s for s in candidates if s is not pick
                              and (not distinct_hosts or s.address.host not in hosts)]
        return chosen

    def _weighted(self, servers: Sequence[ServerView]) -> ServerView:
        """Free space as the weight, so emptier servers fill first without herding on one."""
        weights = [max(s.free_bytes, 1) for s in servers]
        return self._rng.choices(list(servers), weights=weights, k=1)[0]


def create(options: dict[str, Any]) -> SpreadPolicy:
    seed = options.get("seed")
    return SpreadPolicy(random.Random(seed) if seed is not None else None)


@hookimpl
def hercules_placement_policies() -> Iterator[PlacementSpec]:
    yield PlacementSpec(name="spread", create=create,
                        description="distinct hosts first, weighted by free space")
