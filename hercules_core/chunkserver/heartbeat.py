"""Registration and heartbeats: how a chunkserver keeps the master's soft state true."""

from __future__ import annotations

import asyncio
import logging
import time

from hercules_core import messages as m
from hercules_core.chunkserver.replicas import Replicas
from hercules_core.chunkserver.service import ChunkserverService
from hercules_core.errors import HerculesError

log = logging.getLogger(__name__)


async def _register(replicas: Replicas, reports: list[m.ChunkReport]) -> float:
    usage = await replicas.store.usage()
    sent = time.monotonic()
    reply, _ = await replicas.pool.call(replicas.config.master_addr, m.Register(
        replicas.server_id, replicas.address, usage.capacity_bytes, usage.used_bytes, reports,
        replicas.held_leases(), replicas.metrics_url), timeout=30.0)
    await replicas.delete_chunks(reply.delete)  # before reads resume: what is deleted is stale
    if reply.chunk_size > 0:
        replicas.chunk_size = reply.chunk_size
    replicas.last_master_contact = sent
    log.info("registered with master %s (%d chunks, %d to delete)", replicas.config.master_addr,
             len(reports), len(reply.delete))
    return reply.heartbeat_interval


async def heartbeat_loop(chunkserver: ChunkserverService, reports: list[m.ChunkReport]) -> None:
    """Register, then heartbeat; re-register whenever the master does not know us (it restarted,
    or it declared us dead while we were away)."""
    replicas = chunkserver.replicas
    interval = replicas.config.heartbeat_interval
    registered = False
    beats = 0
    while True:
        try:
            if not registered:
                replicas.take_changes()
                interval = await _register(replicas, reports)
                registered = True
            else:
                beats += 1
                added, removed = replicas.take_changes()
                usage = await replicas.store.usage()
                full = replicas.full_report() if beats % replicas.config.full_report_every == 0 else None
                sent = time.monotonic()
                reply, _ = await replicas.pool.call(replicas.config.master_addr, m.Heartbeat(
                    replicas.server_id, usage.capacity_bytes, usage.used_bytes, len(replicas.chunks),
                    added, removed, replicas.leases_to_extend(), full), timeout=10.0)
                if not reply.known:  # dropped from every chunk it held: no reads until registered again
                    replicas.last_master_contact = -1e9
                    registered = False
                    reports = await replicas.load()
                    continue
                replicas.apply_extensions(reply.extended, sent)
                await replicas.delete_chunks(reply.delete)
                replicas.last_master_contact = sent
            chunkserver.data.expire_pushed()
        except (HerculesError, OSError) as exc:
            log.warning("master %s: %s", replicas.config.master_addr, exc)
            registered = False
            reports = await replicas.load()
        await asyncio.sleep(interval)
