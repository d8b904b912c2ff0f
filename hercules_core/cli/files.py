"""File commands: ls, stat, mkdir, put, get, cat, append, rm, mv, cp, du.

Each is ``async def cmd(remote, args) -> int`` over the ``Remote`` interface, so it works the
same through the native protocol and the gateway. Arguments are set up in ``commands.py``.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import sys
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import IO, Any

from hercules_core import errors as e
from hercules_core.cli.errors import CommandError, failing
from hercules_core.cli.output import full_time, long_rows, print_json, size
from hercules_core.cli.progress import Transfer
from hercules_core.cli.remote import Entry, Remote

READ_BLOCK = 1 << 20  # small enough that a progress bar sees its rate grow
RM_HINT = {e.NotEmpty: "use rm -r", e.IsADirectory: "use rm -r"}


def remote_path(path: str) -> str:
    """Remote paths are absolute; ``docs/a`` means ``/docs/a``. A trailing / is kept (it says
    "into this directory" to put, mv and cp)."""
    return path if path.startswith("/") else "/" + path


def join(directory: str, name: str) -> str:
    return posixpath.join(directory.rstrip("/") or "/", name)


async def lookup(remote: Remote, path: str) -> Entry | None:
    try:
        return await remote.stat(path.rstrip("/") or "/")
    except e.NotFound:
        return None


async def destination(remote: Remote, sources: list[str], target: str) -> tuple[str, bool]:
    """(target, whether each source goes *into* it): a trailing /, several sources or an existing
    directory mean into; several sources need that directory."""
    found = await lookup(remote, target)
    into = target.endswith("/") or len(sources) > 1 or bool(found and found["is_dir"])
    if len(sources) > 1 and not (found and found["is_dir"]):
        raise CommandError(f"target '{target}' is not a directory")
    return target.rstrip("/") or "/", into


# -- looking -----------------------------------------------------------------------------------


async def cmd_ls(remote: Remote, args: argparse.Namespace) -> int:
    for n, path in enumerate(remote_path(p) for p in args.paths or ["/"]):
        with failing("cannot access", path):
            entry = await remote.stat(path)
            entries = await remote.list(path, recursive=args.recursive) if entry["is_dir"] else [entry]
        entries.sort(key=lambda x: x["path"])
        if args.json:
            print_json({"path": entry["path"], "entries": entries})
            continue
        groups: dict[str, list[Entry]] = defaultdict(list)
        for item in entries:
            groups[posixpath.dirname(item["path"]) if entry["is_dir"] else entry["path"]].append(item)
        if entry["is_dir"]:
            groups.setdefault(entry["path"], [])
        headers = args.recursive or len(args.paths) > 1
        for i, (directory, items) in enumerate(sorted(groups.items())):
            if headers:
                print(("\n" if n or i else "") + f"{directory}:")
            lines = long_rows(items, args.human) if args.long else [x["name"] for x in items]
            for line in lines:
                print(line)
    return 0


async def cmd_stat(remote: Remote, args: argparse.Namespace) -> int:
    for path in map(remote_path, args.paths):
        with failing("cannot stat", path):
            entry = await remote.stat(path)
        if args.json:
            print_json(entry)
            continue
        kind = "directory" if entry["is_dir"] else "regular file"
        print(f"  File: {entry['path']}\n  Size: {entry['size']:<12} Chunks: {entry['chunk_count']:<8} "
              f"Replication: {entry['replication']:<4} {kind}\n"
              f"Modify: {full_time(entry['modified'])}\n Birth: {full_time(entry['created'])}")
    return 0


async def cmd_du(remote: Remote, args: argparse.Namespace) -> int:
    for path in map(remote_path, args.paths or ["/"]):
        with failing("cannot access", path):
            entry = await remote.stat(path)
            entries = await remote.list(path, recursive=True) if entry["is_dir"] else []
        totals: dict[str, int] = defaultdict(int)
        totals[entry["path"]] = entry["size"] if not entry["is_dir"] else 0
        for item in entries:
            if item["is_dir"]:
                totals[item["path"]] += 0
                continue
            parent = posixpath.dirname(item["path"])
            while True:  # every directory from the file's up to the one asked about
                totals[parent] += item["size"]
                if parent == entry["path"] or parent == "/":
                    break
                parent = posixpath.dirname(parent)
        shown = [entry["path"]] if args.summarize else sorted(totals, key=lambda p: (-p.count("/"), p))
        if not args.summarize and entry["path"] in shown:  # like du: the argument itself comes last
            shown.remove(entry["path"])
            shown.append(entry["path"])
        for p in shown:
            if args.json:
                print_json({"path": p, "size": totals[p]})
            else:
                print(f"{size(totals[p], args.human)}\t{p}")
    return 0


# -- changing the namespace ----------------------------------------------------------------------


async def cmd_mkdir(remote: Remote, args: argparse.Namespace) -> int:
    for path in map(remote_path, args.paths):
        with failing("cannot create directory", path):
            if not args.parents:
                if await lookup(remote, path) is not None:
                    raise e.AlreadyExists(path)
                parent = await lookup(remote, posixpath.dirname(path.rstrip("/")))
                if parent is None:
                    raise e.NotFound(path)
                if not parent["is_dir"]:
                    raise e.NotADirectory(path)
            entry = await remote.mkdir(path)
        if args.json:
            print_json(entry)
    return 0


async def cmd_rm(remote: Remote, args: argparse.Namespace) -> int:
    failed = 0
    for path in map(remote_path, args.paths):
        try:
            with failing("cannot remove", path, RM_HINT):
                if not args.recursive and (found := await lookup(remote, path)) and found["is_dir"]:
                    raise e.IsADirectory(path)
                await remote.delete(path, recursive=args.recursive)
        except CommandError as exc:
            if args.force and exc.message.endswith("No such file or directory"):
                continue
            print(f"hercules: {exc.message}", file=sys.stderr)
            failed = 1
            continue
        if args.json:
            print_json({"deleted": path})
    return failed


async def cmd_mv(remote: Remote, args: argparse.Namespace) -> int:
    sources = [remote_path(p) for p in args.sources]
    target, into = await destination(remote, sources, remote_path(args.target))
    for source in sources:
        dest = join(target, posixpath.basename(source.rstrip("/"))) if into else target
        with failing(f"cannot move '{source}' to", dest):
            await remote.rename(source, dest)
        if args.json:
            print_json({"source": source, "target": dest})
    return 0


async def cmd_cp(remote: Remote, args: argparse.Namespace) -> int:
    """Server-side: a copy-on-write snapshot shares the chunks until either copy is written."""
    sources = [remote_path(p) for p in args.sources]
    target, into = await destination(remote, sources, remote_path(args.target))
    for source in sources:
        with failing("cannot stat", source):
            entry = await remote.stat(source)
        if entry["is_dir"] and not args.recursive:
            raise CommandError(f"-r not specified; omitting directory '{source}' (use cp -r)")
        dest = join(target, posixpath.basename(source.rstrip("/"))) if into else target
        with failing(f"cannot copy '{source}' to", dest):
            copied = await remote.snapshot(source, dest)
        if args.json:
            print_json(copied)
    return 0


# -- moving data ---------------------------------------------------------------------------------


async def read_blocks(fh: IO[bytes]) -> AsyncIterator[bytes]:
    while block := fh.read(READ_BLOCK):
        yield block


async def upload_file(remote: Remote, local: str, dest: str, args: argparse.Namespace) -> None:
    with failing("cannot open", local):
        fh = sys.stdin.buffer if local == "-" else open(local, "rb")
    with fh, Transfer(f"put {dest}", None if local == "-" else os.fstat(fh.fileno()).st_size) as bar:
        with failing(f"cannot put '{local}' to", dest):
            entry = await remote.upload(dest, bar.counting(read_blocks(fh)), bar.total, not args.no_clobber)
    if args.json:
        print_json(entry)


async def cmd_put(remote: Remote, args: argparse.Namespace) -> int:
    target, into = await destination(remote, args.sources, remote_path(args.target))
    for local in args.sources:
        if local != "-" and not os.path.exists(local):
            raise CommandError(f"cannot stat '{local}': No such file or directory")
        dest = join(target, os.path.basename(os.path.normpath(local))) if into and local != "-" else target
        if not os.path.isdir(local):
            await upload_file(remote, local, dest, args)
            continue
        if not args.recursive:
            raise CommandError(f"omitting directory '{local}' (use put -r)")
        for root, dirs, files in os.walk(local):
            dirs.sort()
            here = join(dest, os.path.relpath(root, local)) if root != local else dest
            with failing("cannot create directory", here):
                await remote.mkdir(here)
            for name in sorted(files):
                await upload_file(remote, os.path.join(root, name), join(here, name), args)
    return 0


async def download_to(remote: Remote, entry: Entry, local: str) -> None:
    """Into a hidden temporary file beside ``local``, renamed into place once complete: a failed
    download leaves nothing behind, and never half a file under the real name."""
    directory = os.path.dirname(local) or "."
    with failing("cannot create", local):
        fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(local)}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, Transfer(f"get {entry['path']}", entry["size"]) as bar:
            with failing("cannot get", entry["path"]):
                async for piece in bar.counting(remote.download(entry["path"])):
                    out.write(piece)
        with failing("cannot create", local):
            os.replace(temp, local)
    except BaseException:
        os.unlink(temp)
        raise


async def to_stdout(remote: Remote, path: str, what: str) -> None:
    out = sys.stdout.buffer
    with failing(what, path):
        async for piece in remote.download(path):
            out.write(piece)
    out.flush()


async def cmd_get(remote: Remote, args: argparse.Namespace) -> int:
    source = remote_path(args.source)
    with failing("cannot stat", source):
        entry = await remote.stat(source)
    if entry["is_dir"] and not args.recursive:
        raise CommandError(f"omitting directory '{source}' (use get -r)")
    if args.local == "-":
        if entry["is_dir"]:
            raise CommandError(f"cannot write the directory '{source}' to stdout")
        if sys.stdout.isatty():
            raise CommandError("refusing to write file data to a terminal: give a LOCAL path, "
                               f"pipe it (hercules get {source} - | ...), or use hercules cat")
        await to_stdout(remote, source, "cannot get")
        return 0
    name = posixpath.basename(entry["path"]) or "root"
    local = args.local or "."
    if os.path.isdir(local):  # like cp: into an existing directory
        local = os.path.join(local, name)
    if not entry["is_dir"]:
        await download_to(remote, entry, local)
        return 0
    with failing("cannot access", source):
        entries = await remote.list(source, recursive=True)
    with failing("cannot create directory", local):
        os.makedirs(local, exist_ok=True)
        for item in sorted(entries, key=lambda x: x["path"]):
            if item["is_dir"]:
                os.makedirs(os.path.join(local, posixpath.relpath(item["path"], entry["path"])), exist_ok=True)
    for item in entries:
        if not item["is_dir"]:
            await download_to(remote, item, os.path.join(local, posixpath.relpath(item["path"], entry["path"])))
    return 0


async def cmd_cat(remote: Remote, args: argparse.Namespace) -> int:
    for path in map(remote_path, args.paths):
        await to_stdout(remote, path, "cannot read")
    return 0


async def cmd_append(remote: Remote, args: argparse.Namespace) -> int:
    """One record append (the primary picks the offset) of LOCAL's bytes or stdin's; the file is
    made if missing."""
    path = remote_path(args.path)
    with failing("cannot open", args.local):
        data = sys.stdin.buffer.read() if args.local == "-" else open(args.local, "rb").read()
    with failing("cannot append to", path):
        try:
            reply: dict[str, Any] = await remote.append(path, data)
        except e.NotFound:
            await remote.create(path)
            reply = await remote.append(path, data)
    if args.json:
        print_json(reply)
    return 0
