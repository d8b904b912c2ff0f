"""Soft state about chunkservers: liveness, capacity, chunk locations and leases.

Rebuilt from registrations and heartbeats after a master restart, as in GFS.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import attrs

from hercules_core.addresses import Address
from hercules_core.master.phi import PhiDetector, PhiParams
from hercules_core.master.version_watch import VersionWatch
from hercules_core.plugins.types import ServerView


@attrs.define
class Chunkserver:
    server_id: str
    address: str
    capacity_bytes: int
    used_bytes: int
    chunk_count: int
    detector: PhiDetector
    held: set[int] = attrs.field(factory=set)
    dead: bool = False  # set once the detector gives up on it; cleared by re-registration
    metrics_url: str = ""  # as told at registration

    def view(self) -> ServerView:
        return ServerView(self.server_id, Address.parse(self.address), self.capacity_bytes,
                          self.used_bytes, self.chunk_count)

    @property
    def usage(self) -> float:
        return self.used_bytes / self.capacity_bytes if self.capacity_bytes else 1.0


@attrs.define
class Lease:
    primary: str  # server id
    version: int
    expires: float  # monotonic
    replicas: frozenset[str] = frozenset()  # the server ids that took this version
    # The earliest the primary's own clock may end the lease (the master's clock started before
    # it sent the grant): told to clients, and renewed before it runs out. ``expires`` is the latest.
    renew_by: float = 0.0

    def live(self, now: float) -> bool:
        return now < self.expires


@attrs.define
class Cluster:
    params: PhiParams
    heartbeat_interval: float
    servers: dict[str, Chunkserver] = attrs.field(factory=dict)
    locations: dict[int, set[str]] = attrs.field(factory=dict)
    leases: dict[int, Lease] = attrs.field(factory=dict)
    pending_delete: dict[str, set[int]] = attrs.field(factory=dict)  # to send in the next heartbeat reply
    deleting: dict[str, set[int]] = attrs.field(factory=dict)  # sent, not yet confirmed removed
    suspect: set[int] = attrs.field(factory=set)  # chunks whose replica count must be checked
    # Replicas reported older than the metadata's version while no current replica is known:
    # stale if a current one turns up, else the newest of them is adopted (see maintenance).
    behind: dict[int, dict[str, int]] = attrs.field(factory=dict)
    under_replicated: int = 0
    missing: int = 0
    # A replica dropped from a chunk may go on serving reads of its old version until its read
    # permission (lease time from its last acknowledged heartbeat) runs out, so no mutation may
    # happen before then. ``fenced``: servers still heard from, until they confirm the deletion;
    # ``fenced_until``: fixed ends, for servers that re-registered since.
    fence_seconds: float = 0.0  # lease time plus a margin for clock rates
    fenced: dict[int, set[str]] = attrs.field(factory=dict)
    fenced_until: dict[int, float] = attrs.field(factory=dict)
    versions: VersionWatch = attrs.field(factory=VersionWatch)  # for reports checked across an await

    def join(self, server_id: str, address: str, capacity: int, used: int, chunk_count: int) -> Chunkserver:
        previous = self.servers.get(server_id)
        if previous is not None:
            for handle in list(previous.held):
                self.drop_location(handle, server_id)
            for handle, servers in self.fenced.items():  # its old permission ends as it was going to
                if server_id in servers and previous.detector.last is not None:
                    end = previous.detector.last + self.fence_seconds
                    self.fenced_until[handle] = max(self.fenced_until.get(handle, 0.0), end)
                servers.discard(server_id)
        # Deletions sent before it re-registered may not have happened: they are sent again.
        self.pending_delete.setdefault(server_id, set()).update(self.deleting.pop(server_id, set()))
        detector = PhiDetector(self.params, self.heartbeat_interval)
        detector.heartbeat()
        server = self.servers[server_id] = Chunkserver(server_id, address, capacity, used, chunk_count, detector)
        return server

    def alive(self, server_id: str, now: float | None = None) -> bool:
        server = self.servers.get(server_id)
        return server is not None and not server.dead and server.detector.available(now)

    def live_servers(self) -> list[Chunkserver]:
        now = time.monotonic()
        return [s for s in self.servers.values() if self.alive(s.server_id, now)]

    def by_address(self, address: str) -> Chunkserver | None:
        return next((s for s in self.servers.values() if s.address == address), None)

    def add_location(self, handle: int, server_id: str) -> None:
        self.pending_delete.get(server_id, set()).discard(handle)  # a fresh copy cancels an unsent deletion
        self.fenced.get(handle, set()).discard(server_id)
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
        self.suspect.add(handle)

    def discard_replica(self, handle: int, server_id: str) -> None:
        """A replica is stale or corrupt: forget it and have its server delete it."""
        self.drop_location(handle, server_id)
        self.pending_delete.setdefault(server_id, set()).add(handle)
        self.fenced.setdefault(handle, set()).add(server_id)

    def fence(self, handle: int, now: float) -> tuple[float, str]:
        """Until when a dropped replica of ``handle`` may still serve reads, and its address."""
        end, who = self.fenced_until.get(handle, 0.0), "a replica that re-registered"
        for server_id in self.fenced.get(handle, ()):
            server = self.servers.get(server_id)
            last = server.detector.last if server is not None else None
            if last is not None and last + self.fence_seconds > end:
                end, who = last + self.fence_seconds, server.address
        if end <= now:
            self.fenced_until.pop(handle, None)
        return end, who

    def live_replicas(self, handle: int) -> list[Chunkserver]:
        now = time.monotonic()
        return [self.servers[s] for s in sorted(self.locations.get(handle, ()))
                if self.alive(s, now)]

    def forget(self, handles: Iterable[int]) -> None:
        """The chunks are gone from the namespace: schedule their replicas for deletion."""
        for handle in handles:
            self.versions.changing(handle)
            for server_id in self.locations.pop(handle, set()):
                self.pending_delete.setdefault(server_id, set()).add(handle)
                if server_id in self.servers:
                    self.servers[server_id].held.discard(handle)
            self.leases.pop(handle, None)
            self.suspect.discard(handle)
            self.fenced.pop(handle, None)
            self.fenced_until.pop(handle, None)

    def take_deletions(self, server_id: str) -> list[int]:
        handles = self.pending_delete.pop(server_id, set())
        if handles:
            self.deleting.setdefault(server_id, set()).update(handles)
        return sorted(handles)

    def confirm_removed(self, server_id: str, handles: Iterable[int]) -> None:
        self.deleting.get(server_id, set()).difference_update(handles)
        for handle in handles:
            self.fenced.get(handle, set()).discard(server_id)

    def deleting_on(self, handle: int) -> frozenset[str]:
        """Servers about to delete a copy of ``handle``: no new copy goes there until they have."""
        return frozenset(s for s, hs in (*self.pending_delete.items(), *self.deleting.items()) if handle in hs)

    def newly_dead(self) -> list[Chunkserver]:
        """Servers the detector has just given up on; their chunks become suspects."""
        now = time.monotonic()
        dead = []
        for server in self.servers.values():
            if not server.dead and not server.detector.available(now):
                server.dead = True
                self.suspect.update(server.held)
                dead.append(server)
        return dead
