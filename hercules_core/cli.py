"""The ``hercules`` command: serve a role, run a local cluster, inspect plugins, move files."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import attrs

from hercules_core.config import FIELDS, Config, load_config
from hercules_core.errors import HerculesError
from hercules_core.plugins.manager import make_plugin_manager


def run_async(main: Coroutine[Any, Any, Any]) -> Any:
    """Run on uvloop where available; chosen here, in the entry point, never at import."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _config(args: argparse.Namespace) -> Config:
    flags = {name: getattr(args, name) for name in FIELDS if getattr(args, name, None) is not None}
    return load_config(flags, file=getattr(args, "config", None))


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML file with settings (lowest precedence)")
    for name, field in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, dest=name, default=None, metavar=name.upper(),
                            help=f"(env {_env(name)}; default {field.default!r})"
                            if not isinstance(field.default, attrs.Factory) else f"(env {_env(name)})")


def _env(name: str) -> str:
    from hercules_core.config import env_name

    return env_name(name)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# -- commands -------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from hercules_core.roles import serve

    config = _config(args)
    _setup_logging(config.log_level)
    plugins = make_plugin_manager()
    run_async(serve(config, plugins, ready=lambda address: print(f"{config.role} ready on {address}",
                                                                  flush=True)))
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from hercules_core.dev import run_dev

    return run_dev(args)


def cmd_plugins(args: argparse.Namespace) -> int:
    plugins = make_plugin_manager()
    rows = plugins.list_plugins()
    if args.json:
        print(json.dumps([attrs.asdict(r) for r in rows], indent=2))
        return 0
    for row in rows:
        version = f" {row.version}" if row.version else ""
        print(f"{row.name}  [{row.status}]  {row.distribution or '-'}{version}")
        if row.hooks:
            print(f"    hooks: {', '.join(row.hooks)}")
        for area, names in sorted(row.contributes.items()):
            print(f"    {area}: {', '.join(names)}")
        if row.error:
            print(f"    error: {row.error}")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    """Ask the configured role itself whether it serves (used by container health checks)."""
    config = _config(args)

    async def check() -> str:
        if config.role == "gateway":
            import aiohttp

            address = config.gateway_address()
            host = "127.0.0.1" if address.host == "0.0.0.0" else address.host
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
                async with session.get(f"http://{host}:{address.port}/health") as resp:
                    body = await resp.json()
                    if resp.status != 200:
                        raise HerculesError(f"gateway unhealthy: {body}")
                    return json.dumps(body)
        from hercules_core import messages as m
        from hercules_core.framing import FrameLimits
        from hercules_core.rpc import ConnectionPool

        address = config.server_address()
        target = f"127.0.0.1:{address.port}" if not address.is_ip_literal else str(address)
        pool = ConnectionPool(make_plugin_manager().transport(config.transport), FrameLimits(), per_peer=1)
        try:
            reply, _ = await pool.call(target, m.Ping(), timeout=5.0)
        finally:
            await pool.close()
        return json.dumps({"role": reply.role, **reply.info})

    print(run_async(check()))
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hercules_core.backup import backup

    config = _config(args)
    size = backup(config.data_dir(), Path(args.out))
    print(json.dumps({"backup": args.out, "bytes": size}))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hercules_core.backup import restore

    config = _config(args)
    restore(Path(args.archive), config.data_dir(), force=args.force)
    print(json.dumps({"restored": args.archive, "root_dir": str(config.data_dir())}))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from hercules_core.bench import run_from_args

    return run_from_args(args)


