"""The master: builds the chunk authority and the handlers that use it, and routes each
message type to its handler.

- ``authority``: allocation, leases, versions, copy-on-write, fencing (and the chunks' locks);
- ``namespace``: directories, files, uploads, the trash, snapshots;
- ``compose``: files made of other files' chunks, shared copy-on-write (and the sharing step
  snapshots use too);
- ``locations``: where a file's chunks are, for reading and for writing;
- ``reports``: chunkserver registrations, heartbeats and corrupt replicas.

Background work (failure detection, re-replication, rebalancing, trash collection) lives in
``maintenance``, which uses the same authority.
"""

from __future__ import annotations

from hercules_core import messages as m
from hercules_core.config import Config
from hercules_core.master.authority import ChunkAuthority
from hercules_core.master.compose import Composition
from hercules_core.master.locations import ChunkLocations
from hercules_core.master.namespace import Namespace
from hercules_core.master.packs import Packs
from hercules_core.master.reports import Reports
from hercules_core.master.store import MetadataStore
from hercules_core.master.validation import checked
from hercules_core.plugins.types import PlacementPolicy
from hercules_core.rpc import CallContext, ConnectionPool, Dispatcher


class MasterService:
    def __init__(self, config: Config, store: MetadataStore, placement: PlacementPolicy,
                 pool: ConnectionPool) -> None:
        self.config = config
        self.authority = ChunkAuthority(config, store, placement, pool)
        self.namespace = Namespace(self.authority)
        self.composition = Composition(self.authority)
        self.locations = ChunkLocations(self.authority)
        self.reports = Reports(self.authority)
        self.packs = Packs(self.authority)
        self.dispatcher = Dispatcher("master")
        self.dispatcher.on(m.Ping)(self.ping)
        for part in (self.namespace, self.composition, self.locations, self.reports, self.packs):
            for msg_type, handler in part.handlers().items():
                self.dispatcher.on(msg_type)(handler if msg_type in Reports.filters_itself else checked(handler))

    async def ping(self, msg: m.Ping, data: memoryview, ctx: CallContext) -> m.Pong:
        return m.Pong("master", {"chunkservers_alive": len(self.authority.cluster.live_servers()),
                                 "chunk_size": self.config.chunk_size,
                                 "replication": self.config.replication,
                                 "lease_seconds": self.config.lease_seconds,
                                 "pack_threshold": self.config.pack_threshold,
                                 "pack_lanes": self.config.pack_lanes})
