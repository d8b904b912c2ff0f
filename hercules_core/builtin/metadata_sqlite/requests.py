"""Idempotent retries: request ids remembered with their results in the ``requests`` table.

``create``, ``rename``, ``publish``, ``delete``, ``undelete`` and ``snapshot`` take a keyword
``request_id``. A non-empty id is recorded with the encoded result in the same transaction
as the mutation; a later call with the same id returns the recorded result without
applying anything again. Failed operations record nothing. Ids are forgotten after
``REQUEST_TTL`` seconds.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from hercules_core import codec
from hercules_core.errors import InvalidArgument
from hercules_core.master.store import FreedChunks
from hercules_core.messages import FileInfo

T = TypeVar("T")
REQUEST_TTL = 3600.0  # seconds a request id is remembered
PRUNE_EVERY = 60.0
MAX_REQUEST_ID = 256


def _encode_result(result: Any) -> bytes | None:
    if isinstance(result, tuple):  # (FileInfo, FreedChunks) of a publish: the freed part is not replayed
        result = result[0]
    return codec.encode(result) if isinstance(result, FileInfo) else None


def _replay(blob: bytes | None) -> Any:
    # FreedChunks were handed to the first caller already: a replay frees nothing again.
    return FreedChunks([]) if blob is None else codec.decode(blob)


def replay_publish(blob: bytes | None) -> tuple[FileInfo, FreedChunks]:
    return codec.decode(blob), FreedChunks([])  # type: ignore[arg-type]


def once(request_id: str, what: str, fn: Callable[[sqlite3.Connection], T],
         replay: Callable[[bytes | None], Any] | None = None) -> Callable[[sqlite3.Connection], T]:
    """``fn`` made idempotent under ``request_id``: recorded in its own transaction, replayed after."""
    if not request_id:
        return fn
    if not isinstance(request_id, str) or len(request_id) > MAX_REQUEST_ID:
        raise InvalidArgument(f"request id must be a string of at most {MAX_REQUEST_ID} characters")

    def op(db: sqlite3.Connection) -> T:
        row = db.execute("SELECT op, result FROM requests WHERE id = ?", (request_id,)).fetchone()
        if row is not None:
            if row[0] != what:
                raise InvalidArgument(f"request id {request_id!r} was already used for another request "
                                      f"({row[0]}), not {what}")
            return (replay or _replay)(row[1])
        result = fn(db)
        db.execute("INSERT INTO requests (id, op, result, at) VALUES (?, ?, ?, ?)",
                   (request_id, what, _encode_result(result), time.time()))
        return result

    return op


class Pruner:
    """Forgets request ids older than ``REQUEST_TTL``, at most every ``PRUNE_EVERY`` seconds;
    called inside a commit's transaction, so pruning costs no commit of its own."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, db: sqlite3.Connection) -> None:
        now = time.time()
        if now - self.last >= PRUNE_EVERY:
            db.execute("DELETE FROM requests WHERE at < ?", (now - REQUEST_TTL,))
            self.last = now
