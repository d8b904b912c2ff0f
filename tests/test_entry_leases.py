"""Leased entries (docs/consistency.md, "Cached entries"): the gateway answers reads of packed
files it wrote or read without asking the master, and never serves one that changed: a
delete, an overwrite or a rename elsewhere waits until the gateway dropped its copy, or, when
the gateway is paused or the master restarted, until its session can no longer be valid.
Against a real cluster (``client``: another client, whose mutations must reach what the
gateway cached); the master's bookkeeping also in process, where each race is staged."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import aiohttp
import pytest

from hercules_core import messages as m
from hercules_core.client import Client, connect
from hercules_core.client.entry_cache import EntryCache
from hercules_core.master.entry_leases import EntryLeases
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST, Http
from tests.test_metrics import scrape, value

TTL = 2.0
SETTINGS = {**FAST, "HERCULES_PACK_THRESHOLD": "65536", "HERCULES_ENTRY_LEASE": str(TTL)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("leases"), settings=SETTINGS) as c:
        yield c


def locates(cluster: LocalCluster) -> float:
    return value(scrape(cluster.metrics_url("master")), "hercules_rpc_request_duration_seconds_count",
                 operation="Locate")


def get(gw: Http, path: str) -> tuple[int, bytes]:
    status, _, body = gw.request("GET", f"/api/v1/files{path}")
    return status, body


def put_and_cache(gw: Http, path: str, data: bytes) -> None:
    """PUT ``path`` and wait until its GET is answered from the gateway's leased entry."""
    assert gw.request("PUT", f"/api/v1/files{path}", data)[0] in (200, 201)
    cache(gw, path, data)


def cache(gw: Http, path: str, data: bytes) -> None:
    """GET ``path`` (``data``) until the gateway answers it without a ``Locate``."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the session needs one poll answered before it is used
        before = locates(gw.cluster)  # type: ignore[attr-defined]
        assert get(gw, path) == (200, data)
        if locates(gw.cluster) == before:  # type: ignore[attr-defined]
            return
        time.sleep(0.2)
    raise AssertionError(f"{path}: never read from the gateway's cache")


@pytest.fixture
def gw(cluster: LocalCluster) -> Iterator[Http]:
    h = Http(cluster.gateway_url)
    h.cluster = cluster  # type: ignore[attr-defined]
    yield h
    h.close()


def test_reads_after_a_write_through_the_gateway_skip_the_master(cluster: LocalCluster, gw: Http) -> None:
    files = {f"/rw/f{i}": os.urandom(100 + i) for i in range(20)}
    put_and_cache(gw, "/rw/first", b"first")
    for path, data in files.items():
        assert gw.request("PUT", f"/api/v1/files{path}", data)[0] == 201
    before = locates(cluster)
    hits = value(scrape(cluster.metrics_url("gateway")), "hercules_gateway_entry_lookups_total", outcome="hit")
    for path, data in files.items():
        assert get(gw, path) == (200, data)
    assert locates(cluster) == before  # each was leased to the gateway by its own publish
    gateway = scrape(cluster.metrics_url("gateway"))
    assert value(gateway, "hercules_gateway_entry_lookups_total", outcome="hit") == hits + len(files)
    assert value(gateway, "hercules_gateway_cached_entries") >= len(files)
    master = scrape(cluster.metrics_url("master"))
    assert value(master, "hercules_entry_lease_holders") == 1  # the gateway
    assert value(master, "hercules_entry_leases") >= len(files)


async def test_concurrent_reads_of_one_cached_file_all_get_its_bytes(cluster: LocalCluster, gw: Http) -> None:
    data = os.urandom(3000)
    put_and_cache(gw, "/conc/f", data)
    url = f"{cluster.gateway_url}/api/v1/files/conc/f"
    async with aiohttp.ClientSession() as session:
        async def one() -> bytes:
            async with session.get(url) as resp:
                assert resp.status == 200
                return await resp.read()

        for _ in range(20):
            assert await asyncio.gather(*(one() for _ in range(6))) == [data] * 6


async def test_a_file_deleted_elsewhere_is_never_served_from_the_cache(gw: Http, client: Client) -> None:
    put_and_cache(gw, "/del/f", b"doomed")
    await client.delete("/del/f")
    assert get(gw, "/del/f")[0] == 404


async def test_an_overwrite_elsewhere_is_read_at_once(gw: Http, client: Client) -> None:
    put_and_cache(gw, "/ow/f", b"old bytes")
    await client.upload("/ow/f", b"new bytes, longer", overwrite=True)
    assert get(gw, "/ow/f") == (200, b"new bytes, longer")


async def test_a_renamed_or_deleted_directory_takes_its_cached_files_along(gw: Http, client: Client) -> None:
    put_and_cache(gw, "/tree/a/x", b"x")
    put_and_cache(gw, "/tree/a/sub/y", b"y")
    await client.rename("/tree/a", "/tree/b")
    assert get(gw, "/tree/a/x")[0] == 404
    assert get(gw, "/tree/a/sub/y")[0] == 404
    assert get(gw, "/tree/b/sub/y") == (200, b"y")
    cache(gw, "/tree/b/sub/y", b"y")  # leased by the Locate of the read before
    await client.delete("/tree/b", recursive=True)
    assert get(gw, "/tree/b/sub/y")[0] == 404


async def test_a_paused_gateway_holds_a_delete_only_until_its_session_ends(cluster: LocalCluster, gw: Http,
                                                                           client: Client) -> None:
    put_and_cache(gw, "/pause/f", b"cached")
    cluster.pause("gateway")
    try:
        started = time.monotonic()
        await asyncio.wait_for(client.delete("/pause/f"), 30)
        waited = time.monotonic() - started
    finally:
        cluster.resume("gateway")
    assert waited >= TTL / 3  # it did wait for the silent holder (its session had that much left)...
    assert get(gw, "/pause/f")[0] == 404  # ...and the gateway, back, does not use what it held


async def test_after_a_master_restart_a_cached_entry_is_not_served_stale(cluster: LocalCluster, gw: Http) -> None:
    put_and_cache(gw, "/restart/f", b"before")
    cluster.restart("master")
    async with await connect(cluster.master_addr) as fresh:
        await fresh.delete("/restart/f")  # the new master knows no holder: it waits the sessions out
    assert get(gw, "/restart/f")[0] == 404
    put_and_cache(gw, "/restart/g", b"after")  # and leases again once the gateway polled it


async def test_a_cached_file_whose_pack_was_compacted_still_reads(gw: Http, client: Client) -> None:
    keep = os.urandom(2000)
    put_and_cache(gw, "/compact/keep", keep)
    for i in range(30):
        assert gw.request("PUT", f"/api/v1/files/compact/junk{i}", os.urandom(2000))[0] == 201
    for i in range(30):
        await client.delete(f"/compact/junk{i}")
    await client.purge_trash()
    compacted = await client.compact_packs(garbage=0.01)
    assert compacted.records_moved >= 1
    assert get(gw, "/compact/keep") == (200, keep)


# -- the master's bookkeeping, in process ---------------------------------------------------------

async def session(leases: EntryLeases, name: str) -> None:
    """Open ``name``'s session: its first poll is told to drop all, the second renews it."""
    first = await leases.watch(m.WatchEntries(name))
    assert first.drop_all
    poll = asyncio.ensure_future(leases.watch(m.WatchEntries(name, 0, first.session)))
    await asyncio.sleep(0)
    poll.cancel()


