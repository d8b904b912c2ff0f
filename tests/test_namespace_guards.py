"""The namespace's guards: the internal tree is off limits to clients, snapshots never copy into
their own source, recursive queries end even on a damaged (cyclic) store, and listings of any
size are paged within the frame limit and reassembled for callers that asked for everything."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from hercules_core import messages as m
from hercules_core.client import connect
from hercules_core.errors import HerculesError
from hercules_core.plugins import make_plugin_manager
from hercules_core.plugins.types import MetadataContext
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST, Http

FILES = 12_000
TRASHED = 10_000


def open_store(root: Path) -> Any:
    return make_plugin_manager().metadata_store("sqlite").open(MetadataContext(root, {}))


def refused(gw: Http, method: str, url: str, body: Any = None, status: int = 403) -> str:
    got, answer = gw.json(method, url, body)
    assert got == status, (method, url, got, answer)
    assert answer["error"]["code"] == ("forbidden" if status == 403 else "invalid_argument"), answer
    return answer["error"]["message"]


# -- the internal tree is protected --------------------------------------------------------


def test_every_client_mutation_of_the_internal_tree_is_403(cluster: LocalCluster, gw: Http) -> None:
    assert gw.request("PUT", "/api/v1/files/guard/a.bin", b"abc")[0] == 201  # makes /.hercules/uploads
    assert gw.json("DELETE", "/api/v1/delete?path=/guard/a.bin")[0] == 200  # makes /.hercules/trash
    assert gw.request("PUT", "/api/v1/files/guard/b.bin", b"def")[0] == 201
    cases = [
        ("POST", "/api/v1/mkdir", {"path": "/.hercules/x"}),
        ("POST", "/api/v1/mkdir", {"path": "/.hercules"}),
        ("POST", "/api/v1/create", {"path": "/.hercules/trash/x"}),
        ("POST", "/api/v1/write?path=/.hercules/new&offset=0", None),
        ("PUT", "/api/v1/files/.hercules/uploads/x", None),
        ("PUT", "/api/v1/files/.hercules", None),
        ("PATCH", "/api/v1/rename", {"source": "/guard/b.bin", "target": "/.hercules/b.bin"}),
        ("PATCH", "/api/v1/rename", {"source": "/.hercules/trash", "target": "/t"}),
        ("PATCH", "/api/v1/rename", {"source": "/.hercules", "target": "/h"}),
        ("DELETE", "/api/v1/delete?path=/.hercules&recursive=true", None),
        ("DELETE", "/api/v1/delete?path=/.hercules/trash&recursive=true", None),
        ("DELETE", "/api/v1/delete?path=/.hercules/uploads&recursive=true", None),
        ("DELETE", "/api/v1/files/.hercules/uploads", None),
        ("POST", "/api/v1/snapshot", {"source": "/.hercules", "target": "/copy"}),
        ("POST", "/api/v1/snapshot", {"source": "/.hercules/trash", "target": "/copy"}),
        ("POST", "/api/v1/snapshot", {"source": "/guard", "target": "/.hercules/copy"}),
        ("POST", "/api/v1/undelete", {"path": "/.hercules/trash"}),
        ("GET", "/api/v1/list?path=/.hercules", None),
        ("GET", "/api/v1/list?path=/.hercules/trash&recursive=true", None),
    ]
    for method, url, body in cases:
        if method in ("PUT",) or url.startswith("/api/v1/write"):
            status, _, raw = gw.request(method, url, b"data")
            answer = json.loads(raw)
            assert status == 403 and answer["error"]["code"] == "forbidden", (method, url, status, answer)
            assert "/.hercules" in answer["error"]["message"] and "internal" in answer["error"]["message"]
        else:
            message = refused(gw, method, url, body)
            assert "/.hercules" in message and "internal" in message, message
    # the internal tree is untouched: the trash still holds the deleted file and undelete works
    status, trash = gw.json("GET", "/api/v1/trash")
    assert status == 200 and [e["original_path"] for e in trash["entries"]] == ["/guard/a.bin"]
    status, listing = gw.json("GET", "/api/v1/list?path=/&recursive=true")
    assert status == 200 and not [e for e in listing["entries"] if e["path"].startswith("/.hercules")], listing
    status, listing = gw.json("GET", "/api/v1/list?path=/")
    assert status == 200 and ".hercules" not in {e["name"] for e in listing["entries"]}
    assert gw.json("POST", "/api/v1/undelete", {"path": "/guard/a.bin"})[0] == 200
    assert gw.request("GET", "/api/v1/files/guard/a.bin")[2] == b"abc"
    assert gw.request("PUT", "/api/v1/files/guard/c.bin", b"ghi")[0] == 201  # uploads keep working


def test_internal_tree_refusals_reach_library_callers_too(cluster: LocalCluster) -> None:
    async def main() -> None:
        client = await connect(cluster.master_addr)
        try:
            started = await client._master(m.BeginUpload("/guard/lib.bin", None, False, "guard-lib"))
            for call in (client.delete(started.temp.path), client.delete("/.hercules/uploads", recursive=True),
                         client._master(m.BeginUpload("/.hercules/x", None, False, "guard-in")),
                         client._master(m.PublishUpload(started.temp.path, "/.hercules/lib.bin", 0, False, "")),
                         client.list("/.hercules/uploads"), client.stat(started.temp.path),
                         client.read(started.temp.path), client.open(started.temp.path)):
                with pytest.raises(HerculesError) as caught:
                    await call
                assert caught.value.code == "forbidden", caught.value
            # the refused delete left the upload in place: it still publishes
            published = await client._master(m.PublishUpload(started.temp.path, "/guard/lib.bin", 0, False, ""))
            assert published.path == "/guard/lib.bin"
        finally:
            await client.close()

    asyncio.run(main())


# -- a snapshot into its own source ---------------------------------------------------------


def test_snapshot_into_its_own_source_is_a_400(gw: Http) -> None:
    assert gw.json("POST", "/api/v1/mkdir", {"path": "/snapsrc/inner"})[0] == 201
    for source, target in [("/", "/rootcopy"), ("/", "/snapsrc/rootcopy"), ("/snapsrc", "/snapsrc/inner/copy"),
                           ("/snapsrc", "/snapsrc/copy")]:
        message = refused(gw, "POST", "/api/v1/snapshot", {"source": source, "target": target}, status=400)
        assert "into itself" in message and source in message, message
    status, listing = gw.json("GET", "/api/v1/list?path=/&recursive=true")
    assert status == 200 and not [e for e in listing["entries"] if "copy" in e["path"]], listing
    assert gw.json("POST", "/api/v1/snapshot", {"source": "/snapsrc", "target": "/snapcopy"})[0] == 201


# -- recursive queries end on a cyclic store ------------------------------------------------


async def test_purge_and_listings_terminate_on_a_cycle_built_in_the_store(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        await store.mkdir("/loop/a/b")
        await store.create("/loop/a/b/f", 1, first_chunk=True)
        await store.delete("/loop/a", True)
        await store.mkdir("/.hercules/trash/ring")
    db = sqlite3.connect(tmp_path / "metadata.sqlite3")
    with db:
        (a,) = db.execute("SELECT inode FROM trash").fetchone()
        (b,) = db.execute("SELECT id FROM inodes WHERE name = 'b'").fetchone()
        (ring,) = db.execute("SELECT id FROM inodes WHERE name = 'ring'").fetchone()
        (f,) = db.execute("SELECT id FROM inodes WHERE name = 'f'").fetchone()
        db.execute("UPDATE inodes SET parent = ? WHERE id = ?", (b, a))  # a -> b -> a: a cycle
        db.execute("UPDATE inodes SET parent = id WHERE id = ?", (ring,))  # its own parent
        db.execute("INSERT INTO trash (inode, original_path, deleted_at) VALUES (?, '/ring', 0)", (ring,))
    db.close()
    async with open_store(tmp_path) as store:
        entries, _ = await asyncio.wait_for(store.trash(), 30)
        assert sorted(e[0] for e in entries) == ["/loop/a", "/ring"]
        with pytest.raises(HerculesError):
            await asyncio.wait_for(store.stat_id(f), 30)  # its path never reaches the root
        listed, _ = await asyncio.wait_for(store.list("/", True, 0, ""), 30)
        assert [e.path for e in listed] == ["/loop"]
        freed = await asyncio.wait_for(store.purge_trash(time.time() + 1), 30)
        assert len(freed.handles) == 1
        assert (await store.trash())[0] == []
        assert (await store.stats())["files"] == 0


async def test_store_refuses_to_put_the_trash_inside_itself(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        await store.create("/x", 1)
        await store.delete("/x", False)
        for path in ("/.hercules", "/.hercules/trash"):
            with pytest.raises(HerculesError) as caught:
                await store.delete(path, True)
            assert caught.value.code == "forbidden"
        assert [e[0] for e in (await store.trash())[0]] == ["/x"]
        await asyncio.wait_for(store.purge_trash(time.time() + 1), 30)
        assert (await store.trash())[0] == []


# -- big listings are paged -------------------------------------------------------------------


async def _populate(root: Path) -> None:
    """12,000 files in one directory, a deep tree and 10,000 trash entries, made through the
    store directly (group commit makes this a few hundred commits, not 30,000 round trips)."""
    async with open_store(root) as store:
        await store.mkdir("/big")
        await store.mkdir("/gone")
        for start in range(0, FILES, 2000):
            await asyncio.gather(*(store.create(f"/big/file-with-a-longish-name-{i:06d}.dat", 3)
                                   for i in range(start, start + 2000)))
        deep = "/deep"
        for level in range(60):
            deep = f"{deep}/level-{level:02d}"
            await store.mkdir(deep)
            await asyncio.gather(*(store.create(f"{deep}/leaf-{i:03d}", 3) for i in range(100)))
        for start in range(0, TRASHED, 2000):
            await asyncio.gather(*(store.create(f"/gone/trashed-file-{i:06d}.dat", 3)
                                   for i in range(start, start + 2000)))
            await asyncio.gather(*(store.delete(f"/gone/trashed-file-{i:06d}.dat", False)
                                   for i in range(start, start + 2000)))


def test_big_listings_are_paged_and_reassembled(tmp_path: Path) -> None:
    asyncio.run(_populate(tmp_path / "master"))
    with LocalCluster(tmp_path, settings=FAST) as c:
        gw = Http(c.gateway_url)
        try:
            status, body = gw.json("GET", "/api/v1/list?path=/big")
            assert status == 200, str(body)[:300]
            names = [e["name"] for e in body["entries"]]
            assert names == [f"file-with-a-longish-name-{i:06d}.dat" for i in range(FILES)]
            assert body["next_cursor"] is None

            seen: list[str] = []
            cursor = ""
            for _ in range(FILES // 500 + 2):
                status, page = gw.json("GET", f"/api/v1/list?path=/big&limit=500&cursor={quote(cursor)}")
                assert status == 200 and len(page["entries"]) <= 500, str(page)[:300]
                seen.extend(e["name"] for e in page["entries"])
                cursor = page["next_cursor"] or ""
                if not cursor:
                    break
            assert seen == names

            status, body = gw.json("GET", "/api/v1/list?path=/deep&recursive=true")
            assert status == 200, str(body)[:300]
            assert len(body["entries"]) == 60 * 101 and body["next_cursor"] is None
            assert len({e["path"] for e in body["entries"]}) == 60 * 101

            status, body = gw.json("GET", "/api/v1/trash")
            assert status == 200, str(body)[:300]
            assert sorted(e["original_path"] for e in body["entries"]) == \
                [f"/gone/trashed-file-{i:06d}.dat" for i in range(TRASHED)]
            assert body.get("next_cursor") is None

            status, page = gw.json("GET", "/api/v1/trash?limit=300")
            assert status == 200 and len(page["entries"]) == 300 and page["next_cursor"], str(page)[:300]
            status, rest = gw.json("GET", f"/api/v1/trash?limit=20000&cursor={quote(page['next_cursor'])}")
            assert status == 200, str(rest)[:300]
            trashed = [e["original_path"] for e in page["entries"] + rest["entries"]]
            while rest["next_cursor"]:
                assert len(trashed) < TRASHED, "trash pages repeat"
                status, rest = gw.json("GET", f"/api/v1/trash?limit=20000&cursor={quote(rest['next_cursor'])}")
                assert status == 200
                trashed += [e["original_path"] for e in rest["entries"]]
            assert sorted(trashed) == sorted(e["original_path"] for e in body["entries"])
        finally:
            gw.close()

        env = {"MASTER_ADDR": c.master_addr, "PATH": "/usr/bin:/bin"}
        for args, count in ((["ls", "/big"], FILES), (["ls", "--recursive", "/deep"], 60 * 101),
                            (["trash"], TRASHED)):
            done = subprocess.run([sys.executable, "-m", "hercules_core", "--json", *args], env=env,
                                  capture_output=True, timeout=240, text=True)
            assert done.returncode == 0, done.stderr[-2000:]
            assert len(json.loads(done.stdout)["entries"]) == count, args
