"""Transport ``faults``: another transport (``tcp`` by default) with faults switched at run time.

It exists for tests (``hercules_core.testing.cluster.LocalCluster`` cuts and heals traffic
with it) and shows that a transport can be layered over another one chosen by name. Its
settings are declared on its descriptor (``[transport.faults]`` in the config file, or
``HERCULES_TRANSPORT_FAULTS_<NAME>``), read on first use as a transport reads them
(``hercules_core.config.plugin_options``), since any client dials it without a ``Config``:

- ``inner``: the transport that moves the frames (default ``tcp``);
- ``control``: the JSON control file with the rules (see ``rules``); empty, no fault is ever
  applied;
- ``name``: this process's name in that file's rules.

Rules are enforced where connections are dialled, for both directions of each connection;
accepted connections are the inner transport's own, untouched.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from hercules_core.addresses import Address
from hercules_core.config import plugin_options
from hercules_core.framing import FrameLimits
from hercules_core.plugins import hookimpl
from hercules_core.plugins.types import (
    ConnectionHandler,
    FrameConnection,
    FrameServer,
    SettingSpec,
    TransportSpec,
)

from hercules_transport_faults.connection import FaultyConnection, hold_while_dropped
from hercules_transport_faults.rules import Rule, Rules, parse_rules

__all__ = ["SETTINGS", "FaultSettings", "FaultyConnection", "Rule", "Rules", "faults_transport", "parse_rules"]

NAME = "faults"
PLUGIN = "transport_faults"


SETTINGS = (
    SettingSpec("inner", str, "tcp", help="the transport that moves the frames (never faults itself)"),
    SettingSpec("control", str, "", help="JSON control file with the rules (empty: no fault is ever applied)"),
    SettingSpec("name", str, "", help="this process's name in the control file's rules"),
)


@attrs.frozen
class FaultSettings:
    inner: str = "tcp"
    control: Path | None = None
    name: str = ""

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "FaultSettings":
        """From the values of ``SETTINGS`` (``plugin_options`` of the descriptor)."""
        control = options.get("control", "")
        return cls(inner=options.get("inner", "tcp") or "tcp", control=Path(control) if control else None,
                   name=options.get("name", ""))


def _inner_by_name(name: str) -> TransportSpec:
    from hercules_core.plugins.manager import make_plugin_manager

    return make_plugin_manager(block=[PLUGIN]).transport(name)  # never itself: no endless nesting


def faults_transport(settings: FaultSettings | None = None, inner: TransportSpec | None = None) -> TransportSpec:
    """A ``faults`` transport over ``inner`` (or the transport ``settings.inner`` names, found on
    first use); without ``settings``, its declared settings' values, read on first use."""
    resolved: list[tuple[Rules, TransportSpec]] = []

    def resolve() -> tuple[Rules, TransportSpec]:
        if not resolved:
            chosen = settings or FaultSettings.from_options(plugin_options(spec))
            resolved.append((Rules(chosen.control, chosen.name), inner or _inner_by_name(chosen.inner)))
        return resolved[0]

    async def connect(address: Address, limits: FrameLimits) -> FrameConnection:
        rules, wrapped = resolve()
        target = str(address)
        rule = await hold_while_dropped(rules, target)
        if rule is not None and rule.action == "refuse":
            raise ConnectionRefusedError(f"connection to {target} refused by a fault rule")
        return FaultyConnection(await wrapped.connect(address, limits), rules, target)

    async def serve(address: Address, handler: ConnectionHandler, limits: FrameLimits) -> FrameServer:
        return await resolve()[1].serve(address, handler, limits)

    over = settings.inner if settings is not None else "another transport (setting inner, tcp by default)"
    spec = TransportSpec(name=NAME, connect=connect, serve=serve, settings=SETTINGS,
                         description=f"{over} with drop, delay and refuse rules from a control file (tests)")
    return spec


@hookimpl
def hercules_transports() -> Iterator[TransportSpec]:
    yield faults_transport()
