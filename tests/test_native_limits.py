"""The native protocol's limits and the chunkserver's checks of every request (issue 14): memory
follows the bytes that arrive, slow and idle peers are cut off, connections per client host are
bounded, a pipelining peer is throttled instead of stalling the master, pushed data has a budget,
and no handle, offset, lease or address from a request reaches a replica unchecked."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hercules_core import codec
from hercules_core import messages as m
from hercules_core.client import connect
from hercules_core.addresses import Address
from hercules_core.chunkserver.replicas import COPY_PIECE
from hercules_core.errors import InvalidArgument, NotFound, NotPrimary, ResourceExhausted
from hercules_core.framing import Frame, FrameLimits, Kind
from hercules_core.master.lease_tokens import LeaseTokens
from hercules_core.receiver import DATA_PIECE, FIRST_BUFFER, FrameReceiver
from hercules_core.plugins.manager import make_plugin_manager
from hercules_core.rpc import Dispatcher, RpcConnection
from hercules_core.testing.cluster import LocalCluster
from hercules_transport_tcp.connection import TcpConnection
from tests.helpers import FAST, MiB, RawPeer, rss_bytes

LIMITS = {**FAST, "HERCULES_REPLICATION": "1", "HERCULES_FRAME_TIMEOUT": "1", "HERCULES_IDLE_TIMEOUT": "5",
          "HERCULES_MAX_CONNECTIONS_PER_ADDRESS": "16", "HERCULES_MAX_IN_FLIGHT_PER_CONNECTION": "16",
          "HERCULES_PUSH_BUDGET": "8MiB", "HERCULES_PUSH_TTL": "2"}
HANDLE = 1 << 50  # far above anything the master hands out here


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("limits"), chunkservers=1, settings=LIMITS) as c:
        yield c


def frame_bytes(msg: object, request_id: int = 1, data: bytes = b"") -> bytes:
    frame = Frame(Kind.REQUEST, request_id, codec.encode(msg), data)
    return frame.header() + frame.meta + data


def declaring(data_len: int) -> bytes:
    """A header and message that announce ``data_len`` bytes of data that never come."""
    meta = codec.encode(m.PushData("never", []))
    return Frame(Kind.REQUEST, 1, meta).header()[:-4] + data_len.to_bytes(4, "big") + meta


async def call(address: str, msg: object, data: bytes = b"", master: str = "") -> object:
    client = await connect(master or address)
    try:
        reply, _ = await client.pool.call(address, msg, data)
        return reply
    finally:
        await client.close()


def run(coro):  # noqa: ANN001, ANN201 - a one-line asyncio.run for the tests below
    return asyncio.run(coro)


# -- memory follows the bytes ----------------------------------------------------------------


def feed(rx: FrameReceiver, raw: bytes) -> int:
    """Hand ``raw`` to the receiver the way the event loop does; the largest room it offered."""
    largest = 0
    while raw:
        buf = rx.get_buffer()
        largest = max(largest, len(buf))
        n = min(len(buf), len(raw))
        buf[:n] = raw[:n]
        rx.buffer_updated(n)
        raw = raw[n:]
    return largest


def test_a_declared_data_part_is_allocated_as_it_arrives() -> None:
    rx = FrameReceiver(FrameLimits())
    assert feed(rx, declaring(16 * MiB)) <= FIRST_BUFFER
    assert len(rx.get_buffer()) <= DATA_PIECE  # not the 16 MiB the header announced
    payload = bytes(range(256)) * (16 * MiB // 256)
    feed(rx, payload)
    (frame,) = rx.frames
    assert len(frame.data) == 16 * MiB and frame.data == payload


def test_headers_announcing_16_mib_do_not_cost_16_mib_each(limited: LocalCluster) -> None:
    pid = limited.process("master").proc.pid
    before = rss_bytes(pid)
    peers = [RawPeer(limited.master_addr, source="127.0.0.5") for _ in range(12)]
    for peer in peers:
        peer.send(declaring(16 * MiB) + b"x" * 1000)
    assert run(call(limited.master_addr, m.Ping())).role == "master"  # after every header was read
    assert rss_bytes(pid) - before < 12 * 4 * MiB  # 16 MiB each before
    for peer in peers:
        peer.close()


# -- slow, idle and too many peers -----------------------------------------------------------


def test_a_slowloris_peer_is_cut_off(limited: LocalCluster) -> None:
    for address in (limited.master_addr, limited.chunk_addr(0)):
        peer = RawPeer(address)
        raw = frame_bytes(m.Ping())
        peer.send(raw[:10])  # part of a header, then silence
        assert peer.read_frame() is None  # closed by the server (frame_timeout 1 s), not by our timeout
        peer.close()


def test_an_idle_peer_is_disconnected(limited: LocalCluster) -> None:
    peer = RawPeer(limited.master_addr, timeout=30)
    peer.request(m.Ping())
    assert isinstance(peer.read_frame()[1], m.Pong)
    assert peer.read_frame() is None  # idle_timeout 5 s
    peer.close()


def test_connections_per_client_host_are_limited(limited: LocalCluster) -> None:
    peers = [RawPeer(limited.master_addr, source="127.0.0.2") for _ in range(16)]
    for i, peer in enumerate(peers):
        peer.request(m.Ping(), request_id=i + 1)
        assert peer.read_frame()[0] == i + 1
    refused = RawPeer(limited.master_addr, source="127.0.0.2")
    request_id, reply = refused.read_frame()
    assert request_id == 0 and isinstance(reply, m.ErrorReply) and reply.code == "resource_exhausted"
    assert refused.read_frame() is None
    assert run(call(limited.master_addr, m.Ping())).role == "master"  # another host is still served
    peers.pop().close()
    again = RawPeer(limited.master_addr, source="127.0.0.2")
    for attempt in range(50):  # the server notices the close when it reads the EOF
        again.request(m.Ping(), request_id=7)
        answer = again.read_frame()
        if answer is not None and answer[0] == 7:
            break
        again.close()
        again = RawPeer(limited.master_addr, source="127.0.0.2")
    else:
        pytest.fail("a freed connection slot was never reused")
    for peer in [*peers, again, refused]:
        peer.close()


def test_the_native_client_reports_a_refused_connection(limited: LocalCluster) -> None:
    peers = [RawPeer(limited.chunk_addr(0), source="127.0.0.4") for _ in range(16)]
    for peer in peers:
        peer.request(m.Ping())
        assert peer.read_frame() is not None

    async def refused() -> None:
        host, _, port = limited.chunk_addr(0).rpartition(":")
        _, conn = await asyncio.get_running_loop().create_connection(
            lambda: TcpConnection(FrameLimits()), host, int(port), local_addr=("127.0.0.4", 0))
        rpc = RpcConnection(conn)
        try:
            with pytest.raises(ResourceExhausted, match="connections from 127.0.0.4"):
                await rpc.call(m.Ping(), timeout=10)
        finally:
            rpc.close()

    run(refused())
    for peer in peers:
        peer.close()


def test_a_pipelining_peer_does_not_stall_the_master(limited: LocalCluster) -> None:
    pid = limited.process("master").proc.pid
    before = rss_bytes(pid)
    flood = RawPeer(limited.master_addr, timeout=60, source="127.0.0.3")
    burst = b"".join(frame_bytes(m.ListDir("/"), i + 1) for i in range(200_000))

    def send() -> None:
        try:
            flood.send(burst)  # blocks while the master stops reading: that is the backpressure
        except OSError:
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    assert run(call(limited.master_addr, m.Mkdir("/while-flooded"))).path == "/while-flooded"
    assert isinstance(run(call(limited.master_addr, m.ListDir("/"))), m.Listing)
    assert rss_bytes(pid) - before < 200 * MiB
    flood.close()
    sender.join(timeout=60)


# -- pushed data ------------------------------------------------------------------------------


def test_pushed_data_has_a_budget_and_expires(limited: LocalCluster) -> None:
    address = limited.chunk_addr(0)

    async def scenario() -> None:
        client = await connect(limited.master_addr)
        try:
            piece = b"p" * (2 * MiB)
            for i in range(4):
                await client.pool.call(address, m.PushData(f"unused-{i}", []), piece)
            with pytest.raises(ResourceExhausted):
                await client.pool.call(address, m.PushData("one-too-many", []), piece)
            for _ in range(100):  # push_ttl 2 s: the unused pushes are dropped, room comes back
                try:
                    await client.pool.call(address, m.PushData("after-expiry", []), piece)
                    return
                except ResourceExhausted:
                    await asyncio.sleep(0.2)
            pytest.fail("unused pushed data never expired")
        finally:
            await client.close()

    run(scenario())


# -- the chunkserver checks every request ------------------------------------------------------


def test_the_chunkserver_refuses_out_of_range_requests(limited: LocalCluster) -> None:
    address = limited.chunk_addr(0)
    chunk_dir = limited.chunk_dir(0)

    async def scenario() -> None:
        client = await connect(limited.master_addr)
        try:
            async def refused(msg: object, data: bytes = b"", error: type = InvalidArgument) -> None:
                with pytest.raises(error):
                    await client.pool.call(address, msg, data)

            before = (await client.pool.call(address, m.Ping()))[0].info["chunks"]
            for handle in (2 ** 63, 0, -1, 2 ** 64 - 1):
                await refused(m.CreateChunk(handle, 1))
            await refused(m.CreateChunk(HANDLE, 2 ** 63))
            await refused(m.CreateChunk(HANDLE, 1, float("inf")))
            await refused(m.CreateChunk(HANDLE, 1, -5.0))
            await refused(m.DeleteChunks([1, 2 ** 63]))
            assert (await client.pool.call(address, m.Ping()))[0].info["chunks"] == before  # nothing stored

            await client.pool.call(address, m.CreateChunk(HANDLE, 1, 30.0))  # primary
            await client.pool.call(address, m.CreateChunk(HANDLE + 1, 1))  # a secondary
            await refused(m.SetVersion(HANDLE, 2, 1e308))
            await client.pool.call(address, m.PushData("far", []), b"x")
            await refused(m.WriteChunk(HANDLE, 1, 300 * MiB, "far", []))
            await client.pool.call(address, m.PushData("past-end", []), b"12345")
            await refused(m.WriteChunk(HANDLE, 1, MiB - 2, "past-end", []))
            await refused(m.ApplyMutation(HANDLE + 1, 1, 1, 0, "", 2 ** 40))
            await refused(m.ApplyMutation(HANDLE + 1, 1, 1, 2 ** 62))
            await refused(m.ApplyMutation(HANDLE + 1, 1, 2 ** 63, 0, "", 10))
            await refused(m.ApplyMutation(HANDLE, 1, 1, 0, "", 10), error=NotPrimary)  # its own primary
            await refused(m.ReadChunk(HANDLE, 1, 2 ** 62, 10))
            await refused(m.AppendChunk(HANDLE, 1, "x", [], 2 ** 40))

            for chain in (["not an address"], ["::::"], ["host:99999"], [""]):
                await refused(m.PushData("chain", chain), b"x")
                await refused(m.WriteChunk(HANDLE, 1, 0, "chain", chain))
            await refused(m.CopyChunk(HANDLE + 2, 1, "nonsense"))

            # What a secondary is asked for in the primary's order still works, within the chunk,
            # with the lease token the master would have given the primary (its key, made on first use).
            await refused(m.ApplyMutation(HANDLE + 1, 1, 1, 0, "", 10), error=NotPrimary)  # no token
            with pytest.raises(NotPrimary):
                await client.pool.call(limited.master_addr, m.CheckLease(HANDLE + 1, 1, "guess"))
            token = LeaseTokens(limited.root / "master").token(HANDLE + 1, 1)
            await client.pool.call(address, m.ApplyMutation(HANDLE + 1, 1, 1, 0, "", 10, token))
            _, data = await client.pool.call(address, m.ReadChunk(HANDLE + 1, 1, 0, 100))
            assert bytes(data) == bytes(10)
        finally:
            await client.close()

    run(scenario())
    on_disk = sum(p.stat().st_blocks * 512 for p in Path(chunk_dir).rglob("*") if p.is_file())
    assert on_disk < 16 * MiB  # no 300 MiB sparse file, no 2^40 padding
    assert limited.health()  # the chunkserver still registers and reports


def test_a_copy_source_cannot_grow_a_chunk_past_its_size(limited: LocalCluster) -> None:
    """Re-replication reads the source piece by piece: one that never stops sending is refused."""

    async def scenario() -> None:
        endless = Dispatcher("fake-chunkserver")

        @endless.on(m.ReadChunk)
        async def read(msg: m.ReadChunk, data: memoryview, ctx: object) -> tuple[m.ReadReply, bytes]:
            return m.ReadReply(COPY_PIECE), bytes(COPY_PIECE)

        server = await make_plugin_manager().transport("tcp").serve(
            Address("127.0.0.1", 0), endless.serve_connection, FrameLimits())
        client = await connect(limited.master_addr)
        try:
            with pytest.raises(InvalidArgument, match="past the"):
                await client.pool.call(limited.chunk_addr(0), m.CopyChunk(HANDLE + 5, 1, str(server.address)))
            with pytest.raises(NotFound):  # nothing was kept
                await client.pool.call(limited.chunk_addr(0), m.ReadChunk(HANDLE + 5, 1, 0, 10))
        finally:
            await client.close()
            server.close()
            await endless.aclose()

    run(scenario())
