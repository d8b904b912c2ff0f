"""The chunkserver: its replicas' state, and the handlers that use it, routed by message type.

- ``replicas``: versions, leases, serials, the changes heartbeats report, the checks handlers make;
- ``datapath``: the push chain, ordered writes and record appends, reads;
- ``admin``: what the master asks: create, delete, new versions and leases, copies and clones.

Background work (``heartbeat``, ``scrubber``) runs beside it on the same replicas.
"""

from __future__ import annotations

from hercules_core import messages as m
from hercules_core.chunkserver.admin import ChunkAdmin
from hercules_core.chunkserver.datapath import DataPath
from hercules_core.chunkserver.replicas import Replicas
from hercules_core.config import Config
from hercules_core.plugins.types import ChunkStore
from hercules_core.rpc import ConnectionPool, Dispatcher


class ChunkserverService:
    def __init__(self, config: Config, store: ChunkStore, pool: ConnectionPool, address: str) -> None:
        self.replicas = Replicas(config, store, pool, address)
        self.data = DataPath(self.replicas)
        self.admin = ChunkAdmin(self.replicas)
        self.server_id = self.replicas.server_id
        self.dispatcher = Dispatcher("chunkserver")
        for part in (self.admin, self.data):
            for msg_type, handler in part.handlers().items():
                self.dispatcher.on(msg_type)(handler)

    @property
    def address(self) -> str:
        """The advertised address (set once serving, with the real port if 0 was asked)."""
        return self.replicas.address

    @address.setter
    def address(self, address: str) -> None:
        self.replicas.address = address

    async def load(self) -> list[m.ChunkReport]:
        """The chunks the store holds, as the registration reports them."""
        return await self.replicas.load()
