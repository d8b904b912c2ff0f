"""Compose: a file made of other files' chunks, shared copy-on-write, against a real cluster
(1 MiB chunks): the bytes, the shared handles, copy-on-write both ways, refusals that change
nothing, the sources' removal in the same step, and a master killed right after."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from hercules_core.client import Client, connect
from hercules_core.errors import AlreadyExists, InvalidArgument, IsADirectory, NotFound
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST, MiB, file_handles


async def put(client: Client, path: str, size: int) -> bytes:
    data = random.randbytes(size)
    await client.upload(path, data, overwrite=True)
    return data


async def test_the_composed_file_holds_the_sources_bytes_in_their_very_chunks(client: Client) -> None:
    a, b, c = await put(client, "/c1/a", 2 * MiB), await put(client, "/c1/b", 3 * MiB), \
        await put(client, "/c1/c", MiB // 2 + 17)
    handles = [await file_handles(client, p) for p in ("/c1/a", "/c1/b", "/c1/c")]
    info = await client.compose("/c1/out/joined", ["/c1/a", "/c1/b", "/c1/c"], remove_sources=False)
    assert (info.path, info.size, info.chunk_count) == ("/c1/out/joined", len(a + b + c), 6)
    assert await client.read("/c1/out/joined") == a + b + c
    assert await file_handles(client, "/c1/out/joined") == handles[0] + handles[1] + handles[2]
    assert await client.read("/c1/b") == b  # the sources stay as they were


async def test_a_write_to_either_side_copies_the_shared_chunk_first(client: Client) -> None:
    a, b = await put(client, "/c2/a", MiB), await put(client, "/c2/b", 2 * MiB)
    shared = await file_handles(client, "/c2/b")
    await client.compose("/c2/j", ["/c2/a", "/c2/b"], remove_sources=False)
    await client.write("/c2/j", MiB + 10, b"\x00\xff")  # inside b's first chunk, through the composed file
    await client.write("/c2/a", 5, b"xyz")  # and a's chunk, through the source
    assert await client.read("/c2/b") == b
    assert await client.read("/c2/a") == a[:5] + b"xyz" + a[8:]
    assert await client.read("/c2/j") == a + b[:10] + b"\x00\xff" + b[12:]
    joined = await file_handles(client, "/c2/j")
    assert joined[1] != shared[0] and joined[2] == shared[1]  # only the written chunk was copied
    assert joined[0] != (await file_handles(client, "/c2/a"))[0]


async def test_removed_sources_free_nothing_the_composed_file_uses(client: Client) -> None:
    a, b = await put(client, "/c3/a", 2 * MiB), await put(client, "/c3/b", MiB + 5)
    await client.snapshot("/c3/a", "/c3/a-snap")
    await client.compose("/c3/j", ["/c3/a", "/c3/b"])  # remove_sources is the default
    for gone in ("/c3/a", "/c3/b"):
        with pytest.raises(NotFound):
            await client.stat(gone)
    assert not [e for e in (await client.trash()).entries if e.original_path.startswith("/c3/")]
    await client.write("/c3/j", 0, b"new")
    assert await client.read("/c3/a-snap") == a  # the snapshot shares what the composed file copied
    assert await client.read("/c3/j") == b"new" + a[3:] + b
    await client.delete("/c3/a-snap")
    assert await client.purge_trash() == 1  # only the chunk the write copied away was a-snap's alone
    assert await client.read("/c3/j") == b"new" + a[3:] + b


async def test_misaligned_or_wrong_sources_are_refused_and_change_nothing(client: Client) -> None:
    a, b = await put(client, "/c4/a", MiB + MiB // 2), await put(client, "/c4/b", MiB)
    await client.mkdir("/c4/dir")
    with pytest.raises(InvalidArgument, match="/c4/a: its length"):
        await client.compose("/c4/j", ["/c4/a", "/c4/b"])
    refusals = [
        (["/c4/b", "/c4/b"], InvalidArgument, "/c4/j"),  # named twice
        (["/c4/b"], InvalidArgument, "/c4/b"),  # the target among the sources
        (["/c4/b", "/c4/missing"], NotFound, "/c4/j"),
        (["/c4/b", "/c4/dir"], IsADirectory, "/c4/j"),
        ([], InvalidArgument, "/c4/j"),
        (["/c4/b"], IsADirectory, "/c4/dir"),
    ]
    for sources, error, target in refusals:
        with pytest.raises(error):
            await client.compose(target, sources)
    with pytest.raises(NotFound):
        await client.stat("/c4/j")
    assert (await client.read("/c4/a"), await client.read("/c4/b")) == (a, b)
    # the last source may end anywhere; a taken target needs overwrite
    await client.upload("/c4/j", b"old")
    with pytest.raises(AlreadyExists):
        await client.compose("/c4/j", ["/c4/b", "/c4/a"], remove_sources=False)
    await client.compose("/c4/j", ["/c4/b", "/c4/a"], overwrite=True)
    assert await client.read("/c4/j") == b + a


def test_an_acknowledged_compose_survives_a_master_killed_right_after(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, settings=FAST) as c:
        async def scenario() -> None:
            client = await connect(c.master_addr)
            try:
                a, b = await put(client, "/k/a", 3 * MiB), await put(client, "/k/b", MiB // 3)
                await client.compose("/k/j", ["/k/a", "/k/b"])
                c.kill("master")
                c.restart("master")
                await asyncio.to_thread(c.wait_live, c.chunkservers, 30.0)
                assert await client.read("/k/j") == a + b
                assert {e.path for e in (await client.list("/k")).entries} == {"/k/j"}
            finally:
                await client.close()

        asyncio.run(scenario())
