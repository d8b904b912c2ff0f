"""The ``hercules`` command: the parser, global options, exit codes, one-line errors.

Exit 0 on success, 1 when an operation failed, 2 for a misuse (argparse's own, a bad setting, a
broken plugin). A user's error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Coroutine
from importlib import metadata
from typing import Any

from hercules_core.cli import cluster, files
from hercules_core.cli.admin import add_admin_commands, run_async
from hercules_core.cli.errors import CommandError, Unreachable
from hercules_core.cli.output import say
from hercules_core.cli.remote import Remote, open_remote
from hercules_core.errors import ConfigError, HerculesError, PluginError
from hercules_core.plugins.manager import PluginManager, make_plugin_manager

Command = Callable[[Remote, argparse.Namespace], Coroutine[Any, Any, int]]


def _version() -> str:
    try:
        return metadata.version("hercules")
    except metadata.PackageNotFoundError:
        return "unknown"


def add_global_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """The same options before or after the subcommand: the top parser holds the defaults, a
    subcommand's copy sets a value only when given there (``SUPPRESS``)."""
    default: Any = None if top else argparse.SUPPRESS
    g = parser.add_argument_group("where the cluster is")
    g.add_argument("--master", "--master-addr", dest="master", default=default, metavar="HOST:PORT",
                   help="the master, native protocol (env HERCULES_MASTER; default 127.0.0.1:9090)")
    g.add_argument("--gateway", default=default, metavar="URL",
                   help="go through the gateway's REST API instead, e.g. http://127.0.0.1:8089 "
                        "(env HERCULES_GATEWAY)")
    g.add_argument("--token", default=default, help="bearer token for a gateway with authentication on "
                   "(env HERCULES_TOKEN)")
    g.add_argument("--transport", default="tcp" if top else argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="print JSON (the REST API's field names) instead of text")


def _paths(p: argparse.ArgumentParser, at_least_one: bool = True) -> None:
    p.add_argument("paths", nargs="+" if at_least_one else "*", metavar="PATH")


def _human(p: argparse.ArgumentParser) -> None:
    p.add_argument("-h", "--human-readable", dest="human", action="store_true", help="sizes like 1.5M")
    p.add_argument("--help", action="help", help="show this help and exit")


def _configure_ls(p: argparse.ArgumentParser) -> None:
    _paths(p, False)
    p.add_argument("-l", dest="long", action="store_true", help="long listing: type, replication, size, time")
    p.add_argument("-R", "--recursive", action="store_true", help="list subdirectories too")
    _human(p)


def _configure_du(p: argparse.ArgumentParser) -> None:
    _paths(p, False)
    p.add_argument("-s", "--summarize", action="store_true", help="only a total for each argument")
    _human(p)


def _configure_put(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="+", metavar="LOCAL", help="files (directories with -r; - for stdin)")
    p.add_argument("target", metavar="REMOTE")
    p.add_argument("-r", "--recursive", action="store_true", help="upload directories and their contents")
    p.add_argument("-n", "--no-clobber", action="store_true", help="do not replace an existing file")
    p.add_argument("--overwrite", action="store_true", help=argparse.SUPPRESS)  # the default now


def _configure_get(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="REMOTE")
    p.add_argument("local", nargs="?", metavar="LOCAL", help="file or directory (default .; - for stdout)")
    p.add_argument("-r", "--recursive", action="store_true", help="download a directory and its contents")


def _configure_sources(recursive: bool) -> Callable[[argparse.ArgumentParser], None]:
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("sources", nargs="+", metavar="SOURCE")
        p.add_argument("target", metavar="TARGET")
        if recursive:
            p.add_argument("-r", "-R", "--recursive", action="store_true", help="copy directories")
    return configure


def _configure_rm(p: argparse.ArgumentParser) -> None:
    _paths(p)
    p.add_argument("-r", "-R", "--recursive", action="store_true", help="remove directories and their contents")
    p.add_argument("-f", "--force", action="store_true", help="ignore paths that do not exist")


def _configure_mkdir(p: argparse.ArgumentParser) -> None:
    _paths(p)
    p.add_argument("-p", "--parents", action="store_true", help="make parents as needed; no error if existing")


def _configure_append(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="REMOTE")
    p.add_argument("local", nargs="?", default="-", metavar="LOCAL", help="the record's bytes (default stdin)")


def _configure_trash(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=("ls", "restore", "purge"), default="ls")
    _paths(p, False)


