"""Fuzzing the native protocol (issue 14): random bytes, mutated frames and well-formed frames of
every message type with absurd fields (huge, negative and empty values, huge strings, wrong
types) go to the master and a chunkserver of a real cluster, for a bounded time and count each.
Afterwards no role crashed, no reply was ``internal``, memory stayed bounded, and well-formed
requests are still answered."""

from __future__ import annotations

import asyncio
import math
import random
import socket
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import attrs
import msgpack
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from hercules_core import messages as m
from hercules_core.client import connect
from hercules_core.framing import HEADER_SIZE, Frame, Kind
from hercules_core.messages import REGISTRY
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST, MiB, RawPeer, rss_bytes

BUDGET = 20.0  # seconds of fuzzing per role
BATCH = 1000  # examples per Hypothesis run; runs repeat until the time budget is spent
RSS_GROWTH = 200 * MiB
CLASSES = {cls.__name__: cls for cls in REGISTRY.values()}
TAGS = sorted(REGISTRY)

INTS = [0, -1, 1, 2 ** 31, 2 ** 32, 2 ** 53 + 1, 2 ** 62, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1, -2 ** 63, -2 ** 31]
FLOATS = [math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, -0.0, 5e-324, 0.5, 3600.1]
STRINGS = ["", "/", "..", "../../../etc/passwd", "/a/../../b", "\x00", "x" * 200_000, "/" + "d/" * 3000,
           "127.0.0.1:1", "[::1]:0", "host:99999", ":", "::::", "%2e%2e%2f", "é" * 1000, "a" * 255, "/ok"]


