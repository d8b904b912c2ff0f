"""Cluster commands: df, cluster, snapshot, trash [ls|restore|purge]."""

from __future__ import annotations

import argparse
from typing import Any

from hercules_core.cli.errors import CommandError, failing
from hercules_core.cli.files import remote_path
from hercules_core.cli.output import columns, ls_time, print_json, size
from hercules_core.cli.remote import Remote


def usage(servers: list[dict[str, Any]]) -> dict[str, int]:
    """Raw capacity of the live chunkservers (every replica counts): what ``df`` reports."""
    alive = [s for s in servers if s["state"] == "alive"]
    capacity = sum(s["capacity_bytes"] for s in alive)
    used = sum(s["used_bytes"] for s in alive)
    return {"capacity_bytes": capacity, "used_bytes": used, "available_bytes": max(0, capacity - used),
            "chunkservers_alive": len(alive), "chunkservers": len(servers)}


def percent(used: int, capacity: int) -> str:
    return f"{-(-100 * used // capacity)}%" if capacity else "-"


async def cmd_df(remote: Remote, args: argparse.Namespace) -> int:
    info = await remote.cluster()
    total = usage(info["chunkservers"])
    if args.json:
        print_json({**total, "replication": info["replication"], "chunk_size": info["chunk_size"]})
        return 0
    rows = [("Chunkserver", "Size", "Used", "Avail", "Use%", "State")]
    for s in sorted(info["chunkservers"], key=lambda s: s["address"]):
        cap, used = s["capacity_bytes"], s["used_bytes"]
        rows.append((s["address"], size(cap, args.human), size(used, args.human),
                     size(max(0, cap - used), args.human), percent(used, cap), s["state"]))
    cap, used = total["capacity_bytes"], total["used_bytes"]
    rows.append(("total", size(cap, args.human), size(used, args.human), size(total["available_bytes"], args.human),
                 percent(used, cap), f"{total['chunkservers_alive']}/{total['chunkservers']} alive"))
    print("\n".join(columns(rows, right=(1, 2, 3, 4))))
    print(f"(raw bytes on the chunkservers; each file is stored {info['replication']} times)")
    return 0


async def cmd_cluster(remote: Remote, args: argparse.Namespace) -> int:
    info = await remote.cluster()
    if args.json:
        print_json(info)
        return 0
    print(f"chunk size {size(info['chunk_size'], True)}, replication {info['replication']}; "
          f"under-replicated {info['under_replicated']}, missing {info['missing_chunks']}, "
          f"pending deletions {info['pending_deletions']}")
    rows = [("ID", "Address", "State", "Used", "Size", "Chunks", "Phi", "Heartbeat")]
    for s in sorted(info["chunkservers"], key=lambda s: s["address"]):
        rows.append((s["server_id"], s["address"], s["state"], size(s["used_bytes"], True),
                     size(s["capacity_bytes"], True), str(s["chunk_count"]), f"{s['phi']:.1f}",
                     f"{s['last_heartbeat_age']:.1f}s ago"))
    print("\n".join(columns(rows, right=(3, 4, 5, 6))))
    return 0


async def cmd_snapshot(remote: Remote, args: argparse.Namespace) -> int:
    source, target = remote_path(args.source), remote_path(args.target)
    with failing(f"cannot snapshot '{source}' to", target):
        entry = await remote.snapshot(source, target)
    if args.json:
        print_json(entry)
    return 0


async def cmd_trash(remote: Remote, args: argparse.Namespace) -> int:
    action = args.action or "ls"
    if action == "ls":
        entries = await remote.trash()
        if args.json:
            print_json({"entries": entries})
            return 0
        rows = [("Deleted", "Purged", "Size", "Path")]
        rows += [(ls_time(t["deleted_at"]), ls_time(t["purge_at"]), size(t["size"], True),
                  t["original_path"] + ("/" if t["is_dir"] else "")) for t in entries]
        print("\n".join(columns(rows, right=(2,))) if entries else "the trash is empty")
        return 0
    if action == "restore":
        if not args.paths:
            raise CommandError("trash restore: name the path(s) to restore (hercules trash restore /path)", 2)
        for path in map(remote_path, args.paths):
            with failing("cannot restore", path):
                entry = await remote.undelete(path)
            if args.json:
                print_json(entry)
        return 0
    freed = await remote.purge_trash()
    if args.json:
        print_json({"purged_chunks": freed})
    else:
        print(f"the trash is empty ({freed} chunk{'s' if freed != 1 else ''} freed)")
    return 0


async def cmd_undelete(remote: Remote, args: argparse.Namespace) -> int:
    args.action = "restore"
    return await cmd_trash(remote, args)
