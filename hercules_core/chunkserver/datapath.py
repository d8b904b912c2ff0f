"""The data path: data pushed along the chain of replicas, writes and record appends ordered by
the primary's serial numbers and applied on every replica, and reads.

Pushed data waits in memory for the write that uses it, within a budget (``push_budget`` bytes,
past it a push is refused with ``resource_exhausted``) and for at most ``push_ttl`` seconds.
Every request is checked (``checks``) before it touches a replica, and a mutation from a peer
carries the primary's lease token (``Replicas.check_lease``)."""

from __future__ import annotations

import asyncio
import logging
import time

from hercules_core import messages as m
from hercules_core.chunkserver import checks
from hercules_core.chunkserver.appends import PendingAppend, fitting, joined, take_batch
from hercules_core.chunkserver.replicas import ChunkState, Replicas
from hercules_core.errors import ChunkFull, InvalidArgument, NotFound, ResourceExhausted, StaleVersion, Unavailable
from hercules_core.plugins.types import Buffer
from hercules_core.rpc import CallContext, Handler

log = logging.getLogger(__name__)
ORDER_WAIT = 5.0  # how long a secondary waits for an earlier serial before applying anyway


class DataPath:
    def __init__(self, replicas: Replicas) -> None:
        self.replicas = replicas
        self.config = replicas.config
        self.store = replicas.store
        self.pool = replicas.pool
        self._pushed: dict[str, tuple[Buffer, float]] = {}
        self._pushed_bytes = 0  # held in ``_pushed``, within ``config.push_budget``
        # A peer in the write chain that cannot answer within this time is treated as failed: the
        # client retries, and the master, having declared it dead, leaves it out (its copy goes stale).
        self.peer_timeout = max(5.0, 2 * self.config.dead_after)

    def handlers(self) -> dict[type, Handler]:
        return {m.PushData: self.push, m.WriteChunk: self.write, m.AppendChunk: self.append,
                m.ApplyMutation: self.apply, m.ReadChunk: self.read}

    def expire_pushed(self) -> None:
        cutoff = time.monotonic() - self.config.push_ttl
        for data_id in [k for k, (_, t) in self._pushed.items() if t < cutoff]:
            self._drop_pushed(data_id)

    # -- helpers -------------------------------------------------------------------------------

    def _hold_pushed(self, data_id: str, data: Buffer) -> None:
        self._drop_pushed(data_id)
        if self._pushed_bytes + len(data) > self.config.push_budget:
            self.expire_pushed()
            if self._pushed_bytes + len(data) > self.config.push_budget:
                raise ResourceExhausted(f"{self.replicas.address} holds {self._pushed_bytes} bytes of pushed data "
                                        f"not yet written (budget {self.config.push_budget}); retry later")
        self._pushed[data_id] = (data, time.monotonic())
        self._pushed_bytes += len(data)

    def _drop_pushed(self, data_id: str) -> Buffer | None:
        entry = self._pushed.pop(data_id, None)
        if entry is None:
            return None
        self._pushed_bytes -= len(entry[0])
        return entry[0]

    def _take_pushed(self, data_id: str) -> Buffer:
        data = self._drop_pushed(data_id)
        if data is None:
            raise NotFound(f"no data pushed under id {data_id} to {self.replicas.address}")
        return data

    async def _to_secondaries(self, secondaries: list[str], msg: m.ApplyMutation, inline: Buffer = b"") -> None:
        results = await asyncio.gather(*(self.pool.call(a, msg, inline, timeout=self.peer_timeout)
                                         for a in secondaries), return_exceptions=True)
        failed = [f"{a}: {r}" for a, r in zip(secondaries, results) if isinstance(r, BaseException)]
        if failed:
            raise Unavailable(f"chunk {msg.handle}: mutation {msg.serial} failed on " + "; ".join(failed))

    def _next_serial(self, state: ChunkState, handle: int, version: int) -> int:
        """Under the chunk's lock: re-check the lease, then take the next serial number."""
        self.replicas.primary(handle, version)
        state.serial += 1
        state.last_mutation = time.monotonic()
        return state.serial

    async def _mutate(self, secondaries: list[str], mutation: m.ApplyMutation, payload: Buffer,
                      inline: bool = False) -> None:
        """Apply here and on every secondary at once; success only when all of them applied.
        ``inline``: the secondaries get ``payload`` with the mutation (nothing was pushed to them)."""
        results = await asyncio.gather(
            self._apply(mutation.handle, mutation.offset, payload, mutation.pad_to),
            self._to_secondaries(secondaries, mutation, payload if inline else b""), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _apply(self, handle: int, offset: int, data: Buffer, pad_to: int) -> None:
        await self.replicas.reporting(handle, self._apply_here(handle, offset, data, pad_to))

    async def _apply_here(self, handle: int, offset: int, data: Buffer, pad_to: int) -> None:
        checks.extent(offset, len(data), self.replicas.chunk_size)
        checks.extent(0, pad_to, self.replicas.chunk_size)
        if pad_to:
            info = await self.store.info(handle)
            if info.length < pad_to:
                await self.store.write(handle, info.length, bytes(pad_to - info.length))
        else:
            await self.store.write(handle, offset, data)

    # -- handlers --------------------------------------------------------------------------------

    async def push(self, msg: m.PushData, data: memoryview, ctx: CallContext) -> m.Ok:
        checks.addresses(msg.chain)
        self._hold_pushed(msg.data_id, data)
        if msg.chain:
            try:
                await self.pool.call(msg.chain[0], m.PushData(msg.data_id, msg.chain[1:]), data,
                                     timeout=self.peer_timeout)
            except Exception:
                self._drop_pushed(msg.data_id)
                raise
        return m.Ok()

    async def write(self, msg: m.WriteChunk, data: memoryview, ctx: CallContext) -> m.Written:
        checks.chunk(msg.handle, msg.version)
        checks.addresses(msg.secondaries)
        checks.extent(msg.offset, 0, self.replicas.chunk_size)
        state = self.replicas.primary(msg.handle, msg.version)
        payload = self._take_pushed(msg.data_id)
        checks.extent(msg.offset, len(payload), self.replicas.chunk_size)
        async with state.lock:
            serial = self._next_serial(state, msg.handle, msg.version)
            await self._mutate(msg.secondaries, m.ApplyMutation(
                msg.handle, msg.version, serial, msg.offset, msg.data_id, token=state.token), payload)
        return m.Written(msg.offset, len(payload))

    async def append(self, msg: m.AppendChunk, data: memoryview, ctx: CallContext) -> m.Written:
        """A record at the chunk's end: sent inline (no ``data_id``) or pushed beforehand. Inline
        records queued on the same chunk go as one mutation (``appends``)."""
        checks.chunk(msg.handle, msg.version)
        checks.addresses(msg.secondaries)
        if not 0 < msg.chunk_size <= self.replicas.chunk_size:
            raise InvalidArgument(f"chunk size {msg.chunk_size} is outside 1..{self.replicas.chunk_size}")
        state = self.replicas.primary(msg.handle, msg.version)
        payload = self._take_pushed(msg.data_id) if msg.data_id else data
        if len(payload) > msg.chunk_size // 4:
            raise InvalidArgument(f"a record may be at most a quarter chunk ({msg.chunk_size // 4} bytes)")
        pending = PendingAppend(msg, payload)
        state.appends.append(pending)
        try:
            async with state.lock:
                if not pending.settled:  # else the append ahead of it took it along
                    await self._append_batch(state, take_batch(state.appends, pending))
        finally:
            if not pending.settled:  # cancelled while it waited
                state.appends[:] = [p for p in state.appends if p is not pending]
        if pending.error is not None:
            raise pending.error
        assert pending.offset is not None
        return m.Written(pending.offset, len(payload))

    async def _append_batch(self, state: ChunkState, batch: list[PendingAppend]) -> None:
        """Under the chunk's lock: the records that fit, as one mutation, then (if some did not
        fit) the chunk padded to its end and ``ChunkFull`` for the rest. Settles every one."""
        msg = batch[0].msg
        try:
            serial = self._next_serial(state, msg.handle, msg.version)
            offset = (await self.store.info(msg.handle)).length
            fit = fitting(batch, offset, msg.chunk_size)
            if fit:
                records = batch[:fit]
                pushed = not records[0].inline
                await self._mutate(msg.secondaries, m.ApplyMutation(
                    msg.handle, msg.version, serial, offset, msg.data_id if pushed else "", token=state.token),
                    joined(records), inline=not pushed)
                self.replicas.appended_records += fit
                self.replicas.append_mutations += 1
                for pending in records:
                    pending.offset, offset = offset, offset + len(pending.payload)
            if fit < len(batch):
                serial = self._next_serial(state, msg.handle, msg.version) if fit else serial
                await self._mutate(msg.secondaries, m.ApplyMutation(
                    msg.handle, msg.version, serial, 0, "", msg.chunk_size, state.token), b"")
                for pending in batch[fit:]:
                    pending.error = ChunkFull(f"chunk {msg.handle} is full; append to the next chunk")
        except BaseException as exc:
            for pending in batch:
                if not pending.settled:
                    pending.error = exc if isinstance(exc, Exception) else \
                        Unavailable(f"chunk {msg.handle}: the append batch was cancelled")
            if not isinstance(exc, Exception):
                raise

    async def apply(self, msg: m.ApplyMutation, data: memoryview, ctx: CallContext) -> m.Ok:
        checks.chunk(msg.handle, msg.version)
        checks.serial(msg.serial)
        checks.extent(msg.offset, 0, self.replicas.chunk_size)
        checks.extent(0, msg.pad_to, self.replicas.chunk_size)
        state = self.replicas.secondary(msg.handle, msg.version)
        await self.replicas.check_lease(state, msg.handle, msg.version, msg.token)
        payload = self._take_pushed(msg.data_id) if msg.data_id else data  # pushed, or inline
        checks.extent(msg.offset, len(payload), self.replicas.chunk_size)
        async with state.applied:
            if not state.serial_known:
                state.serial, state.serial_known = msg.serial - 1, True
            try:  # apply in the primary's serial order
                await asyncio.wait_for(state.applied.wait_for(lambda: state.serial >= msg.serial - 1),
                                       ORDER_WAIT)
            except TimeoutError:
                log.warning("chunk %d: serial %d arrived without %d", msg.handle, msg.serial, state.serial + 1)
            if msg.serial <= state.serial:
                # A later mutation was applied here already (this one came late: delayed, or the
                # wait above gave up on it); applying it now would put older bytes over newer ones on
                # this replica alone. The primary has given up on it too: its write failed.
                raise StaleVersion(f"chunk {msg.handle}: mutation {msg.serial} came to {self.replicas.address} "
                                   f"after mutation {state.serial}; it is not applied")
            async with state.lock:
                await self._apply(msg.handle, msg.offset, payload, msg.pad_to)
            state.serial = max(state.serial, msg.serial)
            state.applied.notify_all()
        return m.Ok()

    async def read(self, msg: m.ReadChunk, data: memoryview, ctx: CallContext) -> tuple[m.ReadReply, bytes]:
        checks.chunk(msg.handle, msg.version)
        checks.extent(msg.offset, 0, self.replicas.chunk_size)
        if msg.length < 0:
            raise InvalidArgument("length must not be negative")
        if msg.length > self.config.max_frame_data:
            raise InvalidArgument(f"read of {msg.length} bytes exceeds the frame limit")
        self.replicas.check_serving()
        self.replicas.state(msg.handle, msg.version, msg.at_least)
        payload = await self.replicas.reporting(msg.handle, self.store.read(msg.handle, msg.offset, msg.length))
        return m.ReadReply(len(payload)), payload
