"""Publishing packed files at the master, coalesced: one call on the wire at a time.

A busy client (a gateway taking many small uploads) publishes a file after each record lands.
The first publish goes out alone, at once; those asked while it is on the wire wait for it and
then go together as one ``PublishPackedBatch``. No publish waits longer than the call ahead of
it, and a burst of N costs two round trips' messages instead of N. Each item keeps its request
id, so a batch the client retries after a lost answer publishes nothing twice. A publish that
asks for a lease on its file (``holder``) always goes as a batch, whose answer says if it got one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from hercules_core import messages as m
from hercules_core.errors import HerculesError

MasterCall = Callable[[Any], Awaitable[Any]]  # one master call, with the client's retries
NEITHER = "the master answered a publish with neither a file nor an error"
Published = tuple[m.FileInfo, bool]  # the file, and whether it is leased to the publisher


class PublishQueue:
    def __init__(self, call: MasterCall) -> None:
        self._call = call
        self._waiting: list[tuple[m.PublishPacked, asyncio.Future[Published]]] = []
        self._busy = False
        self._task: asyncio.Task[None] | None = None  # the batch on the wire (kept: tasks are weakly held)

    async def publish(self, msg: m.PublishPacked) -> Published:
        """``msg``'s file, as the master published it, and whether it is leased to ``msg.holder``;
        its error (e.g. ``NotFound``) raised here."""
        if self._busy:
            fut: asyncio.Future[Published] = asyncio.get_running_loop().create_future()
            self._waiting.append((msg, fut))
            return await fut
        self._busy = True
        try:
            if msg.holder:
                outcome = self._outcomes(await self._call(m.PublishPackedBatch([msg])), 1)[0]
                if isinstance(outcome, Exception):
                    raise outcome
                if outcome is None:
                    raise HerculesError(NEITHER)
                return outcome
            info: m.FileInfo = await self._call(msg)
            return info, False
        finally:
            self._send_waiting()

    def _send_waiting(self) -> None:
        """Send what queued meanwhile as the next call, or go idle."""
        self._waiting = [(msg, fut) for msg, fut in self._waiting if not fut.done()]  # cancelled callers: dropped
        if not self._waiting:
            self._busy = False
            self._task = None
            return
        batch, self._waiting = self._waiting[:m.PUBLISH_BATCH_MAX], self._waiting[m.PUBLISH_BATCH_MAX:]
        self._task = asyncio.ensure_future(self._send(batch))

    async def _send(self, batch: list[tuple[m.PublishPacked, asyncio.Future[Published]]]) -> None:
        try:
            if len(batch) == 1 and not batch[0][0].holder:
                outcomes: list[Published | None | Exception] = [(await self._call(batch[0][0]), False)]
            else:
                outcomes = self._outcomes(await self._call(m.PublishPackedBatch([msg for msg, _ in batch])),
                                          len(batch))
        except asyncio.CancelledError:  # the client is closing: nobody is left to answer its callers
            for _, fut in batch:
                fut.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - the whole call failed: every caller in it gets why
            outcomes = [exc] * len(batch)
        for (_, fut), outcome in zip(batch, outcomes):
            if fut.done():
                continue
            if isinstance(outcome, Exception):
                fut.set_exception(outcome)
            elif outcome is None:
                fut.set_exception(HerculesError(NEITHER))
            else:
                fut.set_result(outcome)
        self._send_waiting()

    @staticmethod
    def _outcomes(answer: m.PackedPublished, count: int) -> list[Published | None | Exception]:
        """Per item: (file, leased), ``None`` for neither, or the item's error."""
        if len(answer.files) != count or len(answer.errors) != count:
            return [HerculesError(f"the master answered {len(answer.files)} of {count} publishes")] * count
        leased = answer.leased if len(answer.leased) == count else [False] * count
        return [HerculesError.from_code(error.code, error.message) if error is not None
                else None if info is None else (info, lease)
                for info, error, lease in zip(answer.files, answer.errors, leased)]
