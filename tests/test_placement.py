"""The built-in placement policy: a pure function of (servers, count, exclude)."""

from __future__ import annotations

import collections
import random
from collections.abc import Sequence

from hercules_core.addresses import Address
from hercules_core.master.maintenance import move_target
from hercules_core.plugins import make_plugin_manager
from hercules_core.plugins.types import ServerView

GiB = 1 << 30


def server(n: int, host: str, free_gib: int, capacity_gib: int = 100) -> ServerView:
    return ServerView(f"s{n}", Address(host, 8081 + n), capacity_gib * GiB, (capacity_gib - free_gib) * GiB)


def spread(seed: int = 1):  # noqa: ANN201 - hercules_placement_policies through the plugin manager
    return make_plugin_manager().placement("spread").create({"seed": seed})


def test_replicas_go_to_distinct_hosts_first() -> None:
    servers = [server(0, "10.0.0.1", 50), server(1, "10.0.0.1", 50), server(2, "10.0.0.2", 50),
               server(3, "10.0.0.3", 50)]
    for seed in range(50):
        chosen = spread(seed).choose(servers, 3)
        assert len({s.server_id for s in chosen}) == 3
        assert len({s.address.host for s in chosen}) == 3


def test_one_host_still_gets_distinct_servers() -> None:
    servers = [server(n, "127.0.0.1", 10) for n in range(4)]
    chosen = spread().choose(servers, 3)
    assert len({s.server_id for s in chosen}) == 3


def test_full_and_excluded_servers_are_never_chosen_and_fewer_may_return() -> None:
    servers = [server(0, "a", 0), server(1, "b", 10), server(2, "c", 10)]
    for seed in range(30):
        chosen = spread(seed).choose(servers, 3, exclude=frozenset({"s1"}))
        assert [s.server_id for s in chosen] == ["s2"]


def test_emptier_servers_are_preferred() -> None:
    servers = [server(0, "a", 90), server(1, "b", 10), server(2, "c", 10), server(3, "d", 10)]
    policy = spread(7)
    counts = collections.Counter(policy.choose(servers, 1)[0].server_id for _ in range(2000))
    assert counts["s0"] > 2 * max(counts["s1"], counts["s2"], counts["s3"])


def test_spread_counts_the_hosts_of_excluded_holders_as_taken() -> None:
    """``exclude`` holds the servers that keep a replica: a repair copy goes to another host."""
    servers = [server(0, "a", 50), server(1, "a", 90), server(2, "b", 10)]
    for seed in range(30):
        assert [s.server_id for s in spread(seed).choose(servers, 1, exclude=frozenset({"s0"}))] == ["s2"]


# --- the rebalancer asks the policy where a moved replica goes -----------------------------------


class RackPolicy:
    """A test placement plugin: one replica per rack (the letter before the host's dot) first,
    then, unless strict, any server; free space as the weight (as examples/rack_placement)."""

    def __init__(self, strict: bool, seed: int) -> None:
        self.strict = strict
        self.rng = random.Random(seed)

    @staticmethod
    def rack(s: ServerView) -> str:
        return s.address.host.split(".")[0]

    def choose(self, servers: Sequence[ServerView], count: int,
               exclude: frozenset[str] = frozenset()) -> list[ServerView]:
        taken = {self.rack(s) for s in servers if s.server_id in exclude}
        pool = [s for s in servers if s.server_id not in exclude and s.free_bytes > 0]
        chosen: list[ServerView] = []
        for per_rack in (True,) if self.strict else (True, False):
            while len(chosen) < count:
                fits = [s for s in pool if s not in chosen and not (per_rack and self.rack(s) in taken)]
                if not fits:
                    break
                chosen.append(self.rng.choices(fits, weights=[s.free_bytes for s in fits])[0])
                taken.add(self.rack(chosen[-1]))
        return chosen


def test_a_move_goes_where_the_policy_puts_it_and_keeps_its_racks() -> None:
    """Replicas on racks r1 (the full source), r2, r3; below their share: one server on r2 (a rack
    taken) and one on r4. The policy's draw moves the replica to r4 or leaves it (the source is
    one of its choices too), never into r2."""
    source, others = server(0, "r1.h0", 10), [server(1, "r2.h1", 50), server(2, "r3.h2", 50)]
    takers = [server(3, "r2.h3", 95), server(4, "r4.h4", 60)]
    for strict in (True, False):
        targets = [move_target(RackPolicy(strict, seed), source, others, takers) for seed in range(60)]
        ids = {getattr(t, "server_id", None) for t in targets}
        assert "s4" in ids and ids <= {"s4", None}, (strict, ids)


def test_a_replica_stays_where_only_a_taken_rack_would_take_it() -> None:
    """A non-strict policy would double up in r2 if it had to; a move never makes it have to."""
    source, others = server(0, "r1.h0", 10), [server(1, "r2.h1", 50), server(2, "r3.h2", 50)]
    takers = [server(3, "r2.h3", 95), server(4, "r3.h4", 95)]
    for strict in (True, False):
        for seed in range(40):
            assert move_target(RackPolicy(strict, seed), source, others, takers) is None, (strict, seed)


def test_a_move_within_the_sources_rack_is_a_fair_choice_and_holders_are_never_targets() -> None:
    source, others = server(0, "r1.h0", 10), [server(1, "r2.h1", 50)]
    takers = [server(1, "r2.h1", 50), server(2, "r1.h2", 90), server(3, "r3.h3", 90)]
    targets = {getattr(move_target(RackPolicy(True, seed), source, others, takers), "server_id", None)
               for seed in range(60)}
    assert targets <= {"s2", "s3", None} and {"s2", "s3"} <= targets
    assert move_target(RackPolicy(True, 1), source, others, takers, busy=frozenset({"s2", "s3"})) is None
    assert move_target(spread(), source, others, []) is None


def test_a_full_source_is_still_a_place_to_stay() -> None:
    source, others = server(0, "r1.h0", 0), [server(1, "r2.h1", 50), server(2, "r3.h2", 50)]
    takers = [server(3, "r2.h3", 95)]
    for seed in range(20):
        assert move_target(RackPolicy(False, seed), source, others, takers) is None
