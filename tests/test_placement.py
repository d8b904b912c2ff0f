"""The built-in placement policy: a pure function of (servers, count, exclude)."""

from __future__ import annotations

import collections

from hercules_core.addresses import Address
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
