"""One record appended at a chunk's primary: small records inline, larger ones pushed first.

A record of up to ``INLINE_RECORD`` bytes travels with its ``AppendChunk``: one round trip
instead of a push along the chain plus the append, and the primary can group it with the other
small records queued on the chunk into one mutation (``chunkserver/appends.py``). A larger record
is pushed along the chain first, so the primary's link does not carry it to every replica.
"""

from __future__ import annotations

import uuid

from hercules_core import messages as m
from hercules_core.plugins.types import Buffer
from hercules_core.rpc import ConnectionPool

INLINE_RECORD = 64 << 10
DATA_TIMEOUT = 20.0  # one push or mutation; a hung chunkserver fails it, and the retry goes elsewhere


async def push(pool: ConnectionPool, loc: m.ChunkLocation, data: Buffer) -> str:
    """Push ``data`` along the chunk's chain of replicas; the id a write or append then names."""
    data_id = uuid.uuid4().hex
    await pool.call(loc.replicas[0], m.PushData(data_id, list(loc.replicas[1:])), data, timeout=DATA_TIMEOUT)
    return data_id


async def append_record(pool: ConnectionPool, loc: m.ChunkLocation, data: Buffer, chunk_size: int) -> int:
    """The record's offset in the chunk; ``ChunkFull`` when it did not fit (the chunk is padded)."""
    secondaries = [r for r in loc.replicas if r != loc.primary]
    if len(data) <= INLINE_RECORD:
        written, _ = await pool.call(loc.primary, m.AppendChunk(loc.handle, loc.version, "", secondaries, chunk_size),
                                     data, timeout=DATA_TIMEOUT)
        return int(written.offset)
    data_id = await push(pool, loc, data)
    written, _ = await pool.call(loc.primary, m.AppendChunk(loc.handle, loc.version, data_id, secondaries, chunk_size),
                                 timeout=DATA_TIMEOUT)
    return int(written.offset)
