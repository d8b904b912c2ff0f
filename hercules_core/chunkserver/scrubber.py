"""Background scrubbing: re-verify idle chunks' checksums at a bounded rate.

Reads already verify every block they touch; the scrubber finds corruption in data
nobody reads, reports it, and lets the master replace the replica from a good copy.
"""

from __future__ import annotations

import asyncio
import logging
import time

from hercules_core import messages as m
from hercules_core.chunkserver.service import COPY_PIECE, ChunkserverService
from hercules_core.errors import ChecksumMismatch, HerculesError, NotFound

log = logging.getLogger(__name__)


async def scrub_loop(service: ChunkserverService) -> None:
    rate = service.config.scrub_rate
    while True:
        started = time.monotonic()
        for handle in sorted(service.chunks):
            state = service.chunks.get(handle)
            if state is None or time.monotonic() - state.last_mutation < 5.0:
                continue  # busy chunks are verified by their own reads
            try:
                await _scrub_chunk(service, handle, rate)
            except ChecksumMismatch as exc:
                log.error("scrub: chunk %d is corrupt: %s", handle, exc)
                await _report(service, handle, str(exc))
            except NotFound:
                continue  # deleted meanwhile
        elapsed = time.monotonic() - started
        await asyncio.sleep(max(1.0, service.config.scrub_interval - elapsed))


async def _scrub_chunk(service: ChunkserverService, handle: int, rate: int) -> None:
    offset = 0
    while True:
        state = service.chunks.get(handle)
        if state is None:
            return
        async with state.lock:
            piece = await service.store.read(handle, offset, COPY_PIECE)
        offset += len(piece)
        await asyncio.sleep(len(piece) / rate)  # bounded rate, and the event loop stays free
        if len(piece) < COPY_PIECE:
            return


async def _report(service: ChunkserverService, handle: int, reason: str) -> None:
    try:
        await service.pool.call(service.config.master_addr, m.ReportBadReplica(handle, service.address, reason),
                                timeout=10.0)
    except HerculesError as exc:
        log.warning("scrub: could not report chunk %d: %s", handle, exc)
