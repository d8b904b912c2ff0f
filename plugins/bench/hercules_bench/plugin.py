"""Registers ``hercules bench`` with the core CLI (entry point ``bench`` in the ``hercules`` group)."""

from __future__ import annotations

from collections.abc import Iterator

from hercules_core.plugins import hookimpl
from hercules_core.plugins.types import CliCommandSpec

from hercules_bench.options import add_arguments


def _run(args: object) -> int:
    from hercules_bench import run_from_args  # the runner and its workloads load only when asked for

    return run_from_args(args)  # type: ignore[arg-type]


@hookimpl
def hercules_cli_commands() -> Iterator[CliCommandSpec]:
    yield CliCommandSpec(name="bench", summary="measure throughput and latency against the machine's ceilings",
                         configure_parser=add_arguments, run=_run)
