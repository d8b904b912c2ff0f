"""Registration and heartbeats: how a chunkserver keeps the master's soft state true."""

from __future__ import annotations

import asyncio
import logging
import time

from hercules_core import messages as m
from hercules_core.chunkserver.service import ChunkserverService
from hercules_core.errors import HerculesError

log = logging.getLogger(__name__)


async def _register(service: ChunkserverService, reports: list[m.ChunkReport]) -> float:
    usage = await service.store.usage()
    reply, _ = await service.pool.call(service.config.master_addr, m.Register(
        service.server_id, service.address, usage.capacity_bytes, usage.used_bytes, reports,
        service.held_leases()), timeout=30.0)
    await service.delete_chunks(reply.delete)
    service.last_master_contact = time.monotonic()
    log.info("registered with master %s (%d chunks, %d to delete)", service.config.master_addr,
             len(reports), len(reply.delete))
    return reply.heartbeat_interval


async def heartbeat_loop(service: ChunkserverService, reports: list[m.ChunkReport]) -> None:
    """Register, then heartbeat; re-register whenever the master does not know us (it restarted,
    or it declared us dead while we were away)."""
    interval = service.config.heartbeat_interval
    registered = False
    beats = 0
    while True:
        try:
            if not registered:
                service.take_changes()
                interval = await _register(service, reports)
                registered = True
            else:
                beats += 1
                added, removed = service.take_changes()
                usage = await service.store.usage()
                full = service.full_report() if beats % service.config.full_report_every == 0 else None
                reply, _ = await service.pool.call(service.config.master_addr, m.Heartbeat(
                    service.server_id, usage.capacity_bytes, usage.used_bytes, len(service.chunks),
                    added, removed, service.leases_to_extend(), full), timeout=10.0)
                if not reply.known:
                    registered = False
                    reports = await service.load()
                    continue
                service.last_master_contact = time.monotonic()
                service.apply_extensions(reply.extended)
                await service.delete_chunks(reply.delete)
            service.expire_pushed()
        except (HerculesError, OSError) as exc:
            log.warning("master %s: %s", service.config.master_addr, exc)
            registered = False
            reports = await service.load()
        await asyncio.sleep(interval)
