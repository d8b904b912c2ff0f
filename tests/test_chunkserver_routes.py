"""The chunkserver's service routes every chunkserver message to the data path or the admin
handlers, all sharing one replica table (a real fs store, no master)."""

from __future__ import annotations

from pathlib import Path

from hercules_core import messages as m
from hercules_core.assembly import frame_limits
from hercules_core.chunkserver.service import ChunkserverService
from hercules_core.config import Config
from hercules_core.plugins import make_plugin_manager
from hercules_core.plugins.types import StoreContext
from hercules_core.rpc import CallContext, ConnectionPool


async def test_every_chunkserver_message_has_a_handler_on_one_replica_table(tmp_path: Path) -> None:
    plugins = make_plugin_manager()
    config = Config(root_dir=str(tmp_path))
    pool = ConnectionPool(plugins.transport(config.transport), frame_limits(config))
    async with plugins.chunk_store("fs").open(StoreContext(tmp_path / "store", {})) as store:
        service = ChunkserverService(config, store, pool, "127.0.0.1:0")
        assert set(service.dispatcher._handlers) == {  # noqa: SLF001 - the routing table is the subject
            m.Ping, m.CreateChunk, m.SetVersion, m.DeleteChunks, m.PushData, m.WriteChunk, m.AppendChunk,
            m.ApplyMutation, m.CopyChunk, m.CloneChunk, m.RevokeLease, m.VerifyChunk, m.ReadChunk}
        service.address = "127.0.0.1:8081"  # as the role sets it once serving
        assert service.replicas.address == "127.0.0.1:8081"
        ctx = CallContext("test")
        await service.admin.create(m.CreateChunk(7, 1, 30.0), memoryview(b""), ctx)
        assert service.replicas.primary(7, 1) is service.replicas.chunks[7]  # the lease came with it
        assert await service.load() == [m.ChunkReport(7, 1, 0)]
    await pool.close()