def _client_command(fn: Callable[[Any, argparse.Namespace], Coroutine[Any, Any, Any]]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        from hercules_core.client import connect

        config = _config(args)

        async def main() -> Any:
            client = await connect(config.master_addr, config.transport)
            try:
                return await fn(client, args)
            finally:
                await client.close()

        result = run_async(main())
        if result is not None:
            print(json.dumps(result, indent=2, default=str))
        return 0

    return run


async def _put(client: Any, args: argparse.Namespace) -> Any:
    with open(args.local, "rb") as fh:
        info = await client.upload(args.path, fh, overwrite=args.overwrite)
    return attrs.asdict(info)


async def _get(client: Any, args: argparse.Namespace) -> None:
    out = sys.stdout.buffer if args.local == "-" else open(args.local, "wb")
    try:
        async for piece in client.download(args.path):
            out.write(piece)
    finally:
        if out is not sys.stdout.buffer:
            out.close()


async def _ls(client: Any, args: argparse.Namespace) -> Any:
    listing = await client.list(args.path, recursive=args.recursive)
    return [attrs.asdict(e) for e in listing.entries]


async def _mkdir(client: Any, args: argparse.Namespace) -> Any:
    return attrs.asdict(await client.mkdir(args.path))


async def _rm(client: Any, args: argparse.Namespace) -> None:
    await client.delete(args.path, recursive=args.recursive)


async def _mv(client: Any, args: argparse.Namespace) -> None:
    await client.rename(args.source, args.target)


async def _stat(client: Any, args: argparse.Namespace) -> Any:
    return attrs.asdict(await client.stat(args.path))


async def _snapshot(client: Any, args: argparse.Namespace) -> Any:
    return attrs.asdict(await client.snapshot(args.source, args.target))


async def _undelete(client: Any, args: argparse.Namespace) -> Any:
    return attrs.asdict(await client.undelete(args.path))


async def _trash(client: Any, args: argparse.Namespace) -> Any:
    return [attrs.asdict(e) for e in (await client.trash()).entries]


async def _cluster(client: Any, args: argparse.Namespace) -> Any:
    return attrs.asdict(await client.cluster())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hercules", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run one role (master, chunkserver or gateway)")
    _add_config_flags(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("dev", help="run a local cluster: master, chunkservers and gateway")
    p.add_argument("--data", default="./data", help="data directory (default ./data)")
    p.add_argument("--chunkservers", type=int, default=3)
    p.add_argument("--store", default="fs", help="chunk store plugin for the chunkservers (fs, zstd...)")
    p.add_argument("--master-port", type=int, default=9090)
    p.add_argument("--chunk-port", type=int, default=8081, help="first chunkserver port")
    p.add_argument("--gateway-port", type=int, default=8089)
    p.add_argument("--chunk-size", default=None, help="chunk size, e.g. 64MiB")
    p.set_defaults(func=cmd_dev)

    p = sub.add_parser("plugins", help="list installed plugins and what they contribute")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("health", help="ask this process's role (from config) whether it serves")
    _add_config_flags(p)
    p.set_defaults(func=cmd_health)

    p = sub.add_parser("backup", help="online, consistent copy of the master's metadata")
    p.add_argument("--out", required=True, help="file to write")
    _add_config_flags(p)
    p.set_defaults(func=cmd_backup, role="master")

    p = sub.add_parser("restore", help="load a metadata backup into a stopped master's ROOT_DIR")
    p.add_argument("archive")
    p.add_argument("--force", action="store_true", help="replace existing metadata")
    _add_config_flags(p)
    p.set_defaults(func=cmd_restore, role="master")

    p = sub.add_parser("bench", help="measure throughput and latency against the machine's ceilings")
    from hercules_core.bench.options import add_arguments as add_bench_arguments

    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)

    for name, fn, helptext, extra in [
        ("put", _put, "upload a local file", [("local", {}), ("path", {}),
                                              ("--overwrite", {"action": "store_true"})]),
        ("get", _get, "download a file (to - for stdout)", [("path", {}), ("local", {"nargs": "?", "default": "-"})]),
        ("ls", _ls, "list a directory", [("path", {"nargs": "?", "default": "/"}),
                                        ("--recursive", {"action": "store_true"})]),
        ("mkdir", _mkdir, "make a directory and its parents", [("path", {})]),
        ("rm", _rm, "delete a file or directory", [("path", {}), ("--recursive", {"action": "store_true"})]),
        ("mv", _mv, "rename a file or directory", [("source", {}), ("target", {})]),
        ("stat", _stat, "show a file's metadata", [("path", {})]),
        ("snapshot", _snapshot, "copy-on-write snapshot of a file or directory", [("source", {}), ("target", {})]),
        ("undelete", _undelete, "restore a deleted path from the trash", [("path", {})]),
        ("trash", _trash, "list deleted entries and when they are purged", []),
        ("cluster", _cluster, "show chunkservers and replication state", []),
    ]:
        p = sub.add_parser(name, help=helptext)
        for arg, kwargs in extra:
            p.add_argument(arg, **kwargs)
        p.add_argument("--master-addr", dest="master_addr", default=None, help="master host:port (env MASTER_ADDR)")
        p.add_argument("--transport", default=None)
        p.set_defaults(func=_client_command(fn))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HerculesError as exc:
        print(f"hercules: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `hercules get /f | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
