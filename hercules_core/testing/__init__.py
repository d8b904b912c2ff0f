"""Test kits Hercules ships for plugin authors: one contract suite per kind of plugin.

Subclass a suite's ``...Contract`` class in your own test module, say how to build your
plugin, and pytest runs every guarantee the core relies on against it (the first-party plugins
run the very same suites, in the project's ``tests/test_contracts.py``):

- ``transport_contract.TransportContract``: frames, limits, malformed frames, close semantics;
- ``store_contract.ChunkStoreContract``: chunk bytes, versions, checksums, restarts;
- ``placement_contract.PlacementContract``: distinct, never excluded or full, prefers free space, pure;
- ``routes_contract.RouteSetContract``: registers without clashing, no crash, errors as JSON;
- ``metadata_contract``: the metadata store's guarantees (see ``hercules_core.master.store``);
- ``cli_contract.CliCommandContract``: a subcommand's name, summary, arguments and help;
- ``cluster.LocalCluster``: a real cluster of processes on loopback, to see a plugin in effect.

Importing this package imports nothing else (the suites need pytest; the cluster does not).
"""

# The contract suite of each hook, by hook name: docs/plugins.md is generated from it, and a
# test fails when a hook in ``hercules_core.plugins.hookspecs`` has none.
CONTRACTS: dict[str, str] = {
    "hercules_transports": "hercules_core.testing.transport_contract",
    "hercules_chunk_stores": "hercules_core.testing.store_contract",
    "hercules_placement_policies": "hercules_core.testing.placement_contract",
    "hercules_gateway_routes": "hercules_core.testing.routes_contract",
    "hercules_metadata_stores": "hercules_core.testing.metadata_contract",
    "hercules_cli_commands": "hercules_core.testing.cli_contract",
}

__all__ = ["CONTRACTS"]
