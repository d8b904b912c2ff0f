"""Packed files' publishes coalesced by the client (``client/publishing.py``): the first goes out
alone, those asked meanwhile go as one ``PublishPackedBatch``; each item succeeds or fails alone,
and a caller cancelled before its batch left publishes nothing. Against a real cluster."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hercules_core import messages as m
from hercules_core.client import Client, connect
from hercules_core.errors import AlreadyExists, InvalidArgument, NotFound
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST

PACKED = {**FAST, "HERCULES_PACK_THRESHOLD": "65536"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("publish"), settings=PACKED) as c:
        yield c


class MasterCalls:
    """Every message the client sends to the master, in order; the first ``PublishPacked`` is held
    until ``hold_until`` publishes wait behind it (and ``gate``, when given, is set), so the rest
    must go as one batch."""

    def __init__(self, client: Client, hold_until: int = 0, gate: asyncio.Event | None = None) -> None:
        self.sent: list[Any] = []
        self.hold_until = hold_until
        self.gate = gate
        real = client.pool.call

        async def call(address: str, msg: Any, *args: Any, **kwargs: Any) -> Any:
            if address == client.master:
                self.sent.append(msg)
                if isinstance(msg, m.PublishPacked) and self.hold_until:
                    await self._until_queued(client, self.hold_until)
                    self.hold_until = 0
                    if self.gate is not None:
                        await asyncio.wait_for(self.gate.wait(), 20)
            return await real(address, msg, *args, **kwargs)

        client.pool.call = call  # type: ignore[method-assign]

    @staticmethod
    async def _until_queued(client: Client, count: int) -> None:
        deadline = time.monotonic() + 20
        while len(client._publishes()._waiting) < count:  # noqa: SLF001 - the queue is the subject
            assert time.monotonic() < deadline, "the other publishes never queued behind the first"
            await asyncio.sleep(0.01)

    def of(self, kind: type) -> list[Any]:
        return [msg for msg in self.sent if isinstance(msg, kind)]


def test_publishes_asked_while_one_is_on_the_wire_go_as_one_batch(cluster: LocalCluster) -> None:
    files = {f"/batch/f{n:02d}": random.randbytes(random.choice([1, 700, 4096])) for n in range(24)}

    async def go() -> None:
        async with await connect(cluster.master_addr) as client:
            calls = MasterCalls(client, hold_until=len(files) - 1)
            infos = await asyncio.gather(*(client.upload(p, d) for p, d in files.items()))
            assert [i.size for i in infos] == [len(d) for d in files.values()]
            [alone] = calls.of(m.PublishPacked)
            [batch] = calls.of(m.PublishPackedBatch)
            assert sorted([alone.path, *(item.path for item in batch.items)]) == sorted(files)
            async with await connect(cluster.master_addr) as reader:  # a fresh client: nothing cached
                for path, data in files.items():
                    assert await reader.read(path) == data, path
                    located = await reader._master(m.Locate(path, 0, 1))  # noqa: SLF001
                    assert located.extent is not None, f"{path} is not a packed file"

    asyncio.run(go())


def test_each_item_of_a_batch_fails_or_succeeds_alone(cluster: LocalCluster) -> None:
    taken = {f"/items/taken{n}": b"first %d" % n for n in range(3)}
    fresh = {f"/items/fresh{n}": b"new %d" % n for n in range(5)}

    async def go() -> None:
        async with await connect(cluster.master_addr) as client:
            for path, data in taken.items():
                await client.upload(path, data)
            calls = MasterCalls(client, hold_until=len(taken) + len(fresh) - 1)
            paths = [*fresh, *taken]
            outcomes = await asyncio.gather(*(client.upload(p, b"second " + p.encode()) for p in paths),
                                            return_exceptions=True)
            assert len(calls.of(m.PublishPackedBatch)) == 1
            for path, outcome in zip(paths, outcomes):
                if path in taken:
                    assert isinstance(outcome, AlreadyExists), (path, outcome)
                    assert path in str(outcome)
                    assert await client.read(path) == taken[path]  # the refused publish changed nothing
                else:
                    assert isinstance(outcome, m.FileInfo), (path, outcome)
                    assert await client.read(path) == b"second " + path.encode()

    asyncio.run(go())


def test_a_caller_cancelled_before_its_batch_left_publishes_nothing(cluster: LocalCluster) -> None:
    paths = ["/cancel/a", "/cancel/b", "/cancel/c", "/cancel/d"]

    async def go() -> None:
        async with await connect(cluster.master_addr) as client:
            gate = asyncio.Event()
            calls = MasterCalls(client, hold_until=3, gate=gate)
            tasks = {p: asyncio.ensure_future(client.upload(p, p.encode())) for p in paths}
            queue = client._publishes()  # noqa: SLF001 - the queue is the subject
            deadline = time.monotonic() + 20
            while len(queue._waiting) < 3:  # noqa: SLF001
                assert time.monotonic() < deadline, "the publishes never queued"
                await asyncio.sleep(0.01)
            victim = queue._waiting[1][0].path  # noqa: SLF001 - one waiting behind the held publish
            tasks[victim].cancel()
            await asyncio.sleep(0)  # the cancellation reaches the waiting caller
            gate.set()
            kept = [p for p in paths if p != victim]
            await asyncio.gather(*(tasks[p] for p in kept))
            with pytest.raises(asyncio.CancelledError):
                await tasks[victim]
            [alone] = calls.of(m.PublishPacked)
            [batch] = calls.of(m.PublishPackedBatch)
            assert sorted([alone.path, *(item.path for item in batch.items)]) == kept
            with pytest.raises(NotFound):
                await client.stat(victim)
            for path in kept:
                assert await client.read(path) == path.encode()

    asyncio.run(go())


def test_the_master_refuses_an_empty_or_oversized_batch(cluster: LocalCluster) -> None:
    item = m.PublishPacked("/refused/x", 1, 0, 1, 0)

    async def go() -> None:
        async with await connect(cluster.master_addr) as client:
            for items in ([], [item] * 257):
                with pytest.raises(InvalidArgument, match="1 to 256 files"):
                    await client._master(m.PublishPackedBatch(items))  # noqa: SLF001

    asyncio.run(go())
