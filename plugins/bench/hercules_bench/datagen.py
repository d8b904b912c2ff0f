"""Payloads: seeded pseudo-random bytes (incompressible) and JSON-lines text (compressible)."""

from __future__ import annotations

import json
import random

from hercules_bench.options import MiB


def random_bytes(size: int, seed: int) -> bytes:
    """``size`` incompressible bytes, the same for the same seed (built 1 MiB at a time)."""
    rng = random.Random(seed)
    parts = [rng.randbytes(min(MiB, size - pos)) for pos in range(0, size, MiB)]
    return b"".join(parts)


def json_lines(size: int, seed: int) -> bytes:
    """``size`` bytes of log-like JSON lines: repeated keys, varied values; zstd finds ~5-10x."""
    rng = random.Random(seed)
    levels = ["INFO", "INFO", "INFO", "WARN", "DEBUG", "ERROR"]
    services = ["gateway", "master", "chunkserver", "client", "scheduler", "billing", "auth"]
    words = ("request served chunk lease renewed replica write append read list stat create rename "
             "delete timeout retry ok failed user file bytes latency cache hit miss").split()
    out = bytearray()
    ts = 1_780_000_000.0
    while len(out) < size:
        ts += rng.random() / 10
        record = {"ts": round(ts, 3), "level": rng.choice(levels), "service": rng.choice(services),
                  "request_id": f"{rng.getrandbits(64):016x}", "user": f"user{rng.randrange(5000)}",
                  "path": f"/data/{rng.choice(words)}/{rng.randrange(100000)}.bin",
                  "bytes": rng.randrange(1 << 24), "latency_ms": round(rng.expovariate(1 / 12), 2),
                  "msg": " ".join(rng.choice(words) for _ in range(rng.randrange(3, 12)))}
        out += json.dumps(record, separators=(",", ":")).encode() + b"\n"
    return bytes(out[:size])


def small_payload(index: int, size: int, seed: int) -> bytes:
    """The content of small file ``index``: unique per file (a header naming it, then random bytes)."""
    head = f"hercules-bench file {index} seed {seed}\n".encode()
    body = random.Random(seed * 1_000_003 + index).randbytes(max(0, size - len(head)))
    return (head + body)[:size]
