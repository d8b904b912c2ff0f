"""Crash recovery: the master killed at random moments, chunkservers killed mid-upload, backup and restore."""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from math import inf
from pathlib import Path

import attrs
import pytest

from hercules_core.client import Client, connect
from hercules_core.errors import HerculesError, NotFound
from hercules_core.plugins import make_plugin_manager
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import GFS, MiB, Http, file_handles, replica_contents, sha256, wait_until

RECOVERY = {**GFS, "HERCULES_LEASE_SECONDS": "1.5"}


@attrs.define
class Content:
    """What a file may hold: its bytes, which of them a failed mutation left unknown, and where
    past its end a failed one may have put bytes (docs/consistency.md: a failed write's range is
    inconsistent until rewritten; a record append is at least once, interspersed with padding and
    duplicates). Everything else must read back exactly: acknowledged bytes, and zeros in holes."""

    data: bytearray = attrs.field(factory=bytearray)
    unknown: bytearray = attrs.field(factory=bytearray)  # 1 where any byte is allowed
    beyond: list[tuple[int, float]] = attrs.field(factory=list)  # failed ranges past the end

    def grow(self, size: int) -> None:
        """Up to ``size`` bytes: zeros, or unknown where a failed mutation may have left some."""
        for p in range(len(self.data), size):
            self.unknown.append(any(a <= p < b for a, b in self.beyond))
        self.data.extend(bytes(size - len(self.data)))

    def wrote(self, offset: int, piece: bytes) -> None:
        """An acknowledged write or append: defined bytes, however unknown they were."""
        self.grow(max(len(self.data), offset + len(piece)))
        self.data[offset:offset + len(piece)] = piece
        self.unknown[offset:offset + len(piece)] = bytes(len(piece))

    def failed(self, start: int, end: float) -> None:
        """A failed mutation may have applied in ``start..end`` (on some replicas only)."""
        within = min(end, len(self.data))
        self.unknown[start:int(within)] = b"\1" * max(0, int(within) - start)
        if end > len(self.data):
            self.beyond.append((max(start, len(self.data)), end))

    def could_end_at(self, size: int) -> bool:
        """A failed write's or append's new size may have been recorded before its answer was lost."""
        return size == len(self.data) or (size > len(self.data) and any(b >= size for _, b in self.beyond))

    def difference(self, got: bytes) -> str | None:
        for i in range(len(got)):
            if not self.unknown[i] and self.data[i] != got[i]:
                return f"byte {i} is {got[i]}, expected {self.data[i]}"
        return None


class Model:
    """What the client was told: every acknowledged mutation, and the paths whose fate is unknown."""

    def __init__(self) -> None:
        self.files: dict[str, Content] = {}
        self.dirs: set[str] = {"/"}
        self.uncertain: list[tuple[str, tuple]] = []

    def moved(self, source: str, target: str) -> None:
        """An unknown write follows its file: a write that failed on `source` may have landed."""
        self.uncertain = [
            ("data", (target,)) if kind == "data" and args[0] == source else (kind, args)
            for kind, args in self.uncertain
        ]


async def _step(client: Client, model: Model, rng: random.Random, n: int) -> None:
    kind = rng.choice(["mkdir", "create", "create", "write", "write", "append", "rename", "delete"])
    files = sorted(model.files)
    if kind == "mkdir":
        path = f"/d{n % 7}/s{n}"
        await client.mkdir(path)
        model.dirs.update({f"/d{n % 7}", path})
    elif kind == "create" or not files:
        parent = rng.choice(sorted(model.dirs))
        path = f"{parent.rstrip('/')}/f{n}"
        try:
            await client.create(path)
        except BaseException:
            model.uncertain.append(("create", (path,)))
            raise
        model.files[path] = Content()
    elif kind in ("write", "append"):
        path = rng.choice(files)
        content = model.files[path]
        data = rng.randbytes(rng.randrange(1, 3000))
        end = len(content.data)
        try:
            if kind == "write":
                offset = rng.randrange(0, end + 2000)
                await client.write(path, offset, data)
            else:
                offset = await client.append(path, data)
                content.failed(end, offset)  # tries that failed within the call, before the record
        except BaseException:
            # a write may have applied in its range, an append anywhere past the end
            content.failed(*((offset, offset + len(data)) if kind == "write" else (end, inf)))
            model.uncertain.append(("data", (path,)))
            raise
        content.wrote(offset, data)
    elif kind == "rename":
        source = rng.choice(files)
        target = f"{source.rsplit('/', 1)[0]}/r{n}"
        try:
            await client.rename(source, target)
        except BaseException:
            model.uncertain.append(("rename", (source, target)))
            raise
        model.files[target] = model.files.pop(source)
        model.moved(source, target)
    else:
        path = rng.choice(files)
        try:
            await client.delete(path)
        except BaseException:
            model.uncertain.append(("delete", (path,)))
            raise
        del model.files[path]


