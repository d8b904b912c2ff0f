"""The blocking client covers the whole async API, and ``connect`` dials with one transport only."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

from hercules_core.client import Client, SyncClient
from hercules_core.errors import HerculesError, NotFound
from hercules_core.testing.cluster import LocalCluster



def test_every_public_coroutine_of_the_client_has_a_blocking_counterpart() -> None:
    names = {name for klass in Client.__mro__ for name, fn in vars(klass).items()
             if not name.startswith("_") and (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn))}
    assert {"download", "write_stream", "open", "trash", "ping", "upload", "read"} <= names
    for name in sorted(names):
        async_fn = getattr(Client, name)
        sync_fn = getattr(SyncClient, name, None)
        assert callable(sync_fn), f"SyncClient lacks {name}"
        assert not inspect.iscoroutinefunction(sync_fn) and not inspect.isasyncgenfunction(sync_fn), name
        if name not in ("start", "close"):  # the lifecycle differs: a SyncClient connects when made
            assert list(inspect.signature(sync_fn).parameters) == list(inspect.signature(async_fn).parameters), name


def test_the_blocking_client_streams_and_reaches_every_call(cluster: LocalCluster) -> None:
    with SyncClient(cluster.master_addr) as c:
        assert c.ping().info["chunk_size"] == c.chunk_size
        assert c.probe_master().info["chunk_size"] == c.chunk_size
        size = c.chunk_size
        data = bytes(range(256)) * (2 * size // 256 + 3)  # across two chunk boundaries
        c.upload("/sync/a.bin", data)
        info = c.open("/sync/a.bin", 0, 10)
        assert info.size == len(data)
        pieces = list(c.download("/sync/a.bin", 5, info=info))
        assert len(pieces) > 1 and b"".join(bytes(p) for p in pieces) == data[5:]
        stream = c.download("/sync/a.bin")
        assert bytes(next(stream)) == data[:len(bytes(next(c.download("/sync/a.bin"))))]
        stream.close()  # stopping early cancels the read-ahead and keeps the client usable

        c.create("/sync/b.bin")
        assert c.write_stream("/sync/b.bin", 3, iter([b"abc", b"defg"])) == 7
        assert c.read("/sync/b.bin") == b"\0\0\0abcdefg"
        assert c.chunk_handle("/sync/a.bin", 1).index == 1

        c.delete("/sync/b.bin")
        assert any(e.original_path == "/sync/b.bin" for e in c.trash().entries)
        c.undelete("/sync/b.bin")
        assert c.stat("/sync/b.bin").size == 10


def test_a_streaming_upload_publishes_on_close_and_nothing_on_abort(cluster: LocalCluster) -> None:
    with SyncClient(cluster.master_addr) as c:
        buf = bytearray(b"x" * 1000)
        with c.upload_stream("/stream/a.bin") as up:
            for i in range(2 * c.chunk_size // 1000 + 5):
                up.write(buf)
                buf[:] = bytes([i % 251]) * 1000  # reused at once: what was written is kept
        expected = b"x" * 1000 + b"".join(bytes([i % 251]) * 1000 for i in range(2 * c.chunk_size // 1000 + 4))
        assert c.read("/stream/a.bin") == expected

        with pytest.raises(RuntimeError), c.upload_stream("/stream/b.bin") as up:
            up.write(b"never published")
            raise RuntimeError("the writer failed")
        with pytest.raises(NotFound):
            c.stat("/stream/b.bin")

        c.upload("/stream/c.bin", b"old")
        refused = c.upload_stream("/stream/c.bin")  # overwrite not asked for
        with pytest.raises((HerculesError, OSError)):
            refused.write(b"new")
            refused.close()
        assert c.read("/stream/c.bin") == b"old"


def test_connect_loads_only_the_transport_it_dials_with(cluster: LocalCluster) -> None:
    script = f"""
import asyncio, json, sys
from hercules_core.client import connect
async def main():
    client = await connect({cluster.master_addr!r})
    await client.stat("/")
    await client.close()
asyncio.run(main())
print(json.dumps(sorted(sys.modules)))
"""
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    loaded = set(json.loads(out))
    assert "hercules_transport_tcp" in loaded
    assert not loaded & {"hercules_store_fs", "hercules_store_zstd", "hercules_transport_faults",
                         "hercules_core.builtin.rest_v1", "hercules_core.builtin.metadata_sqlite",
                         "hercules_core.builtin.placement_spread"}, sorted(loaded)