def any_value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(9 if depth < 2 else 6)
    if pick == 0:
        return None
    if pick == 1:
        return rng.random() < 0.5
    if pick == 2:
        return rng.choice(INTS) if rng.random() < 0.7 else rng.randint(-2 ** 63, 2 ** 64 - 1)
    if pick == 3:
        return rng.choice(FLOATS) if rng.random() < 0.7 else rng.uniform(-1e9, 1e9)
    if pick == 4:
        return rng.choice(STRINGS) if rng.random() < 0.7 else "".join(chr(rng.randrange(0x2FF)) for _ in range(8))
    if pick == 5:
        return rng.randbytes(rng.randrange(64))
    if pick in (6, 7):
        return [any_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {str(any_value(rng, depth + 1))[:8]: any_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def value_for(rng: random.Random, type_text: str, depth: int = 0) -> Any:
    """Mostly a value of the field's type (so the frame reaches its handler), sometimes anything."""
    if rng.random() < 0.2:
        return any_value(rng, depth)
    if type_text.endswith("| None"):
        return None if rng.random() < 0.3 else value_for(rng, type_text.removesuffix("| None").strip(), depth)
    if type_text == "int":
        return any_value(rng) if rng.random() < 0.05 else (
            rng.choice(INTS) if rng.random() < 0.6 else rng.randint(-2 ** 63, 2 ** 64 - 1))
    if type_text == "float":
        return rng.choice(FLOATS + INTS)
    if type_text == "bool":
        return rng.random() < 0.5
    if type_text == "str":
        return rng.choice(STRINGS)
    if type_text.startswith("list["):
        item = type_text[5:-1].strip("'\"")
        return [value_for(rng, item, depth + 1) for _ in range(rng.randrange(4 if depth else 20))]
    if type_text in CLASSES and depth < 2:
        return fields_of(rng, CLASSES[type_text], depth + 1)
    return any_value(rng, depth)


def fields_of(rng: random.Random, cls: type, depth: int = 0) -> dict[str, Any]:
    fields = {f.name: value_for(rng, str(f.type), depth) for f in attrs.fields(cls) if rng.random() < 0.95}
    if rng.random() < 0.05:
        fields["unexpected"] = any_value(rng)
    return fields


def absurd_message(rng: random.Random) -> bytes:
    """``[tag, fields]`` of a real message type, its fields absurd: what ``codec.decode`` sees."""
    tag = rng.choice(TAGS)
    return msgpack.packb([tag, fields_of(rng, REGISTRY[tag])], use_bin_type=True)


def frame(meta: bytes, request_id: int, data: bytes = b"") -> bytes:
    raw = Frame(Kind.REQUEST, request_id, meta, data)
    return raw.header() + meta + data


def mutated_frame(rng: random.Random) -> bytes:
    """A valid frame with bytes flipped, cut, inserted or its header's lengths rewritten."""
    raw = bytearray(frame(absurd_message(rng), rng.randrange(2 ** 32), rng.randbytes(rng.randrange(64))))
    for _ in range(rng.randint(1, 4)):
        action = rng.choice(["flip", "cut", "insert", "length"])
        at = rng.randrange(len(raw)) if raw else 0
        if action == "flip" and raw:
            raw[at] ^= rng.randint(1, 255)
        elif action == "cut":
            del raw[at:]
        elif action == "insert":
            raw[at:at] = rng.randbytes(rng.randint(1, 16))
        elif len(raw) >= HEADER_SIZE:
            field = rng.choice([8, 12])  # meta or data length
            raw[field:field + 4] = rng.randrange(2 ** 32).to_bytes(4, "big")
    return bytes(raw)


class Target:
    """One role under fuzz: a persistent peer for well-formed frames, fresh ones for broken bytes."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.peer: RawPeer | None = None
        self.next_id = 1
        self.sent = 0
        self.internal: list[str] = []
        self.answers: Counter[str] = Counter()  # error code, or the reply's type
        self.failures: list[str] = []  # the role stopped answering (a timeout), refused connections...

    def check(self, reply: tuple[int, Any]) -> None:
        answer = reply[1]
        self.answers[answer.code if isinstance(answer, m.ErrorReply) else type(answer).__name__] += 1
        if isinstance(answer, m.ErrorReply) and answer.code == "internal":
            self.internal.append(answer.message)

    def well_formed(self, meta: bytes) -> None:
        """Send ``meta`` in a valid frame, then a ping; every reply up to the ping's is checked."""
        if self.peer is None:
            self.peer = RawPeer(self.address, timeout=15)
        ping = self.next_id + 1
        self.next_id += 2
        try:
            self.peer.send(frame(meta, ping - 1) + frame(msgpack.packb(["ping", {}]), ping))
            while (reply := self.peer.read_frame()) is not None:
                self.check(reply)
                if reply[0] == ping:
                    return
        except OSError:  # reset, broken pipe, not connected: the role closed it
            pass
        self.peer.close()  # the role closed it (a frame it cannot parse): fine, use a new one
        self.peer = None

    def broken(self, raw: bytes) -> None:
        """Send ``raw`` on its own connection and half-close it; read until the role closes it."""
        peer = RawPeer(self.address, timeout=15)
        try:
            peer.send(raw)
            peer.sock.shutdown(socket.SHUT_WR)
            while (reply := peer.read_frame()) is not None:
                self.check(reply)
        except OSError:  # reset, broken pipe, not connected: the role closed it
            pass
        finally:
            peer.close()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    settings_ = {**FAST, "HERCULES_REPLICATION": "1", "HERCULES_FRAME_TIMEOUT": "2"}
    with LocalCluster(tmp_path_factory.mktemp("fuzz"), chunkservers=1, settings=settings_) as c:
        yield c


def fuzz(target: Target) -> None:
    stop = time.monotonic() + BUDGET

    @settings(max_examples=BATCH, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.integers(0, 2 ** 64))  # a seed: all drawing happens up front, whatever the role does
    def one(seed: int) -> None:
        if time.monotonic() > stop:
            return
        rng = random.Random(seed)
        kind = rng.choice(["well", "well", "mutated", "bytes"])
        try:  # recorded, not raised: a failure is reported with its input, never replayed against a changed role
            if kind == "well":
                target.well_formed(absurd_message(rng))
            else:
                target.broken(mutated_frame(rng) if kind == "mutated" else rng.randbytes(rng.randrange(2048)))
        except Exception as exc:  # noqa: BLE001
            target.failures.append(f"seed {seed} ({kind}): {type(exc).__name__}: {exc}")
        target.sent += 1

    while time.monotonic() < stop:
        one()
    if target.peer is not None:
        target.peer.close()


async def still_answered(cluster: LocalCluster) -> None:
    client = await connect(cluster.master_addr)
    try:
        assert (await client.pool.call(cluster.master_addr, m.Ping()))[0].role == "master"
        assert (await client.pool.call(cluster.chunk_addr(0), m.Ping()))[0].role == "chunkserver"
        await client.pool.call(cluster.master_addr, m.Mkdir("/after-fuzz"))
        reply, _ = await client.pool.call(cluster.master_addr, m.Stat("/after-fuzz"))
        assert reply.is_dir
    finally:
        await client.close()


@pytest.mark.parametrize("role", ["master", "chunk1"])
def test_fuzzed_frames_leave_every_role_answering(fuzzed: LocalCluster, role: str) -> None:
    pid = fuzzed.process(role).proc.pid
    before = rss_bytes(pid)
    target = Target(fuzzed.address_of(role))
    fuzz(target)
    print(f"{role}: {target.sent} cases, answers {dict(target.answers)}")
    assert target.sent >= 50, "too few examples reached the role to mean anything"
    handled = sum(n for code, n in target.answers.items() if code not in ("protocol_error", "Pong"))
    assert handled >= 20, f"too few frames got past decoding to a handler: {dict(target.answers)}"
    assert target.failures == [], f"{len(target.failures)} sends failed, e.g. {target.failures[:3]}"
    assert target.internal == [], f"{len(target.internal)} internal replies, e.g. {target.internal[:3]}"
    assert all(proc.running for proc in fuzzed.procs.values()), "a role died under fuzz"
    assert rss_bytes(pid) - before < RSS_GROWTH
    asyncio.run(still_answered(fuzzed))