async def _exists(client: Client, path: str) -> bool:
    try:
        await client.stat(path)
        return True
    except NotFound:
        return False


async def _verify(client: Client, model: Model) -> None:
    # Operations that never got an answer must be all or nothing; then the model follows reality.
    # Names are settled first, so a write of unknown fate is read under the name its file has now.
    for kind, args in list(model.uncertain):
        if kind == "create":
            if await _exists(client, args[0]):
                model.files.setdefault(args[0], Content())
        elif kind == "rename":
            source, target = args
            there = await _exists(client, source), await _exists(client, target)
            assert there in ((True, False), (False, True)), f"rename {source} -> {target} half applied: {there}"
            if there[1] and source in model.files:
                model.files[target] = model.files.pop(source)
                model.moved(source, target)
        elif kind == "delete" and not await _exists(client, args[0]):
            model.files.pop(args[0], None)
    for kind, args in model.uncertain:
        if kind == "data" and args[0] in model.files:
            # A failed write's or append's new size may have been recorded: the file is that long now
            content, size = model.files[args[0]], (await client.stat(args[0])).size
            assert content.could_end_at(size), (args[0], size, len(content.data), content.beyond)
            content.grow(size)
    model.uncertain.clear()
    for d in model.dirs:
        assert (await client.stat(d)).is_dir, d
    for path, content in model.files.items():
        info = await client.stat(path)
        assert info.size == len(content.data), (path, info.size, len(content.data))
        difference = content.difference(await client.read(path))
        assert difference is None, f"{path}: content differs after restart: {difference}"


def test_master_killed_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(2026)
    with LocalCluster(tmp_path, settings=RECOVERY) as c:
        async def main() -> int:
            client = Client(c.master_addr, make_plugin_manager().transport("tcp"), master_retry_for=60.0)
            await client.start()
            model, n, kills = Model(), 0, 0
            failures: list[str] = []
            deadline = time.monotonic() + 240
            try:
                while kills < 20:
                    assert time.monotonic() < deadline, f"only {kills} restarts in time"

                    def kill_and_restart() -> None:
                        time.sleep(rng.uniform(0.05, 1.0))
                        c.procs["master"].signal(signal.SIGKILL)
                        c.procs["master"].proc.wait()
                        c.start_master()

                    killer = threading.Thread(target=kill_and_restart)
                    killer.start()
                    while killer.is_alive():  # operations run across the kill and the restart
                        n += 1
                        try:
                            await _step(client, model, rng, n)
                        except HerculesError as exc:
                            failures.append(f"{type(exc).__name__}: {exc}")  # unacknowledged: uncertain
                    killer.join()
                    kills += 1
                    await _verify(client, model)
                print(f"\n{n} operations, {kills} master kills, {len(failures)} unacknowledged: {failures[:5]}")
                return n
            finally:
                await client.close()

        ops = asyncio.run(main())
        assert ops >= 40


def test_chunkserver_killed_during_a_large_upload(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, settings=GFS) as c:
        h = Http(c.gateway_url)
        data = random.randbytes(48 * MiB)
        result: dict = {}

        def upload() -> None:
            up = Http(c.gateway_url)
            result["status"], result["body"] = up.json("PUT", "/api/v1/files/big.bin", data)
            up.close()

        thread = threading.Thread(target=upload)
        thread.start()
        time.sleep(0.5)
        c.procs["chunk2"].signal(signal.SIGKILL)
        thread.join(180)
        assert not thread.is_alive()
        if result["status"] == 201:
            assert sha256(h.request("GET", "/api/v1/files/big.bin")[2]) == sha256(data)
        else:  # a clear error, and nothing half-made is visible
            assert result["status"] in (500, 502, 503, 504, 507), result
            assert result["body"]["error"]["message"]
            assert h.json("GET", "/api/v1/fileinfo?path=/big.bin")[0] == 404
        c.start_chunkserver(1)  # comes back, reports its chunks; stale or unknown ones are reconciled
        c.wait_live(3)
        if result["status"] == 201:
            async def all_current() -> bool:
                client = await connect(c.master_addr)
                try:
                    for handle in await file_handles(client, "/big.bin"):
                        contents = await replica_contents(client, handle)
                        if len(contents) != 3 or len(set(contents.values())) != 1:
                            return False
                    return True
                finally:
                    await client.close()

            wait_until(lambda: asyncio.run(all_current()), 60, "every chunk back at 3 identical replicas")
            assert sha256(h.request("GET", "/api/v1/files/big.bin")[2]) == sha256(data)
        h.close()


