"""The master checks what chunkservers (or anything claiming to be one) report, whether or not
they know the cluster secret: out-of-range handles, versions it never granted (also just after a
restart), addresses that do not parse, a live server's id from another address, bad-replica
reports (each is verified by the replica's own server) and full reports of replicas it is
deleting cannot make files unreadable or allocations fail, and huge integers are
``invalid_argument``, never ``internal``. Chunkservers check peers too: a mutation is applied
only when it carries the lease the master granted its primary."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from hercules_core import messages as m
from hercules_core.client import Client, connect
from hercules_core.errors import (AlreadyExists, ChecksumMismatch, InvalidArgument, NotPrimary, StaleVersion,
                                  Unavailable)
from hercules_core.testing.cluster import LocalCluster, free_port
from tests.helpers import FAST, Http, RawPeer, file_handles

DATA = bytes(range(256)) * 4096  # one full 1 MiB chunk
STARTED: dict[str, float] = {}  # master address -> when its cluster was up


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("peers"), settings=FAST) as c:
        STARTED[c.master_addr] = time.monotonic()
        yield c


@pytest.fixture
async def past_grace(cluster: LocalCluster) -> None:
    """Until the master's start-up grace (a lease time) is over: within it, a newer reported
    version is adopted (a restart or a restore is being recovered from)."""
    await asyncio.sleep(max(0.0, STARTED[cluster.master_addr] + float(FAST["HERCULES_LEASE_SECONDS"]) + 2.0 - time.monotonic()))


@pytest.fixture
async def client(cluster: LocalCluster) -> AsyncIterator[Client]:
    c = await connect(cluster.master_addr)
    yield c
    await c.close()
    cluster.wait_live(cluster.chunkservers)  # the fakes a test registered are dead again


async def master(client: Client, msg: object) -> object:
    reply, _ = await client.pool.call(client.master, msg)
    return reply


async def a_file(client: Client, path: str) -> tuple[int, int]:
    """``path`` written with ``DATA``; its chunk's handle and version."""
    await client.create(path)
    await client.write(path, 0, DATA)
    [handle] = await file_handles(client, path)
    loc = await master(client, m.FindChunk(handle))
    return handle, loc.version


def gateway_write_works(cluster: LocalCluster, path: str) -> None:
    gw = Http(cluster.gateway_url)
    try:
        assert gw.request("POST", "/api/v1/create", {"path": path})[0] == 201
        status, _, body = gw.request("POST", f"/api/v1/write?path={path}&offset=0", b"x" * 1000)
        assert status in (200, 201), body
    finally:
        gw.close()


@pytest.mark.parametrize("msg", [m.FindChunk(2**63), m.FindChunk(2**64 - 1), m.FindChunk(-5),
                                 m.GetChunk(2**63, 0), m.GetChunk(1, -(2**63)), m.LastChunk(2**64 - 1),
                                 m.ExtendSize(2**63, 10)])
async def test_huge_integers_are_invalid_argument(client: Client, msg: object) -> None:
    with pytest.raises(InvalidArgument):
        await master(client, msg)


async def test_handles_out_of_range_in_a_report_are_refused_and_the_server_still_registers(
        client: Client) -> None:
    fake = m.Register("fake-range", f"127.0.0.1:{free_port()}", 1 << 30, 0,
                      [m.ChunkReport(2**63, 1), m.ChunkReport(-3, 1), m.ChunkReport(0, 1), m.ChunkReport(5, 2**63),
                       m.ChunkReport(2**64 - 1, 2**64 - 1)])
    reply = await master(client, fake)
    assert isinstance(reply, m.Registered)
    beat = await master(client, m.Heartbeat("fake-range", 1 << 30, 0, 1, added=[m.ChunkReport(2**63, 1)],
                                            removed=[2**63], full=[m.ChunkReport(2**64 - 1, 1)]))
    assert isinstance(beat, m.HeartbeatReply)


async def test_a_register_with_an_address_that_does_not_parse_is_refused(cluster: LocalCluster,
                                                                         client: Client) -> None:
    for address in ("not an address", "host:99999", ""):
        with pytest.raises(InvalidArgument):
            await master(client, m.Register(f"fake-addr-{len(address)}", address, 1 << 40, 0, []))
    gateway_write_works(cluster, "/after-bad-address.txt")


async def test_a_live_servers_id_from_another_address_is_refused(cluster: LocalCluster, client: Client) -> None:
    info = await master(client, m.ClusterStatus())
    victim = next(s for s in info.chunkservers if s.state == "alive" and not s.server_id.startswith("fake"))
    with pytest.raises(AlreadyExists):
        await master(client, m.Register(victim.server_id, f"127.0.0.1:{free_port()}", 1 << 40, 0, []))
    after = {s.server_id: s for s in (await master(client, m.ClusterStatus())).chunkservers}
    assert after[victim.server_id].address == victim.address
    assert after[victim.server_id].state == "alive"


