"""Background scrubbing: re-verify idle chunks' checksums at a bounded rate.

Reads already verify every block they touch; the scrubber finds corruption in data
nobody reads, reports it, and lets the master replace the replica from a good copy.
"""

from __future__ import annotations

import asyncio
import logging
import time

from hercules_core.chunkserver.service import ChunkserverService
from hercules_core.errors import ChecksumMismatch, NotFound

log = logging.getLogger(__name__)


async def scrub_loop(chunkserver: ChunkserverService) -> None:
    replicas = chunkserver.replicas
    rate = replicas.config.scrub_rate
    while True:
        started = time.monotonic()
        for handle in sorted(replicas.chunks):
            state = replicas.chunks.get(handle)
            if state is None or time.monotonic() - state.last_mutation < 5.0:
                continue  # busy chunks are verified by their own reads
            try:
                await replicas.verify(handle, rate)
            except ChecksumMismatch as exc:
                await replicas.report_bad(handle, f"scrub: {exc.message}")
            except NotFound:
                continue  # deleted meanwhile
        elapsed = time.monotonic() - started
        await asyncio.sleep(max(1.0, replicas.config.scrub_interval - elapsed))

