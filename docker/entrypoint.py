#!/usr/bin/env python3
"""Container entry point for every Hercules role (installed as ``docker-entrypoint``).

    docker-entrypoint [serve] [FLAGS]  run the role named by SERVER_TYPE (the default command)
    docker-entrypoint health           the HEALTHCHECK: ask the role itself (``hercules health``)
    docker-entrypoint ping ADDR...     native Ping to other servers, e.g. master:9090
    docker-entrypoint ping --chunkservers   Ping every chunkserver the master knows
    docker-entrypoint hercules ARGS    any hercules command (backup, restore, ls, cluster...)
    docker-entrypoint CMD ARGS         any other program (bash, sh...)

Before serving it fills in what a container cannot hard-code:

* ``SERVER_ADDRESS`` for a chunkserver when unset: ``<container IP>:<CHUNK_PORT or 8081>``,
  the address other containers on the network reach it at. This is what lets
  ``docker-compose up --scale chunkserver=N`` work: each replica advertises itself.
* ``ROOT_DIR`` from ``CHUNK_SLOTS`` when that is set and ROOT_DIR is not: the replica
  claims the first free ``$CHUNK_SLOTS/slot-<n>`` directory on a shared volume and holds
  an exclusive lock on it while it runs, so scaled replicas each get their own persistent
  data directory and a recreated replica picks up an orphaned one (its chunks included).
* Logging: to stderr (``docker logs``) and, when ``LOG_DIR`` is set and writable, also to
  ``$LOG_DIR/<role>.log``, rotated at ``LOG_MAX_BYTES`` (default 10 MiB) keeping
  ``LOG_BACKUPS`` (default 5) old files.
"""

from __future__ import annotations

import fcntl
import json
import logging
import logging.handlers
import os
import socket
import sys

ROLE_NAMES = {"master_server": "master", "chunk_server": "chunkserver", "gateway_server": "gateway",
              "master": "master", "chunkserver": "chunkserver", "gateway": "gateway"}
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_held_locks: list[int] = []  # slot lock descriptors, open for the life of the process


def role() -> str:
    return ROLE_NAMES.get(os.environ.get("SERVER_TYPE", ""), os.environ.get("SERVER_TYPE", ""))


def own_ip() -> str:
    """This container's address on its network (what ``hostname -i`` prints)."""
    name = socket.gethostname()
    try:
        return socket.gethostbyname(name)
    except OSError:
        return name


def derive_environment(claim_slot: bool) -> None:
    if role() != "chunkserver":
        return
    if not os.environ.get("SERVER_ADDRESS"):
        os.environ["SERVER_ADDRESS"] = f"{own_ip()}:{os.environ.get('CHUNK_PORT') or 8081}"
    slots = os.environ.get("CHUNK_SLOTS")
    if claim_slot and slots and not os.environ.get("ROOT_DIR"):
        os.environ["ROOT_DIR"] = claim(slots)


def claim(base: str) -> str:
    """Lock and return the first free ``slot-<n>`` directory under ``base``."""
    os.makedirs(base, exist_ok=True)
    for n in range(1, 10_000):
        path = os.path.join(base, f"slot-{n}")
        os.makedirs(path, exist_ok=True)
        fd = os.open(os.path.join(path, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.environ.get('SERVER_ADDRESS', '')}\n".encode())
        _held_locks.append(fd)
        print(f"docker-entrypoint: claimed data slot {path}", file=sys.stderr, flush=True)
        return path
    raise SystemExit(f"docker-entrypoint: no free slot under {base}")


def setup_logging() -> None:
    """Root handlers for stderr and a rotating file; ``hercules serve``'s basicConfig then keeps them."""
    level_name = os.environ.get("LOG_LEVEL", "info").upper()
    level = {"WARN": logging.WARNING}.get(level_name, getattr(logging, level_name, logging.INFO))
    if not isinstance(level, int):
        level = logging.INFO
    formatter = logging.Formatter(LOG_FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    log_dir = os.environ.get("LOG_DIR", "")
    if log_dir:
        path = os.path.join(log_dir, f"{role() or 'hercules'}.log")
        try:
            os.makedirs(log_dir, exist_ok=True)
            handlers.append(logging.handlers.RotatingFileHandler(
                path, maxBytes=int(os.environ.get("LOG_MAX_BYTES") or 10 << 20),
                backupCount=int(os.environ.get("LOG_BACKUPS") or 5)))
        except (OSError, ValueError) as exc:
            print(f"docker-entrypoint: not logging to {path}: {exc}", file=sys.stderr, flush=True)
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)


def hercules(args: list[str]) -> int:
    from hercules_core.cli import main

    return main(args)


def ping(targets: list[str]) -> int:
    """Native Ping to each target from inside this container; prints one JSON line per target."""
    import asyncio

    from hercules_core import messages as m
    from hercules_core.cli import run_async
    from hercules_core.config import load_config
    from hercules_core.framing import FrameLimits
    from hercules_core.plugins.manager import make_plugin_manager
    from hercules_core.rpc import ConnectionPool

    config = load_config()

    async def main() -> int:
        pool = ConnectionPool(make_plugin_manager().transport(config.transport), FrameLimits(), per_peer=1)
        failures = 0
        try:
            addresses = list(targets)
            if "--chunkservers" in addresses:
                addresses.remove("--chunkservers")
                reply, _ = await pool.call(config.master_addr, m.ClusterStatus(), timeout=5.0)
                addresses += [s.address for s in reply.chunkservers if s.state == "alive"]
            for address in dict.fromkeys(addresses):  # each once, in order
                loop = asyncio.get_running_loop()
                started = loop.time()
                try:
                    reply, _ = await pool.call(address, m.Ping(), timeout=5.0)
                    print(json.dumps({"address": address, "ok": True, "role": reply.role,
                                      "ms": round((loop.time() - started) * 1000, 1)}), flush=True)
                except Exception as exc:  # noqa: BLE001 - report every failure the same way
                    failures += 1
                    print(json.dumps({"address": address, "ok": False, "error": f"{type(exc).__name__}: {exc}"}),
                          flush=True)
        finally:
            await pool.close()
        return 1 if failures else 0

    return run_async(main())


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):  # `docker run IMAGE --log-level debug` means serve
        argv = ["serve", *argv]
    command = argv[0]
    if command == "serve":
        derive_environment(claim_slot=True)
        setup_logging()
        return hercules(["serve", *argv[1:]])
    if command == "health":
        derive_environment(claim_slot=False)
        return hercules(["health", *argv[1:]])
    if command == "ping":
        return ping(argv[1:] or [os.environ.get("MASTER_ADDR", "master:9090")])
    if command == "hercules":
        derive_environment(claim_slot=False)
        return hercules(argv[1:])
    os.execvp(command, argv)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