async def test_a_version_never_granted_is_not_adopted(client: Client, past_grace: None) -> None:
    handle, version = await a_file(client, "/versions.bin")
    fake = m.Register("fake-version", f"127.0.0.1:{free_port()}", 1 << 30, 0,
                      [m.ChunkReport(handle, version + 1000, len(DATA))])
    await master(client, fake)
    loc = await master(client, m.FindChunk(handle))
    assert loc.version == version
    assert await client.read("/versions.bin") == DATA


async def test_bad_replica_reports_cannot_remove_every_replica(cluster: LocalCluster, client: Client) -> None:
    handle, _ = await a_file(client, "/reported.bin")
    loc = await master(client, m.FindChunk(handle))
    assert len(loc.replicas) == 3
    for replica in loc.replicas:
        await master(client, m.ReportBadReplica(handle, replica, "says a stranger"))
    assert (await master(client, m.FindChunk(handle))).replicas
    fresh = await connect(cluster.master_addr)  # no cached locations
    try:
        assert await fresh.read("/reported.bin") == DATA
    finally:
        await fresh.close()


async def test_a_live_servers_id_cannot_register_or_heartbeat_from_another_host(client: Client) -> None:
    handle, _ = await a_file(client, "/origin.bin")
    loc = await master(client, m.FindChunk(handle))
    info = await master(client, m.ClusterStatus())
    victim = next(s for s in info.chunkservers if s.address == loc.replicas[0])
    peer = RawPeer(client.master, source="127.0.0.2")
    try:
        peer.request(m.Register(victim.server_id, victim.address, 1 << 40, 0, []), request_id=1)
        _, reply = peer.read_frame()
        assert isinstance(reply, m.ErrorReply) and reply.code == "already_exists", reply
        peer.request(m.Heartbeat(victim.server_id, 1 << 40, 0, 0, removed=[handle]), request_id=2)
        _, reply = peer.read_frame()
        assert isinstance(reply, m.HeartbeatReply) and not reply.known, reply
    finally:
        peer.close()
    assert victim.address in (await master(client, m.FindChunk(handle))).replicas


async def test_forged_bad_replica_reports_drop_no_healthy_replica(client: Client) -> None:
    """A report is a claim the master has the replica's own server verify: three forged ones, raw
    frames from another host and through a client, leave every healthy replica listed."""
    handle, version = await a_file(client, "/forged-reports.bin")
    loc = await master(client, m.FindChunk(handle))
    assert len(loc.replicas) == 3
    peer = RawPeer(client.master, source="127.0.0.2")
    try:
        for n, replica in enumerate(loc.replicas[:2], start=1):
            peer.request(m.ReportBadReplica(handle, replica, "says a stranger"), request_id=n)
            _, reply = peer.read_frame()
            assert isinstance(reply, m.Ok), reply
    finally:
        peer.close()
    await master(client, m.ReportBadReplica(handle, loc.replicas[2], "says a client"))
    after = await master(client, m.FindChunk(handle))
    assert sorted(after.replicas) == sorted(loc.replicas)
    assert after.version == version
    assert await client.read("/forged-reports.bin") == DATA


async def test_a_replica_its_server_finds_corrupt_is_still_dropped(cluster: LocalCluster, client: Client) -> None:
    handle, _ = await a_file(client, "/really-corrupt.bin")
    loc = await master(client, m.FindChunk(handle))
    bad = loc.replicas[-1]
    cluster.corrupt(handle, bad)
    with pytest.raises(ChecksumMismatch):  # its server reports itself before it answers
        await client.pool.call(bad, m.ReadChunk(handle, loc.version, 0, 1000))
    assert bad not in (await master(client, m.FindChunk(handle))).replicas
    assert await client.read("/really-corrupt.bin") == DATA


async def test_apply_mutation_from_a_non_primary_is_refused(client: Client) -> None:
    """A secondary applies a mutation only with the lease the master granted its primary: a raw
    ApplyMutation at the current version, with the data pushed first, changes nothing."""
    handle, version = await a_file(client, "/lease-only.bin")
    loc = await master(client, m.FindChunk(handle))
    assert loc.primary, "the write left no lease"
    secondary = next(r for r in loc.replicas if r != loc.primary)
    peer = RawPeer(secondary)
    try:
        peer.request(m.PushData("forged", []), request_id=1, data=b"\xee" * 4096)
        _, reply = peer.read_frame()
        assert isinstance(reply, m.Ok), reply
        peer.request(m.ApplyMutation(handle, version, 1, 0, "forged"), request_id=2)
        _, reply = peer.read_frame()
        assert isinstance(reply, m.ErrorReply) and reply.code == "not_primary", reply
        peer.request(m.ApplyMutation(handle, version, 1, 0, "forged", token="0" * 64), request_id=3)
        _, reply = peer.read_frame()
        assert isinstance(reply, m.ErrorReply) and reply.code == "not_primary", reply
    finally:
        peer.close()
    _, data = await client.pool.call(secondary, m.ReadChunk(handle, version, 0, len(DATA)))
    assert bytes(data) == DATA
    await client.write("/lease-only.bin", 0, b"ok")  # the real primary's mutations still apply
    assert await client.read("/lease-only.bin", 0, 2) == b"ok"


