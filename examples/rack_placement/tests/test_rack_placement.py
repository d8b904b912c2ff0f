"""The rack policy: Hercules' placement contract, then what racks add to it.

Only ``hercules_core`` (its plugin manager and ``hercules_core.testing``) and this package are
used: run ``pip install -e .[test] && pytest`` beside an installed Hercules.
"""

from __future__ import annotations

import collections

import pytest

from hercules_core.addresses import Address
from hercules_core.plugins import make_plugin_manager
from hercules_core.plugins.types import PlacementPolicy, PlacementSpec, ServerView
from hercules_core.testing.placement_contract import PlacementContract, default_options, server

from hercules_rack_placement import parse_racks

TRIALS = 200


def rack_spec() -> PlacementSpec:
    """Found the way the master finds it: through the ``hercules`` entry point, by name."""
    return make_plugin_manager(strict=True).placement("rack")


def rack_policy(**options: object) -> PlacementPolicy:
    spec = rack_spec()
    return spec.create({**default_options(spec), **options})


def racks_of(chosen: list[ServerView], mapping: dict[str, str]) -> list[str]:
    return [mapping[s.server_id] for s in chosen]


class TestRackPlacementContract(PlacementContract):
    """With its defaults (every host its own rack) it is a placement policy like any other."""

    def create_policy(self) -> PlacementPolicy:
        return rack_policy()


class TestRackPlacementContractWithRacks(PlacementContract):
    """With a mapping that gives each of the suite's servers a rack of its own, too."""

    def create_policy(self) -> PlacementPolicy:
        return rack_policy(racks=",".join(f"s{n}=rack{n}" for n in range(200)))


# Six servers in three racks: r1 holds three of them, r2 two, r3 one.
SERVERS = [server(n) for n in range(6)]
RACKS = {"s0": "r1", "s1": "r1", "s2": "r1", "s3": "r2", "s4": "r2", "s5": "r3"}
RACKS_SETTING = ",".join(f"{sid}={rack}" for sid, rack in RACKS.items())


def test_settings_are_declared_with_types_and_defaults() -> None:
    settings = {s.name: (s.type, s.default) for s in rack_spec().settings}
    assert settings == {"racks": (str, ""), "derive": (str, "host"), "strict": (bool, False)}


def test_replicas_go_to_distinct_racks() -> None:
    policy = rack_policy(racks=RACKS_SETTING)
    for _ in range(TRIALS):
        assert sorted(racks_of(policy.choose(SERVERS, 3), RACKS)) == ["r1", "r2", "r3"]


def test_servers_are_named_by_address_host_or_id() -> None:
    by_address = ",".join(f"{s.address}={RACKS[s.server_id]}" for s in SERVERS)
    by_host = ",".join(f"{s.address.host}={RACKS[s.server_id]}" for s in SERVERS)
    for setting in (by_address, by_host):
        policy = rack_policy(racks=setting)
        for _ in range(50):
            assert sorted(racks_of(policy.choose(SERVERS, 3), RACKS)) == ["r1", "r2", "r3"]


def test_a_repair_goes_to_a_rack_the_chunk_is_not_on() -> None:
    policy = rack_policy(racks=RACKS_SETTING)
    for _ in range(TRIALS):  # replicas on s0 (r1) and s3 (r2): the third copy must go to r3
        assert [s.server_id for s in policy.choose(SERVERS, 1, exclude=frozenset({"s0", "s3"}))] == ["s5"]


def test_when_racks_run_out_servers_are_doubled_up_unless_strict() -> None:
    loose, strict = rack_policy(racks=RACKS_SETTING), rack_policy(racks=RACKS_SETTING, strict=True)
    for _ in range(TRIALS):
        chosen = loose.choose(SERVERS, 5)
        assert len(chosen) == 5 and set(racks_of(chosen, RACKS)) == {"r1", "r2", "r3"}
        assert racks_of(chosen, RACKS)[:3].count("r1") <= 1  # one per rack comes first
        assert sorted(racks_of(strict.choose(SERVERS, 5), RACKS)) == ["r1", "r2", "r3"]


def test_a_rack_with_more_free_space_is_preferred() -> None:
    servers = [server(0, free_gib=90), server(1, free_gib=5), server(2, free_gib=5)]
    policy = rack_policy(racks="s0=big,s1=small,s2=small")
    counts = collections.Counter(policy.choose(servers, 1)[0].server_id for _ in range(TRIALS))
    assert counts["s0"] > counts["s1"] + counts["s2"]


def test_subnet_derivation_puts_a_subnet_in_one_rack() -> None:
    servers = [server(0), server(1), server(2)]  # hosts 10.0.0.1, 10.0.1.1, 10.0.2.1
    same_subnet = [ServerView(f"t{n}", Address(f"10.9.9.{n + 1}", 8081), s.capacity_bytes, s.used_bytes)
                   for n, s in enumerate(servers)]
    policy = rack_policy(derive="subnet", strict=True)
    for _ in range(50):
        assert len(policy.choose(servers, 3)) == 3  # three subnets: three racks
        assert len(policy.choose(same_subnet, 3)) == 1  # one subnet: one rack, and strict


@pytest.mark.parametrize("bad", ["s0", "s0=", "=r1", "s0=r1,s0=r2"])
def test_a_bad_mapping_is_refused_naming_the_setting(bad: str) -> None:
    with pytest.raises(ValueError, match="racks"):
        rack_policy(racks=bad)


def test_parse_racks_accepts_spaces_and_newlines() -> None:
    assert parse_racks(" a:1 = r1 ,\n b = r2,, ") == {"a:1": "r1", "b": "r2"}