def fresh_leases(ttl: float = 1.0) -> EntryLeases:
    leases = EntryLeases(ttl)
    leases.grace_until = 0.0  # no master before this one
    return leases


async def test_a_mutation_waits_for_the_holder_to_acknowledge() -> None:
    leases = fresh_leases(ttl=30.0)
    await session(leases, "h")
    assert leases.register("h", "/a")
    done = asyncio.Event()

    async def delete() -> None:
        async with leases.mutating(trees=["/a"]):
            done.set()

    task = asyncio.ensure_future(delete())
    answer = await leases.watch(m.WatchEntries("h", 0, leases.session))
    assert answer.trees == ["/a"] and not done.is_set()
    assert not leases.register("h", "/a")  # no new lease while it is being mutated
    poll = asyncio.ensure_future(leases.watch(m.WatchEntries("h", answer.seq, leases.session)))
    await asyncio.wait_for(task, 5)
    assert done.is_set() and leases.leased() == 0
    poll.cancel()


async def test_a_tree_revokes_what_lies_under_it_and_nothing_beside_it() -> None:
    leases = fresh_leases(ttl=30.0)
    await session(leases, "h")
    await session(leases, "g")
    for path in ["/a", "/a/x", "/a/b/y", "/ab/z", "/a-b", "/b"]:
        assert leases.register("h", path)
    assert leases.register("g", "/ab/w")

    async def rename() -> None:
        async with leases.mutating(trees=["/a"]):
            pass

    task = asyncio.ensure_future(rename())
    answer = await leases.watch(m.WatchEntries("h", 0, leases.session))
    assert answer.trees == ["/a"] and answer.paths == []
    poll = asyncio.ensure_future(leases.watch(m.WatchEntries("h", answer.seq, leases.session)))
    await asyncio.wait_for(task, 5)  # "g" holds nothing under /a: it is not waited for
    assert leases.leased() == 4  # /ab/z, /a-b, /b and g's /ab/w: a shared prefix is not a parent
    poll.cancel()