async def test_a_full_report_does_not_bring_back_a_replica_scheduled_for_deletion(client: Client) -> None:
    handle, version = await a_file(client, "/scheduled.bin")
    fake_address = f"127.0.0.1:{free_port()}"
    await master(client, m.Register("fake-deleted", fake_address, 1 << 30, 0, [m.ChunkReport(handle, version)]))
    assert fake_address in (await master(client, m.FindChunk(handle))).replicas
    deadline = time.monotonic() + 30
    while (await master(client, m.FindChunk(handle))).primary:  # the write's lease runs out
        assert time.monotonic() < deadline, "the lease never ended"
        await asyncio.sleep(0.2)
    file_id = (await client.stat("/scheduled.bin")).file_id
    try:  # a new lease: a new version without the fake, whose replica is scheduled for deletion
        await master(client, m.GetChunk(file_id, 0, for_write=True))
    except Unavailable:
        pass  # the dropped replica's read permission may delay the lease; the version moved on
    bumped = (await master(client, m.FindChunk(handle))).version
    assert bumped > version
    reply = await master(client, m.Register("fake-deleted", fake_address, 1 << 30, 0,
                                            [m.ChunkReport(handle, bumped)]))
    assert handle in reply.delete
    assert fake_address not in (await master(client, m.FindChunk(handle))).replicas


def test_a_restarted_master_adopts_no_version_it_never_granted(tmp_path) -> None:  # noqa: ANN001
    """Versions are durable and recorded before any replica takes them: a claim above the
    recorded one is never adopted, also in the grace after a restart, before any real replica
    has reported (the chunkservers are paused meanwhile)."""
    with LocalCluster(tmp_path, settings=FAST) as c:
        async def written() -> list[tuple[int, int]]:
            client = await connect(c.master_addr)
            try:
                return [await a_file(client, "/a.bin"), await a_file(client, "/b.bin")]
            finally:
                await client.close()

        (a, va), (b, vb) = asyncio.run(written())
        for i in range(c.chunkservers):
            c.pause(f"chunk{i + 1}")
        c.restart("master")
        fake = RawPeer(c.master_addr)
        try:
            fake.request(m.Register("fake-ahead", f"127.0.0.1:{free_port()}", 1 << 30, 0,
                                    [m.ChunkReport(a, va + 1000, len(DATA)), m.ChunkReport(b, vb + 1, len(DATA))]))
            _, reply = fake.read_frame()
            assert isinstance(reply, m.Registered), reply
        finally:
            fake.close()
        for i in range(c.chunkservers):
            c.resume(f"chunk{i + 1}")

        real = {c.chunk_addr(i) for i in range(c.chunkservers)}

        async def check() -> None:
            client = await connect(c.master_addr)
            try:
                for handle, version, path in ((a, va, "/a.bin"), (b, vb, "/b.bin")):
                    assert await client.read(path) == DATA
                    deadline = time.monotonic() + 30
                    while not real <= set((loc := await master(client, m.FindChunk(handle))).replicas):
                        assert time.monotonic() < deadline, f"chunk {handle}: replicas {loc.replicas}"
                        await asyncio.sleep(0.2)
                    assert loc.version == version and set(loc.replicas) == real, loc
            finally:
                await client.close()

        asyncio.run(check())


async def test_a_lease_check_with_a_token_that_is_not_ascii_is_refused_not_internal(client: Client) -> None:
    handle, version = await a_file(client, "/odd-token.bin")
    with pytest.raises(NotPrimary):
        await master(client, m.CheckLease(handle, version, "\u00e9" * 64))


async def test_a_copy_at_an_older_version_never_takes_a_replica_back(client: Client) -> None:
    """A ``CopyChunk`` sent before the chunk moved on (delayed, or from a move the master gave up)
    arriving at a server whose replica is already past it must not replace that replica with the
    older bytes at the older version: the master lists it at the newer one."""
    handle, version = await a_file(client, "/late-copy.bin")
    source, dest = (await master(client, m.FindChunk(handle))).replicas[:2]
    await client.pool.call(dest, m.SetVersion(handle, version + 1, 0.0))
    with pytest.raises(StaleVersion):
        await client.pool.call(dest, m.CopyChunk(handle, version, source))
    _, data = await client.pool.call(dest, m.ReadChunk(handle, version + 1, 0, len(DATA)))
    assert bytes(data) == DATA
