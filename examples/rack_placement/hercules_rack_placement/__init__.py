"""Placement policy ``rack``: replicas spread over racks, an example third-party Hercules plugin.

The hook below is all Hercules sees of this package: it describes the policy (name, factory,
settings) and the master builds it at start-up when config says ``placement = "rack"``. The
settings are this plugin's own; the core fills them from ``[placement.rack]`` in the config
file or from ``HERCULES_PLACEMENT_RACK_<NAME>`` variables, checked against their types.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hercules_core.plugins import SettingSpec, hookimpl
from hercules_core.plugins.types import PlacementSpec

from hercules_rack_placement.policy import RackPolicy
from hercules_rack_placement.racks import DERIVATIONS, RackMap, parse_racks

HERCULES_API = 1  # the plugin API this package is written for; another core refuses it by name

SETTINGS = (
    SettingSpec("racks", str, "", help="server=rack pairs, comma-separated; a server is host:port, host or id"),
    SettingSpec("derive", str, "host", choices=DERIVATIONS,
                help="the rack of a server not in racks: its host, or its subnet (IPv4 /24)"),
    SettingSpec("strict", bool, False,
                help="never two replicas in one rack: fewer replicas rather than doubling up"),
)


def create(options: dict[str, Any]) -> RackPolicy:
    """The policy from its settings' values (the core passes every one, defaults included)."""
    return RackPolicy(RackMap(parse_racks(options.get("racks", "")), options.get("derive", "host")),
                      strict=options.get("strict", False))


@hookimpl
def hercules_placement_policies() -> Iterator[PlacementSpec]:
    yield PlacementSpec(name="rack", create=create, settings=SETTINGS,
                        description="one replica per rack first (racks from settings or addresses), by free space")


__all__ = ["SETTINGS", "RackMap", "RackPolicy", "create", "parse_racks"]
