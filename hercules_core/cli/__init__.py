"""The ``hercules`` command line.

- ``main``: the parser, global options (before or after the subcommand), exit codes, errors;
- ``files``: ls, stat, mkdir, put, get, cat, append, rm, mv, cp, du;
- ``cluster``: df, cluster, snapshot, trash;
- ``admin``: serve, dev, plugins, health, backup, restore;
- ``remote``: the native protocol or the gateway, behind one interface;
- ``output``, ``progress``, ``errors``: what is printed, transfer bars, coreutils-style errors.
"""

from hercules_core.cli.admin import run_async
from hercules_core.cli.main import build_parser, main

__all__ = ["build_parser", "main", "run_async"]
