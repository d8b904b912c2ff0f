"""A ``FrameConnection`` that passes frames to the inner transport's, unless a rule says otherwise."""

from __future__ import annotations

import asyncio
import time

from hercules_core.framing import Frame
from hercules_core.plugins.types import FrameConnection

from hercules_transport_faults.rules import Rule, Rules

HOLD_POLL = 0.05  # how often a connection waiting out a ``drop`` rule looks again


class FaultyConnection:
    """The dialling side of one connection to ``target``, obeying this process's rules to it."""

    def __init__(self, inner: FrameConnection, rules: Rules, target: str) -> None:
        self._inner = inner
        self._rules = rules
        self._target = target
        self._last_send: asyncio.Future[None] | None = None  # delayed frames leave in order
        self._sending: set[asyncio.Task[None]] = set()  # referenced until sent
        self.peer = inner.peer

    async def read_frame(self) -> Frame:
        while True:
            frame = await self._inner.read_frame()
            rule = self._rules.lookup(self._target)
            if rule is None or rule.action == "delay":
                return frame
            if rule.action == "refuse":
                self._inner.close()
                raise ConnectionResetError(f"connection to {self._target} reset by a fault rule")
            # drop: the frame is lost on the way

    async def write_frame(self, frame: Frame) -> None:
        rule = self._rules.lookup(self._target)
        if rule is None:
            await self._inner.write_frame(frame)
        elif rule.action == "drop":
            return
        elif rule.action == "refuse":
            self._inner.close()
            raise ConnectionResetError(f"connection to {self._target} reset by a fault rule")
        else:
            await self._delayed_write(frame, rule)

    async def _delayed_write(self, frame: Frame, rule: Rule) -> None:
        """Send ``frame`` ``rule.seconds`` from now, after the frames delayed before it.

        The caller goes on at once, as with a real slow link: its own timeouts count the delay.
        The data is copied, since the caller may reuse its buffer once this returns.
        """
        due = time.monotonic() + rule.seconds
        owned = Frame(frame.kind, frame.request_id, bytes(frame.meta), bytes(frame.data))
        before, mine = self._last_send, asyncio.get_running_loop().create_future()
        self._last_send = mine

        async def send() -> None:
            try:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if before is not None:
                    await before
                await self._inner.write_frame(owned)
            except (ConnectionError, OSError):
                self._inner.close()  # the reader sees the connection end, as after a lost link
            finally:
                mine.set_result(None)
                if self._last_send is mine:
                    self._last_send = None

        task = asyncio.get_running_loop().create_task(send())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def close(self) -> None:
        for task in self._sending:
            task.cancel()
        self._inner.close()

    async def wait_closed(self) -> None:
        await self._inner.wait_closed()


async def hold_while_dropped(rules: Rules, target: str) -> Rule | None:
    """Wait while traffic to ``target`` is dropped (a SYN into a partition); return the rule then."""
    rule = rules.lookup(target)
    while rule is not None and rule.action == "drop":
        await asyncio.sleep(HOLD_POLL)  # the caller's connect timeout bounds this
        rule = rules.lookup(target)
    return rule
