"""The rack-aware policy: one replica per rack first, each pick weighted by free space."""

from __future__ import annotations

import random
from collections.abc import Sequence

from hercules_core.plugins.types import ServerView

from hercules_rack_placement.racks import RackMap


class RackPolicy:
    """A pure function of the servers it is shown (``PlacementPolicy``): no I/O, no memory of calls.

    When the master repairs a chunk, ``exclude`` holds the servers that still have a replica:
    their racks count as taken, so the new copy goes to a rack the chunk is not on yet.
    """

    def __init__(self, racks: RackMap, strict: bool = False, rng: random.Random | None = None) -> None:
        self.racks = racks
        self.strict = strict
        self._rng = rng or random.Random()

    def choose(self, servers: Sequence[ServerView], count: int,
               exclude: frozenset[str] = frozenset()) -> list[ServerView]:
        taken = {self.racks.rack_of(s) for s in servers if s.server_id in exclude}
        pool = [s for s in servers if s.server_id not in exclude and s.free_bytes > 0]
        chosen: list[ServerView] = []
        # First one replica per rack not yet holding the chunk; then, unless strict, any server.
        for per_rack in (True, False) if not self.strict else (True,):
            while len(chosen) < count:
                candidates = [s for s in pool if s not in chosen
                              and not (per_rack and self.racks.rack_of(s) in taken)]
                if not candidates:
                    break
                pick = self._weighted(candidates)
                chosen.append(pick)
                taken.add(self.racks.rack_of(pick))
        return chosen

    def _weighted(self, servers: Sequence[ServerView]) -> ServerView:
        """Free space as the weight: emptier servers (and so racks) fill first, without herding."""
        return self._rng.choices(list(servers), weights=[max(s.free_bytes, 1) for s in servers], k=1)[0]
