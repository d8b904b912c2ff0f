"""The behaviour every placement policy must show; placement plugins run it against themselves.

Subclass ``PlacementContract`` in a test module under a name pytest collects (``Test...``) and
say how to build your policy::

    from hercules_core.plugins import make_plugin_manager
    from hercules_core.testing.placement_contract import PlacementContract, default_options

    class TestFirstFit(PlacementContract):
        def create_policy(self):
            spec = make_plugin_manager().placement("first")
            return spec.create(default_options(spec))

The master calls ``choose`` with its live chunkservers whenever it creates a chunk or repairs
one (then ``exclude`` holds the servers that already have a replica). What is checked is what
the master relies on: distinct servers drawn from those it was shown, never more than asked,
exactly as many as asked when enough qualify, never an excluded or full server, a preference
for free space, and purity (the arguments are left as they were; no I/O).

The servers the suite builds each sit on a host of their own (``10.0.<n>.1``), so a policy that
groups servers by host, subnet or a mapping of its own sees no reason to refuse any of them.
"""

from __future__ import annotations

import collections
import copy
from collections.abc import Sequence
from typing import Any

import pytest

from hercules_core.addresses import Address
from hercules_core.plugins.types import PlacementPolicy, PlacementSpec, ServerView

GiB = 1 << 30


def default_options(spec: PlacementSpec) -> dict[str, Any]:
    """What ``create`` receives when nothing in config sets the policy's settings."""
    return {setting.name: setting.default for setting in spec.settings}


def server(n: int, free_gib: int = 50, capacity_gib: int = 100, chunks: int = 0) -> ServerView:
    """Chunkserver ``s<n>`` on a host of its own, with ``free_gib`` of ``capacity_gib`` free."""
    return ServerView(f"s{n}", Address(f"10.0.{n}.1", 8081), capacity_gib * GiB,
                      (capacity_gib - free_gib) * GiB, chunks)


class PlacementContract:
    """Base class of the contract tests; override ``create_policy``.

    Not collected itself (its name does not start with ``Test``); each subclass is.
    """

    trials = 200  # calls per property: enough to catch a policy that is wrong only sometimes

    # -- what a subclass provides ---------------------------------------------------

    def create_policy(self) -> PlacementPolicy:
        """A fresh policy, usually ``spec.create(default_options(spec))``; called once per test."""
        raise NotImplementedError("subclass PlacementContract and implement create_policy()")

    # -- fixtures and helpers -----------------------------------------------------------

    @pytest.fixture
    def policy(self) -> PlacementPolicy:
        return self.create_policy()

    def choices(self, policy: PlacementPolicy, servers: Sequence[ServerView], count: int,
                exclude: frozenset[str] = frozenset()) -> list[list[ServerView]]:
        """``trials`` answers to the same question, each checked for what every answer must be."""
        answers = []
        for _ in range(self.trials):
            chosen = policy.choose(servers, count, exclude)
            assert isinstance(chosen, list), f"choose must return a list, not {type(chosen).__name__}"
            assert all(s in servers for s in chosen), "chose a server it was not shown"
            assert len({s.server_id for s in chosen}) == len(chosen), "chose one server twice"
            assert len(chosen) <= count, f"asked for {count}, got {len(chosen)}"
            assert not {s.server_id for s in chosen} & exclude, "chose an excluded server"
            answers.append(chosen)
        return answers

    # -- how many ---------------------------------------------------------------------

    @pytest.mark.parametrize("count", [1, 2, 3, 5])
    def test_exactly_as_many_as_asked_when_enough_qualify(self, policy: PlacementPolicy, count: int) -> None:
        servers = [server(n) for n in range(6)]
        for chosen in self.choices(policy, servers, count):
            assert len(chosen) == count

    def test_fewer_when_fewer_qualify(self, policy: PlacementPolicy) -> None:
        servers = [server(0), server(1)]
        for chosen in self.choices(policy, servers, 3):
            assert {s.server_id for s in chosen} == {"s0", "s1"}

    def test_nothing_asked_or_nothing_to_choose_from(self, policy: PlacementPolicy) -> None:
        assert policy.choose([server(0), server(1)], 0) == []
        assert policy.choose([], 3) == []
        assert policy.choose([server(0)], 2, frozenset({"s0"})) == []

    def test_a_large_cluster(self, policy: PlacementPolicy) -> None:
        servers = [server(n, free_gib=1 + n % 90) for n in range(200)]
        for chosen in self.choices(policy, servers, 3):
            assert len(chosen) == 3

    # -- which ------------------------------------------------------------------------

    def test_excluded_servers_are_never_chosen(self, policy: PlacementPolicy) -> None:
        servers = [server(n) for n in range(5)]
        exclude = frozenset({"s0", "s3"})
        for chosen in self.choices(policy, servers, 3, exclude):
            assert {s.server_id for s in chosen} == {"s1", "s2", "s4"}

    def test_excluding_servers_it_was_not_shown_is_harmless(self, policy: PlacementPolicy) -> None:
        servers = [server(n) for n in range(3)]
        for chosen in self.choices(policy, servers, 3, frozenset({"gone", "s9"})):
            assert len(chosen) == 3

    def test_full_servers_are_never_chosen(self, policy: PlacementPolicy) -> None:
        servers = [server(0, free_gib=0), server(1), server(2, free_gib=0, capacity_gib=0), server(3)]
        for chosen in self.choices(policy, servers, 3):
            assert {s.server_id for s in chosen} == {"s1", "s3"}

    def test_emptier_servers_are_preferred(self, policy: PlacementPolicy) -> None:
        servers = [server(0, free_gib=10), server(1, free_gib=95), server(2, free_gib=10), server(3, free_gib=10)]
        counts = collections.Counter(s.server_id for chosen in self.choices(policy, servers, 1) for s in chosen)
        assert counts["s1"] > max(counts["s0"], counts["s2"], counts["s3"]), counts

    def test_a_nearly_full_server_is_not_preferred(self, policy: PlacementPolicy) -> None:
        servers = [server(0, free_gib=80), server(1, free_gib=1), server(2, free_gib=80)]
        counts = collections.Counter(s.server_id for chosen in self.choices(policy, servers, 2) for s in chosen)
        assert counts["s1"] < min(counts["s0"], counts["s2"]), counts

    # -- purity -----------------------------------------------------------------------

    def test_the_arguments_are_left_as_they_were(self, policy: PlacementPolicy) -> None:
        servers = [server(n, free_gib=10 * (n + 1)) for n in range(5)]
        before = copy.deepcopy(servers)
        exclude = frozenset({"s2"})
        self.choices(policy, servers, 3, exclude)
        assert servers == before and exclude == frozenset({"s2"})

    def test_any_sequence_of_servers_is_accepted(self, policy: PlacementPolicy) -> None:
        servers = tuple(server(n) for n in range(4))
        for chosen in self.choices(policy, servers, 3):
            assert len(chosen) == 3

    def test_two_policies_share_no_state(self) -> None:
        """The master may build one per run (or per test): one's answers never depend on another's."""
        first, second = self.create_policy(), self.create_policy()
        servers = [server(n) for n in range(4)]
        self.choices(first, servers, 3, frozenset({"s0"}))
        for chosen in self.choices(second, servers[:2], 2):
            assert {s.server_id for s in chosen} == {"s0", "s1"}


__all__ = ["GiB", "PlacementContract", "default_options", "server"]
