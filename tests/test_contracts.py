"""The first-party plugins run the same contract suites a third party's plugin runs."""

from __future__ import annotations

from hercules_core.plugins import make_plugin_manager
from hercules_core.plugins.types import CliCommandSpec, PlacementPolicy, RouteSetSpec, TransportSpec
from hercules_core.testing.cli_contract import CliCommandContract
from hercules_core.testing.placement_contract import PlacementContract, default_options
from hercules_core.testing.routes_contract import RouteSetContract
from hercules_core.testing.transport_contract import TransportContract


class TestTcpTransport(TransportContract):
    def transport(self) -> TransportSpec:
        return make_plugin_manager(strict=True).transport("tcp")


class TestFaultsTransport(TransportContract):
    """Without a control file the faults transport must behave exactly as the one it wraps."""

    def transport(self) -> TransportSpec:
        return make_plugin_manager(strict=True).transport("faults")


class TestSpreadPlacement(PlacementContract):
    def create_policy(self) -> PlacementPolicy:
        spec = make_plugin_manager(strict=True).placement("spread")
        return spec.create(default_options(spec))


class TestRestV1Routes(RouteSetContract):
    status_paths = frozenset({"/health"})  # 503 {"status": "degraded", ...} while the master is away

    def route_set(self) -> RouteSetSpec:
        return make_plugin_manager(strict=True).route_set("rest-v1")


class TestDashboardRoutes(RouteSetContract):
    def route_set(self) -> RouteSetSpec:
        return make_plugin_manager(strict=True).route_set("dashboard")


class TestBenchCommand(CliCommandContract):
    example_args = ["--quick"]

    def command(self) -> CliCommandSpec:
        return make_plugin_manager(strict=True).cli_commands()["bench"]
