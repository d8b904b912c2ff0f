"""Versions and leases under faults: paused replicas, failed creations, a lost master, slow replicas.

Every test runs real processes on loopback and injects the fault with signals.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

from hercules_core import messages as m
from hercules_core.client import Client, connect
from hercules_core.errors import HerculesError
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import GFS, file_handles, wait_until

KiB = 1 << 10


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


def _index(c: LocalCluster, address: str) -> int:
    return next(i for i in range(c.chunkservers) if c.chunk_addr(i) == address)


async def _wait_lease_gone(client: Client, handle: int, timeout: float) -> m.ChunkLocation:
    deadline = time.monotonic() + timeout
    while True:
        loc = await client.chunk_servers(handle)
        if not loc.primary:
            return loc
        assert time.monotonic() < deadline, f"chunk {handle} kept its lease for {timeout}s"
        await asyncio.sleep(0.2)


async def _file_without_lease(client: Client, timeout: float) -> tuple[m.FileInfo, int, m.ChunkLocation]:
    """``/f``, one chunk of its own, once the lease its upload took has run out."""
    await client.upload("/f", random.randbytes(64 * KiB))
    info = await client.stat("/f")
    handle = (await file_handles(client, "/f"))[0]
    return info, handle, await _wait_lease_gone(client, handle, timeout)


async def _secondary_to_be(client: Client, loc: m.ChunkLocation) -> str:
    """A replica the next lease grant will not make primary (the master picks the lowest server id)."""
    ids = {s.address: s.server_id for s in (await client.cluster()).chunkservers}
    return max(loc.replicas, key=lambda a: ids[a])


def test_replica_paused_through_a_version_bump_never_serves_old_bytes(tmp_path: Path) -> None:
    """The master's SetVersion to a paused replica times out; resumed, the replica applies it late.
    It must still count as stale: no read of it returns the bytes from before the write."""
    settings = {**GFS, "HERCULES_LEASE_SECONDS": "12",  # outlasts the master's 10 s wait for the SetVersion
                "HERCULES_PACK_THRESHOLD": "0"}  # the file's own chunk is bumped: not a record in a pack
    with LocalCluster(tmp_path, settings=settings) as c:
        old, new = random.randbytes(64 * KiB), random.randbytes(64 * KiB)

        async def scenario() -> None:
            client = await connect(c.master_addr)
            try:
                await client.upload("/f", old)
                handle = (await file_handles(client, "/f"))[0]
                before = await _wait_lease_gone(client, handle, 40)
                paused = await _secondary_to_be(client, before)
                proc = c.procs[f"chunk{_index(c, paused) + 1}"]
                proc.signal(signal.SIGSTOP)
                try:
                    await client.write("/f", 0, new)  # the bump's SetVersion to the paused one times out
                finally:
                    proc.signal(signal.SIGCONT)
                after = await client.chunk_servers(handle)
                assert after.version > before.version
                served = []
                deadline = time.monotonic() + 12
                while time.monotonic() < deadline:  # a client holding any version asks the resumed replica
                    for version in range(before.version, after.version + 2):
                        try:
                            _, data = await client.pool.call(paused, m.ReadChunk(handle, version, 0, len(old)))
                        except HerculesError:
                            continue
                        served.append((version, bytes(data) == old))
                    await asyncio.sleep(0.1)
                assert not [v for v, stale in served if stale], f"old bytes served at versions {served}"
                for _ in range(20):
                    reader = await connect(c.master_addr)
                    try:
                        assert await reader.read("/f") == new
                    finally:
                        await reader.close()
            finally:
                await client.close()

        run(scenario())


def test_failed_first_replica_at_creation_leaves_no_poisoned_chunk(tmp_path: Path) -> None:
    """One of six chunkservers hangs but is still counted live: creations that pick it must
    succeed on the others, and the chunks must take writes afterwards."""
    settings = {**GFS, "HERCULES_DEAD_AFTER": "60"}  # the hung server stays "live" for the whole test
    with LocalCluster(tmp_path, chunkservers=6, settings=settings) as c:
        c.procs["chunk6"].signal(signal.SIGSTOP)  # its CreateChunk times out: the retry comes later
        bodies = {f"/u{n}": random.randbytes(random.randrange(1, 200) * KiB) for n in range(40)}

        async def scenario() -> None:
            client = await connect(c.master_addr)
            try:
                results = await asyncio.gather(*(client.upload(p, b) for p, b in bodies.items()),
                                               return_exceptions=True)
                failed = {p: r for p, r in zip(bodies, results) if isinstance(r, BaseException)}
                assert not failed, failed
                c.procs["chunk6"].proc.kill()  # gone for good: copies to it fail at once
                c.procs["chunk6"].proc.wait()
                for path, body in bodies.items():
                    await client.write(path, 0, body[:KiB][::-1])  # a later mutation of every chunk
                    assert await client.read(path) == body[:KiB][::-1] + body[KiB:]
            finally:
                await client.close()

        run(scenario())


def test_reads_through_held_locations_go_on_for_the_lease_time_without_a_master(tmp_path: Path) -> None:
    lease = 8.0
    settings = {**GFS, "HERCULES_LEASE_SECONDS": str(lease)}
    with LocalCluster(tmp_path, settings=settings) as c:
        body = random.randbytes(300 * KiB)

        async def scenario() -> None:
            client = await connect(c.master_addr)
            try:
                await client.upload("/f", body)
                info = await client.open("/f")
                assert b"".join([p async for p in client.download("/f", info=info)]) == body
                c.procs["master"].proc.kill()
                c.procs["master"].proc.wait()
                killed = time.monotonic()
                reads = 0
                while time.monotonic() < killed + lease - 1.0:
                    got = await asyncio.wait_for(client._read_piece(info.file_id, 0, len(body)), 10)
                    assert bytes(got) == body, "wrong bytes while the master is down"
                    reads += 1
                    await asyncio.sleep(0.2)
                assert reads > 10
            finally:
                await client.close()

        run(scenario())


def test_a_lease_the_master_hands_out_is_honoured_by_the_primary_after_a_slow_replica(tmp_path: Path) -> None:
    """A replica slow to take a new version must not make the primary's lease end before the
    master's: every write location the master gives while it calls the lease live is accepted."""
    settings = {**GFS, "HERCULES_LEASE_SECONDS": "3", "HERCULES_DEAD_AFTER": "6",
                "HERCULES_PACK_THRESHOLD": "0"}  # leases on the file's own chunk: not a record in a pack
    with LocalCluster(tmp_path, settings=settings) as c:
        async def scenario() -> None:
            client = await connect(c.master_addr)
            try:
                info, handle, before = await _file_without_lease(client, 20)
                slow = await _secondary_to_be(client, before)
                proc = c.procs[f"chunk{_index(c, slow) + 1}"]
                proc.signal(signal.SIGSTOP)  # slower than the lease to take the next version
                asyncio.get_running_loop().call_later(4.0, proc.signal, signal.SIGCONT)
                refused = []
                try:
                    end = time.monotonic() + 8
                    while time.monotonic() < end:
                        loc = await client._master(m.GetChunk(info.file_id, 0, for_write=True))
                        data_id = await client._push(loc, b"y" * KiB)
                        try:
                            await client.pool.call(loc.primary, m.WriteChunk(
                                loc.handle, loc.version, 0, data_id, [r for r in loc.replicas if r != loc.primary]))
                        except HerculesError as exc:
                            refused.append(f"{exc} (master said {loc.lease_expires - time.time():.1f}s left)")
                        await asyncio.sleep(0.1)
                finally:
                    proc.signal(signal.SIGCONT)
                assert not refused, refused[:3]
            finally:
                await client.close()

        run(scenario())


