"""``hercules bench``: throughput, latency and the machine's ceilings, every read verified.

Its own distribution (``hercules-bench``), so the core wheel and the images do not carry it;
``plugin`` adds the ``bench`` subcommand through the ``hercules_cli_commands`` hook.

Modules: ``options`` (knobs and flags), ``ceilings`` (disk and loopback limits), ``datagen``
(payloads), ``http`` (gateway streaming with aiohttp), ``s3`` (the same through the S3 port,
SigV4-signed when keys are set), ``workloads`` (what is measured),
``report`` (targets, table), ``profiling`` (cProfile + py-spy), ``runner`` (the run),
``peer`` (``--peer``: the gateway workloads against a peer system, round by round) and
``peer_seaweedfs`` (that peer's processes and HTTP API), ``peer_floor`` (the in-memory server
beside them: the most any server could reach with the bench's client),
``metadata_scale`` (the master's namespace at a million files, run on its own:
``python -m hercules_bench.metadata_scale``).
"""

from __future__ import annotations

import argparse

from hercules_bench.options import BenchOptions, add_arguments, options_from_args


def run_from_args(args: argparse.Namespace) -> int:
    """Entry point of ``hercules bench``: exit 0 ok, 1 a read did not match, 2 errors, 3 incomplete."""
    from hercules_bench.runner import run

    try:
        options = options_from_args(args)
    except ValueError as exc:
        raise SystemExit(f"hercules bench: error: {exc}") from None
    return run(options)


__all__ = ["BenchOptions", "add_arguments", "options_from_args", "run_from_args"]
