"""Soft state about chunkservers: liveness, capacity, chunk locations and leases.

Rebuilt from registrations and heartbeats after a master restart, as in GFS.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import attrs

from hercules_core.addresses import Address
from hercules_core.plugins.types import ServerView


@attrs.define
class Chunkserver:
    server_id: str
    address: str
    capacity_bytes: int
    used_bytes: int
    chunk_count: int
    last_heartbeat: float = attrs.field(factory=time.monotonic)
    held: set[int] = attrs.field(factory=set)

    def view(self) -> ServerView:
        return ServerView(self.server_id, Address.parse(self.address), self.capacity_bytes,
                          self.used_bytes, self.chunk_count)


@attrs.define
class Lease:
    primary: str  # server id
    version: int
    expires: float  # monotonic

    def live(self, now: float) -> bool:
        return now < self.expires


@attrs.define
class Cluster:
    dead_after: float
    servers: dict[str, Chunkserver] = attrs.field(factory=dict)
    locations: dict[int, set[str]] = attrs.field(factory=dict)
    leases: dict[int, Lease] = attrs.field(factory=dict)
    pending_delete: dict[str, set[int]] = attrs.field(factory=dict)

    def alive(self, server_id: str, now: float | None = None) -> bool:
        server = self.servers.get(server_id)
        now = time.monotonic() if now is None else now
        return server is not None and now - server.last_heartbeat <= self.dead_after

    def live_servers(self) -> list[Chunkserver]:
        now = time.monotonic()
        return [s for s in self.servers.values() if self.alive(s.server_id, now)]

    def by_address(self, address: str) -> Chunkserver | None:
        return next((s for s in self.servers.values() if s.address == address), None)

    def add_location(self, handle: int, server_id: str) -> None:
        self.locations.setdefault(handle, set()).add(server_id)
        self.servers[server_id].held.add(handle)

    def drop_location(self, handle: int, server_id: str) -> None:
        holders = self.locations.get(handle)
        if holders is not None:
            holders.discard(server_id)
            if not holders:
                del self.locations[handle]
        server = self.servers.get(server_id)
        if server is not None:
            server.held.discard(handle)

    def live_replicas(self, handle: int) -> list[Chunkserver]:
        now = time.monotonic()
        return [self.servers[s] for s in sorted(self.locations.get(handle, ()))
                if self.alive(s, now)]

    def forget(self, handles: Iterable[int]) -> None:
        """The chunks are gone from the namespace: schedule their replicas for deletion."""
        for handle in handles:
            for server_id in self.locations.pop(handle, set()):
                self.pending_delete.setdefault(server_id, set()).add(handle)
                if server_id in self.servers:
                    self.servers[server_id].held.discard(handle)
            self.leases.pop(handle, None)

    def take_deletions(self, server_id: str) -> list[int]:
        return sorted(self.pending_delete.pop(server_id, set()))
