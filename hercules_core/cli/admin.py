"""The commands that run or look after a role: serve, dev, plugins, health, backup, restore."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Coroutine
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


def _setup_logging(config: Config) -> None:
    from hercules_core.logs import setup_logging

    setup_logging(config.log_level, config.log_format, config.role)


# -- commands -------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from hercules_core.roles import serve

    config = _config(args)
    _setup_logging(config)
    plugins = make_plugin_manager()
    run_async(serve(config, plugins, ready=lambda address: print(f"{config.role} ready on {address}",
                                                                  flush=True)))
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from hercules_core.dev import run_dev

    return run_dev(args)


def cmd_plugins(args: argparse.Namespace) -> int:
    """List plugins with their settings' current values; ``--check`` loads strictly and validates."""
    config = load_config(file=args.config)
    if args.check:
        try:
            problems = make_plugin_manager(strict=True).check(config)
        except HerculesError as exc:
            problems = [exc.message]
        for problem in problems:
            print(f"hercules plugins --check: {problem}", file=sys.stderr)
        if not problems:
            print("plugins ok")
        return 1 if problems else 0
    rows = make_plugin_manager().list_plugins(config)
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
        for setting in row.settings:
            current = f"error: {setting.error}" if setting.error else repr(setting.current)
            print(f"    setting {setting.area}.{setting.contribution}.{setting.name} ({setting.type}, "
                  f"default {setting.default!r}) = {current}  [{setting.env}]  {setting.help}")
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
                scheme = "https" if config.tls_cert else "http"  # its own listener: no need to verify it
                async with session.get(f"{scheme}://{host}:{address.port}/health", ssl=False) as resp:
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

    from hercules_core.backup import backup, configured_store

    size = run_async(backup(*configured_store(_config(args)), Path(args.out)))
    print(json.dumps({"backup": args.out, "bytes": size}))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hercules_core.backup import configured_store, restore

    config = _config(args)
    run_async(restore(*configured_store(config), Path(args.archive), force=args.force))
    print(json.dumps({"restored": args.archive, "root_dir": str(config.data_dir())}))
    return 0


def add_admin_commands(sub: Any) -> None:
    """serve, dev, plugins, health, backup, restore: each takes its settings as flags of its own."""
    p = sub.add_parser("serve", help="run one role (master, chunkserver or gateway)")
    _add_config_flags(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("dev", help="run a local cluster: master, chunkservers and gateway")
    p.add_argument("--data", default="./data", help="data directory (default ./data)")
    p.add_argument("--chunkservers", type=int, default=3)
    p.add_argument("--store", help="chunk store plugin for the chunkservers (fs, zstd...; "
                   "default HERCULES_CHUNK_STORE, else fs)")
    p.add_argument("--master-port", type=int, default=9090)
    p.add_argument("--chunk-port", type=int, default=8081, help="first chunkserver port")
    p.add_argument("--gateway-port", type=int, default=8089)
    p.add_argument("--s3-port", type=int, default=8333, help="the gateway's S3 API (with hercules-s3 installed)")
    p.add_argument("--chunk-size", default=None, help="chunk size, e.g. 64MiB")
    p.set_defaults(func=cmd_dev)

    p = sub.add_parser("plugins", help="list installed plugins, what they contribute and their settings")
    p.add_argument("--json", action="store_true")
    p.add_argument("--check", action="store_true",
                   help="load every plugin strictly and validate descriptors and settings; exit 1 with the reasons")
    p.add_argument("--config", help="TOML file whose plugin tables give the current values")
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
