"""Run a coroutine's first step at once and make it a task only if it suspends.

Python 3.12 has this as eager tasks; 3.11 does not. The dispatcher uses it for requests whose
handler answers without awaiting anything slow (a stat is one SQLite lookup): such a request
then costs no task, no scheduling and no extra turn of the event loop.

The first step runs outside any task (``asyncio.current_task()`` is ``None`` there), so a
coroutine started this way must not enter ``asyncio.timeout`` or a ``TaskGroup`` before its
first suspension; they raise ``RuntimeError`` there, never misbehave silently. Context
variables are those of a fresh copy of the caller's context, kept by the task if one is made.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Generator
from typing import Any


def start(coro: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop) -> asyncio.Task[Any] | None:
    """``None`` if ``coro`` finished in its first step (its result is dropped), else the task
    that carries on from where it suspended. An exception of the first step propagates."""
    context = contextvars.copy_context()
    try:
        awaited = context.run(coro.send, None)
    except StopIteration:
        return None
    return loop.create_task(_carry_on(coro, awaited), context=context)


async def _carry_on(coro: Coroutine[Any, Any, Any], awaited: Any) -> Any:
    return await _Resumed(coro, awaited)


class _Resumed:
    """Awaiting it hands the task what ``coro`` was waiting for, then steps ``coro`` on."""

    def __init__(self, coro: Coroutine[Any, Any, Any], awaited: Any) -> None:
        self._coro, self._awaited = coro, awaited

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, awaited = self._coro, self._awaited
        while True:
            try:
                try:
                    sent = yield awaited
                except BaseException as exc:  # noqa: BLE001 - a cancellation is the coroutine's to handle
                    awaited = coro.throw(exc)
                else:
                    awaited = coro.send(sent)
            except StopIteration as stop:
                return stop.value