def _hercules(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hercules_core", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_backup_while_writing_then_restore_into_a_fresh_master(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, settings=GFS) as c:
        h = Http(c.gateway_url)
        acknowledged: dict[str, bytes] = {}
        stop = threading.Event()

        def writer() -> None:
            w = Http(c.gateway_url)
            n = 0
            while not stop.is_set() and n < 400:
                data = random.randbytes(random.randrange(1, 600_000))
                if w.json("PUT", f"/api/v1/files/w/{n}", data)[0] == 201:
                    acknowledged[f"/w/{n}"] = data
                n += 1
            w.close()

        thread = threading.Thread(target=writer)
        thread.start()
        wait_until(lambda: len(acknowledged) >= 10, 60, "some files written")
        before_backup = dict(acknowledged)
        backup = tmp_path / "meta.backup"
        proc = _hercules("backup", "--root-dir", str(c.root / "master"), "--out", str(backup))
        assert proc.returncode == 0, proc.stderr
        by_backup_end = dict(acknowledged)
        wait_until(lambda: len(acknowledged) > len(by_backup_end) + 3, 60, "writes after the backup")
        stop.set()
        thread.join(60)
        after_backup = set(acknowledged) - set(by_backup_end)

        # its chunks vanish from every disk: the master must notice. Not a packed file (most files
        # here are above the 256 KiB this cluster packs): that has no chunk of its own, and losing
        # its pack would take the other files in it along.
        chunk_counts = {p: h.json("GET", f"/api/v1/fileinfo?path={p}")[1]["chunk_count"] for p in sorted(before_backup)}
        victim = next(p for p, count in chunk_counts.items() if count)
        victim_handles = [h.json("GET", f"/api/v1/chunk/handle?path={victim}&index={i}")[1]["handle"]
                          for i in range(chunk_counts[victim])]
        assert victim_handles
        c.procs["master"].stop()
        for handle in victim_handles:
            for i in range(3):
                for f in c.chunk_dir(i).rglob(f"{handle:016x}.*"):
                    f.unlink()
        shutil.move(c.root / "master", tmp_path / "old-master")
        proc = _hercules("restore", str(backup), "--root-dir", str(c.root / "master"))
        assert proc.returncode == 0, proc.stderr
        c.start_master()
        c.wait_live(3)
        for path, data in before_backup.items():
            if path != victim:
                status, _, got = h.request("GET", f"/api/v1/files{path}")
                assert status == 200 and got == data, path
        wait_until(lambda: h.json("GET", "/api/v1/cluster")[1]["missing_chunks"] == len(victim_handles), 30,
                   "the restored master to report the chunks nobody holds")
        listing = h.json("GET", "/api/v1/list?path=/w")[1]["entries"]
        restored = {e["path"] for e in listing}
        assert set(before_backup) <= restored <= set(by_backup_end) | {f"/w/{len(by_backup_end)}"}
        assert not restored & after_backup
        for path in restored - {victim}:  # whatever the backup holds is whole
            assert h.request("GET", f"/api/v1/files{path}")[2] == acknowledged[path]
        # Chunks of files the restored namespace does not know are collected as orphans.
        # uploads in flight and the trash: the internal tree is not shown to clients, so read its
        # chunk count from the restored database (a WAL reader beside the running master)
        db = sqlite3.connect(f"file:{c.root / 'master' / 'metadata.sqlite3'}?mode=ro", uri=True)
        try:
            (hidden,) = db.execute(
                "WITH RECURSIVE tree(id) AS (SELECT id FROM inodes WHERE parent = 1 AND name = '.hercules'"
                " UNION SELECT i.id FROM inodes i JOIN tree ON i.parent = tree.id)"
                " SELECT COUNT(*) FROM file_chunks f JOIN tree ON tree.id = f.file_id").fetchone()
        finally:
            db.close()
        expected_chunks = 3 * (sum(e["chunk_count"] for e in listing if not e["is_dir"] and e["path"] != victim)
                               + hidden)

        def on_disk() -> int:
            return sum(1 for i in range(3) for p in c.chunk_dir(i).rglob("*") if p.suffix == ".chunk")

        wait_until(lambda: on_disk() == expected_chunks, 60, f"{expected_chunks} chunk files on disk")
        proc = _hercules("restore", str(backup), "--root-dir", str(c.root / "master"))
        assert proc.returncode != 0 and "master is running" in proc.stderr  # never under a live master
        h.close()


def test_corrupt_metadata_database_stops_the_master_with_a_clear_error(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, settings=GFS) as c:
        h = Http(c.gateway_url)
        assert h.json("PUT", "/api/v1/files/x", b"data")[0] == 201
        c.procs["master"].stop()
        db = c.root / "master" / "metadata.sqlite3"
        raw = bytearray(db.read_bytes())
        raw[:100] = b"\xde\xad" * 50
        db.write_bytes(bytes(raw))
        with pytest.raises(RuntimeError, match="exited"):
            c.start_master()
        log = (c.root / "logs" / "master.log").read_text()
        assert "metadata.sqlite3" in log and "corrupt" in log.lower()
        h.close()