def test_the_first_write_of_a_lease_succeeds_on_every_replica_while_the_master_restarts(tmp_path: Path) -> None:
    """Secondaries confirm a new lease's token with the master on its first mutation. A master
    restarting just then must delay that mutation, not fail it after the primary applied it: a
    failed write leaves the replicas apart, and a record append's retry lands a duplicate."""
    settings = {**GFS, "HERCULES_LEASE_SECONDS": "8", "HERCULES_PACK_THRESHOLD": "0"}
    with LocalCluster(tmp_path, settings=settings) as c:
        async def scenario() -> None:
            client = await connect(c.master_addr)
            try:
                info, handle, _ = await _file_without_lease(client, 30)
                loc = await client._master(m.GetChunk(info.file_id, 0, for_write=True))  # a new version
                c.procs["master"].proc.kill()
                c.procs["master"].proc.wait()
                restart = asyncio.get_running_loop().run_in_executor(None, lambda: (time.sleep(0.5), c.start_master()))
                data = random.randbytes(4 * KiB)
                data_id = await client._push(loc, data)
                await client.pool.call(loc.primary, m.WriteChunk(
                    loc.handle, loc.version, 1000, data_id, [r for r in loc.replicas if r != loc.primary]))
                await restart
                for replica in loc.replicas:
                    _, got = await client.pool.call(replica, m.ReadChunk(handle, loc.version, 1000, len(data)))
                    assert bytes(got) == data, f"{replica} lacks the acknowledged write"
            finally:
                await client.close()

        run(scenario())