async def test_a_silent_holder_is_forgotten_when_its_session_ends() -> None:
    leases = fresh_leases(ttl=0.5)
    await session(leases, "h")
    assert leases.register("h", "/a")

    async def delete() -> None:
        async with leases.mutating(["/a"]):
            pass

    await asyncio.wait_for(delete(), 10)  # bounded by what was left of the session, not forever
    assert leases.holders() == 0 and leases.leased() == 0
    assert (await leases.watch(m.WatchEntries("h", 0, leases.session))).drop_all


async def test_a_publish_leases_its_file_only_if_no_other_mutation_began_meanwhile() -> None:
    leases = fresh_leases(ttl=30.0)
    await session(leases, "h")
    async with leases.mutating(["/p"], fresh=True) as mine:
        async with leases.mutating(["/p"]):
            pass
        assert not mine.grant("h", "/p")
    async with leases.mutating(["/p"], fresh=True) as mine:
        assert mine.grant("h", "/p")
    assert leases.leased() == 1


async def test_a_restarted_master_waits_out_the_sessions_of_the_one_before() -> None:
    leases = EntryLeases(30.0)  # just started: a holder of the master before may still serve

    async def mutate(**kw: bool) -> None:
        async with leases.mutating(["/x"], **kw):
            pass

    await asyncio.wait_for(mutate(fresh=True), 5)  # a create: nobody can hold what is not there yet
    waiting = asyncio.ensure_future(mutate())
    await asyncio.sleep(0.3)
    assert not waiting.done()
    waiting.cancel()


async def test_an_overtaken_poll_does_not_forget_a_lease_granted_since() -> None:
    leases = fresh_leases(ttl=30.0)
    first = await leases.watch(m.WatchEntries("h", poll=1))
    renewing = asyncio.ensure_future(leases.watch(m.WatchEntries("h", 0, first.session, poll=3)))
    await asyncio.sleep(0)
    assert leases.register("h", "/p")
    late = await leases.watch(m.WatchEntries("h", 0, first.session, ["/p"], poll=2))  # gave up on, then arrived
    assert late.drop_all and leases.leased() == 1
    renewing.cancel()


class HeldPolls:
    """A connection pool whose master answers each ``WatchEntries`` when the test says so."""

    def __init__(self) -> None:
        self.polls: asyncio.Queue[tuple[m.WatchEntries, asyncio.Future[m.EntriesRevoked]]] = asyncio.Queue()

    async def call(self, peer: str, msg: m.WatchEntries, timeout: float | None = None) -> tuple[object, bytes]:
        answer: asyncio.Future[m.EntriesRevoked] = asyncio.get_running_loop().create_future()
        await self.polls.put((msg, answer))
        return await answer, b""


async def test_a_path_let_go_is_not_cached_again_while_the_master_is_being_told() -> None:
    pool = HeldPolls()
    cache = EntryCache(pool, "master", capacity=10)  # type: ignore[arg-type]
    task = asyncio.ensure_future(cache.run())
    located = m.Located(m.FileInfo("/p", 1, False, 5, 3, 0, 0.0, 0.0), [], m.PackedExtent(7, 0, 5, 0), leased=True)
    try:
        poll, answer = await pool.polls.get()
        answer.set_result(m.EntriesRevoked(0, [], [], 30.0, "s", drop_all=True))
        poll, answer = await pool.polls.get()
        answer.set_result(m.EntriesRevoked(0, [], [], 30.0, "s"))  # renewed: the cache is in use
        poll, answer = await pool.polls.get()
        cache.put("/p", located, cache.revocations)
        assert cache.get("/p") == located
        assert cache.drop("/p")
        answer.set_result(m.EntriesRevoked(0, [], [], 30.0, "s"))
        poll, answer = await pool.polls.get()
        assert poll.dropped == ["/p"]
        cache.put("/p", located, cache.revocations)  # leased again while the drop is on the wire
        assert cache.get("/p") is None
        answer.set_result(m.EntriesRevoked(0, [], [], 30.0, "s"))
        await pool.polls.get()
        cache.put("/p", located, cache.revocations)
        assert cache.get("/p") == located
    finally:
        task.cancel()


def test_a_head_of_a_cached_file_is_answered_by_the_gateway_alone(cluster: LocalCluster, gw: Http) -> None:
    put_and_cache(gw, "/head/f", b"twelve bytes")
    stats = value(scrape(cluster.metrics_url("master")), "hercules_rpc_request_duration_seconds_count",
                  operation="Stat")
    status, headers, _ = gw.request("HEAD", "/api/v1/files/head/f")
    assert status == 200 and headers["content-length"] == "12"
    assert value(scrape(cluster.metrics_url("master")), "hercules_rpc_request_duration_seconds_count",
                 operation="Stat") == stats
