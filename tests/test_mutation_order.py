"""A secondary applies a chunk's mutations in its primary's serial order, and never one that
comes after a later one was applied: a mutation delayed past its successor would put older
bytes over newer ones on that replica alone, at the same version, where no checksum or version
tells the replicas apart (a seeded nemesis run ended with replicas differing so)."""

from __future__ import annotations

from hercules_core import messages as m
from hercules_core.client import Client
from hercules_core.master.lease_tokens import LeaseTokens
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import RawPeer, file_handles

DATA = b"\x11" * 8192


def apply(peer: RawPeer, request_id: int, mutation: m.ApplyMutation, data: bytes) -> object:
    """Push ``data`` to the secondary, then have it apply ``mutation`` of it; its reply."""
    peer.request(m.PushData(mutation.data_id, []), request_id=request_id, data=data)
    _, reply = peer.read_frame()
    assert isinstance(reply, m.Ok), reply
    peer.request(mutation, request_id=request_id + 1)
    _, reply = peer.read_frame()
    return reply


async def test_a_mutation_that_comes_after_a_later_one_is_refused(cluster: LocalCluster, client: Client) -> None:
    await client.create("/order.bin")
    await client.write("/order.bin", 0, DATA)  # the real primary's mutations: serials 1.. on each replica
    [handle] = await file_handles(client, "/order.bin")
    loc, _ = await client.pool.call(client.master, m.FindChunk(handle))
    secondary = next(r for r in loc.replicas if r != loc.primary)
    token = LeaseTokens(cluster.root / "master").token(handle, loc.version)
    peer = RawPeer(secondary)
    try:
        # Serial 100 first: the secondary waits for 99 (it never comes), then applies 100 anyway.
        newer = m.ApplyMutation(handle, loc.version, 100, 0, "newer", token=token)
        assert isinstance(apply(peer, 1, newer, b"\x22" * 4096), m.Ok)
        # Serial 99 comes late: its primary gave up on it long ago. Applying it would put its
        # bytes over serial 100's on this replica only.
        older = m.ApplyMutation(handle, loc.version, 99, 0, "older", token=token)
        reply = apply(peer, 3, older, b"\x33" * 4096)
        assert isinstance(reply, m.ErrorReply) and reply.code == "stale_version", reply
        assert "after mutation 100" in reply.message, reply
    finally:
        peer.close()
    _, data = await client.pool.call(secondary, m.ReadChunk(handle, loc.version, 0, 4096))
    assert bytes(data) == b"\x22" * 4096