def _configure_pair(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("target", metavar="TARGET")


def _configure_df(p: argparse.ArgumentParser) -> None:
    _human(p)


# name, what it does, help line, its arguments, whether it owns -h (then --help is the help)
CLIENT_COMMANDS: list[tuple[str, Command, str, Callable[[argparse.ArgumentParser], None] | None, bool]] = [
    ("ls", files.cmd_ls, "list directories (-l long, -R recursive, -h human sizes)", _configure_ls, True),
    ("stat", files.cmd_stat, "show a file's or directory's metadata", lambda p: _paths(p), False),
    ("mkdir", files.cmd_mkdir, "make directories (-p: and their parents)", _configure_mkdir, False),
    ("put", files.cmd_put, "upload files (-r: directories) to REMOTE", _configure_put, False),
    ("get", files.cmd_get, "download REMOTE to LOCAL (-r: a directory; - for stdout)", _configure_get, False),
    ("cat", files.cmd_cat, "print files to stdout", lambda p: _paths(p), False),
    ("append", files.cmd_append, "append one record (stdin or LOCAL) to a file", _configure_append, False),
    ("rm", files.cmd_rm, "remove files (-r: directories) into the trash", _configure_rm, False),
    ("mv", files.cmd_mv, "rename or move files and directories", _configure_sources(False), False),
    ("cp", files.cmd_cp, "copy on the cluster (copy-on-write; -r for directories)", _configure_sources(True), False),
    ("du", files.cmd_du, "bytes used under each directory (-s total only, -h human)", _configure_du, True),
    ("df", cluster.cmd_df, "cluster capacity and usage (-h human)", _configure_df, True),
    ("cluster", cluster.cmd_cluster, "chunkservers and replication state", None, False),
    ("snapshot", cluster.cmd_snapshot, "copy-on-write snapshot of a file or directory", _configure_pair, False),
    ("trash", cluster.cmd_trash, "deleted entries: trash [ls], trash restore PATH, trash purge", _configure_trash,
     False),
    ("undelete", cluster.cmd_undelete, "restore paths from the trash (trash restore)", lambda p: _paths(p), False),
]


def _client_runner(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # a failed call's loose ends are not news

        async def go() -> int:
            remote = await open_remote(args.master, args.gateway, args.transport,
                                       on_wait=lambda what: say(f"hercules: {what} ..."), token=args.token)
            try:
                return await command(remote, args)
            finally:
                await remote.close()

        return run_async(go())

    return run


def build_parser(plugins: PluginManager | None = None) -> argparse.ArgumentParser:
    """The built-in commands, then those plugins contribute (``hercules_cli_commands``)."""
    parser = argparse.ArgumentParser(prog="hercules", description="Hercules, a distributed file system: "
                                     "move files, look after a cluster, run its roles.")
    parser.add_argument("--version", action="version", version=f"hercules {_version()}")
    add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_admin_commands(sub)
    for name, command, helptext, configure, owns_h in CLIENT_COMMANDS:
        p = sub.add_parser(name, help=helptext, description=helptext, add_help=not owns_h)
        if configure is not None:
            configure(p)
        add_global_options(p, top=False)
        p.set_defaults(func=_client_runner(command))
    _add_plugin_commands(sub, plugins if plugins is not None else make_plugin_manager())
    return parser


def _add_plugin_commands(sub: Any, plugins: PluginManager) -> None:
    """One subparser per plugin command; one whose ``configure_parser`` fails says so when invoked."""
    builtin = set(sub.choices)
    commands = plugins.cli_commands()
    owners = {name: row.distribution or row.name for row in plugins.list_plugins()
              for name in row.contributes.get("cli_command", ())}
    for name, spec in sorted(commands.items()):
        owner = owners.get(name, "?")
        if name in builtin:
            raise PluginError(f"command {name!r} of the plugin distribution {owner!r} clashes with the "
                              f"built-in `hercules {name}`: uninstall {owner} or have it renamed")
        p = sub.add_parser(name, help=spec.summary, description=spec.summary)
        try:
            if spec.configure_parser is not None:
                spec.configure_parser(p)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not break every command
            p.set_defaults(func=_refuse(f"command {name!r} from {owner!r} could not set up its arguments: "
                                        f"{type(exc).__name__}: {exc}"))
            continue
        p.set_defaults(func=spec.run)


def _refuse(message: str) -> Callable[[argparse.Namespace], int]:
    def refuse(args: argparse.Namespace) -> int:
        raise PluginError(message)

    return refuse


def main(argv: list[str] | None = None, plugins: PluginManager | None = None) -> int:
    try:
        args = build_parser(plugins).parse_args(argv)
        return args.func(args)
    except CommandError as exc:
        print(f"hercules: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except (PluginError, ConfigError, Unreachable) as exc:
        print(f"hercules: error: {exc.message}", file=sys.stderr)
        return 1 if isinstance(exc, Unreachable) else 2
    except HerculesError as exc:
        print(f"hercules: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `hercules cat /f | head`
        sys.stderr.close()
        return 0