def test_secondary_restarted_at_the_same_version_takes_the_next_mutation_at_once(tmp_path: Path) -> None:
    settings = {**GFS, "HERCULES_LEASE_SECONDS": "30"}
    with LocalCluster(tmp_path, settings=settings) as c:
        async def scenario() -> None:
            client = await connect(c.master_addr)
            try:
                await client.upload("/f", random.randbytes(64 * KiB))
                for n in range(3):
                    await client.write("/f", n * KiB, b"a" * KiB)  # serials 1..3 under one lease
                handle = (await file_handles(client, "/f"))[0]
                loc = await client.chunk_servers(handle)
                assert loc.primary
                secondary = next(r for r in loc.replicas if r != loc.primary)
                i = _index(c, secondary)
                c.procs[f"chunk{i + 1}"].stop()
                c.start_chunkserver(i)

                async def back() -> bool:
                    now = await client.chunk_servers(handle)
                    return secondary in now.replicas and now.version == loc.version and now.primary == loc.primary

                deadline = time.monotonic() + 20
                while not await back():
                    assert time.monotonic() < deadline, "restarted secondary did not rejoin at the same version"
                    await asyncio.sleep(0.2)
                await client.write("/f", 0, b"b" * KiB)
                assert (await client.read("/f", 0, KiB)) == b"b" * KiB
            finally:
                await client.close()

        run(scenario())
        stalls = [p.name for p in (tmp_path / "logs").glob("chunk*.log") if "arrived without" in p.read_text()]
        assert not stalls, f"a mutation waited for a serial lost in a restart on {stalls}"


def test_a_primary_restarted_within_its_lease_is_not_named_primary_again(tmp_path: Path) -> None:
    """A chunkserver restarted while it was primary has lost its lease: once it re-registers the
    master must not keep naming it primary (every write would be refused until the record ran out)."""
    settings = {**GFS, "HERCULES_LEASE_SECONDS": "30"}
    with LocalCluster(tmp_path, settings=settings) as c:
        async def main() -> None:
            client = await connect(c.master_addr)
            try:
                await client.upload("/leased", b"x" * 1000)
                await client.write("/leased", 0, b"y" * 10)  # a lease for 30 s
                loc = await client._master(m.GetChunk((await client.stat("/leased")).file_id, 0))
                granted = await client._master(m.FindChunk(loc.handle))
                assert granted.primary, "the write left no lease"
                await asyncio.to_thread(c.restart, c.chunkserver_name(granted.primary))
                # Until the restarted server has registered again and the record is forgotten. Its
                # replica may stay listed throughout (the restart is quicker than failure detection),
                # so being listed proves nothing; 20 s is well inside the 30 s lease, which would
                # otherwise keep it named primary.
                deadline = time.monotonic() + 20
                while True:
                    after = await client._master(m.FindChunk(loc.handle))
                    if after.primary != granted.primary or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.2)
                assert granted.primary in after.replicas, "the restarted server never came back"
                assert after.primary != granted.primary, \
                    f"{granted.primary} restarted without its lease, yet is still named primary"
                await client.write("/leased", 0, b"z" * 10)
                assert await client.read("/leased", 0, 10) == b"z" * 10
            finally:
                await client.close()

        asyncio.run(main())
