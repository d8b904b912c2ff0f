"""Group commit: every mutation runs on one dedicated thread, many share one COMMIT.

The event loop only puts an operation on a queue and awaits a future. The thread takes
the first queued operation and drains whatever else is waiting (up to ``batch_max``);
the mutations among them run in ONE transaction, each inside its own SAVEPOINT (an
operation that raises rolls back only its savepoint, and only its caller sees the
exception), then one COMMIT: with ``synchronous=FULL`` in WAL mode that is one fsync of
the WAL for the whole batch. Only after that COMMIT is any caller's future resolved, so a
returned mutation survives a crash or power loss. Operations run in the order they were
queued, so a read sees every mutation queued before it; a read that follows a mutation in
the batch runs inside the transaction and is answered after the COMMIT too, so nobody
acts on state that might still be rolled back.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hercules_core.errors import HerculesError

log = logging.getLogger(__name__)
T = TypeVar("T")
BATCH_MAX = 256  # mutations sharing one commit
LINGER_MAX = 0.001  # longest wait for more mutations to join a commit (see ``_next_batch``)


class Op:
    """One queued call: ``fn(db)`` on the db thread; its outcome goes to ``future`` on ``loop``."""

    __slots__ = ("fn", "write", "future", "loop", "result", "error")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], write: bool,
                 future: asyncio.Future[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.fn = fn
        self.write = write
        self.future = future
        self.loop = loop
        self.result: Any = None
        self.error: BaseException | None = None


class Stop:
    """Queued by ``stop``: finish what was queued before, close the database, then answer."""

    def __init__(self, done: Op) -> None:
        self.done = done


def _resolve(ops: list[Op]) -> None:
    """On the event loop: hand each caller its outcome (a cancelled caller is skipped)."""
    for op in ops:
        if op.future.done():
            continue
        if op.error is not None:
            op.future.set_exception(op.error)
        else:
            op.future.set_result(op.result)


def _deliver(ops: list[Op]) -> None:
    """From the db thread: one wake-up per event loop for a whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Op]] = {}
    for op in ops:
        by_loop.setdefault(op.loop, []).append(op)
    for loop, group in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, group)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass




class GroupCommit:
    """The db thread of one database: a queue of operations, run in batches, committed once each.

    ``open_db`` runs on the thread and returns the writer's connection; ``release`` runs
    there after it is closed (or failed to open); ``before_commit`` runs inside each
    transaction just before its COMMIT (housekeeping that rides along, e.g. pruning).
    """

    def __init__(self, path: Path, open_db: Callable[[], sqlite3.Connection], release: Callable[[], None],
                 before_commit: Callable[[sqlite3.Connection], None], batch_max: int = BATCH_MAX) -> None:
        self._path = path  # named in errors
        self._open_db = open_db
        self._release = release
        self._before_commit = before_commit
        self._batch_max = max(1, batch_max)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._db: sqlite3.Connection | None = None
        self._recent_batches: collections.deque[int] = collections.deque(maxlen=4)  # mutations per batch
        self._commit_seconds = 0.0  # moving average of a COMMIT's time (the WAL fsync)
        self.counters: dict[str, float] = {"batches": 0, "mutations": 0, "reads": 0, "largest_batch": 0,
                                           "failed_batches": 0, "commit_seconds": 0.0}

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def start(self) -> None:
        """Start the thread and wait until it opened the database (its error is raised here)."""
        if self._thread is not None:
            raise HerculesError(f"metadata store {self._path} is already open")
        loop = asyncio.get_running_loop()
        opened = Op(lambda db: None, False, loop.create_future(), loop)
        self._thread = threading.Thread(target=self._serve, args=(opened,), name="hercules-sqlite", daemon=True)
        self._thread.start()
        await opened.future

    async def submit(self, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(Op(fn, write, future, loop))  # SimpleQueue.put never blocks
        return await future

    async def stop(self) -> None:
        """Finish everything queued so far, close the database and end the thread."""
        thread = self._thread
        assert thread is not None
        loop = asyncio.get_running_loop()
        done = Op(lambda db: None, False, loop.create_future(), loop)
        self._queue.put(Stop(done))  # runs after everything queued before it
        await done.future
        await asyncio.to_thread(thread.join)

    def _serve(self, opened: Op) -> None:
        try:
            self._db = self._open_db()
        except BaseException as exc:  # noqa: BLE001 - handed to open()'s caller
            opened.error = exc
            self._release()
            _deliver([opened])
            return
        _deliver([opened])
        stopping: Op | None = None
        while stopping is None:
            ops, stopping = self._next_batch(self._queue.get())
            try:
                self._run_batch(ops)
            except BaseException as exc:  # noqa: BLE001 - a bug here must not leave callers hanging
                log.exception("metadata store thread failed")
                for op in ops:
                    if op.error is None and op.result is None:
                        op.error = HerculesError(f"metadata store failure: {exc}")
                _deliver(ops)
        self._shutdown(stopping)

    def _next_batch(self, item: Any) -> tuple[list[Op], Op | None]:
        """``item`` and whatever else is queued, up to ``batch_max``; and the stop request, if any.

        Group commit that lingers a little: when the queue runs dry with fewer mutations than
        recent batches held, it waits up to half a commit's time for the rest. Clients that were
        just answered send their next request within that; without it, concurrent writers fall
        into two half-size batches that take turns, each paying a whole commit.
        """
        ops: list[Op] = []
        deadline = 0.0
        while True:
            if isinstance(item, Stop):
                return ops, item.done  # everything queued before it is in ``ops``
            ops.append(item)
            if len(ops) >= self._batch_max:
                break
            try:
                item = self._queue.get_nowait()
                continue
            except queue.Empty:
                pass
            writes = sum(op.write for op in ops)
            if not writes or writes >= max(self._recent_batches, default=0):
                break
            now = time.monotonic()
            deadline = deadline or now + min(LINGER_MAX, self._commit_seconds / 2)
            try:
                item = self._queue.get(timeout=max(0.0, deadline - now))
            except queue.Empty:
                break
        self._recent_batches.append(sum(op.write for op in ops))
        return ops, None

    def _run_batch(self, ops: list[Op]) -> None:
        """Run ``ops`` in the order they were queued (a read sees every mutation queued before it).

        Reads ahead of the first mutation are answered at once; from the first mutation on,
        everything runs in one transaction and is answered after its COMMIT.
        """
        first_write = next((i for i, op in enumerate(ops) if op.write), len(ops))
        if first_write:
            for op in ops[:first_write]:
                self._read(op)
            _deliver(ops[:first_write])
        if first_write < len(ops):
            self._commit(ops[first_write:])
            _deliver(ops[first_write:])

    def _read(self, op: Op) -> None:
        try:
            op.result = op.fn(self._db)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - the caller's error
            op.error = exc
        self.counters["reads"] += 1

    def _commit(self, ops: list[Op]) -> None:
        """Run ``ops`` in one transaction, each mutation in a SAVEPOINT, and commit them once.

        Reads among them see the mutations queued before them; their answers, like the
        mutations', are handed out only after the COMMIT, so nobody acts on a state that
        could still be rolled back.
        """
        db = self._db
        assert db is not None
        writes = [op for op in ops if op.write]
        paths = getattr(db, "paths", None)  # the path cache learns what this commit made durable
        try:
            db.execute("BEGIN IMMEDIATE")
            for op in ops:
                if not op.write:
                    self._read(op)
                    if not db.in_transaction:
                        raise op.error or HerculesError("the transaction was rolled back")
                    continue
                db.execute("SAVEPOINT op")
                try:
                    op.result = op.fn(db)
                except Exception as exc:  # noqa: BLE001 - the caller's error; others go on
                    if not db.in_transaction:
                        raise  # SQLite rolled the whole transaction back (I/O error, full disk)
                    op.error = exc
                    db.execute("ROLLBACK TO op")
                    if paths is not None:
                        paths.op_failed()
                db.execute("RELEASE op")
            self._before_commit(db)
            started = time.monotonic()
            db.execute("COMMIT")
            took = time.monotonic() - started
            if paths is not None:
                paths.committed()
            self._commit_seconds += (took - self._commit_seconds) / 8  # moving average
        except Exception as exc:  # noqa: BLE001 - nothing of this batch is durable: all fail
            log.error("metadata commit of %d operations failed: %s", len(writes), exc)
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if paths is not None:
                paths.rolled_back()
            for op in ops:
                op.result = None
                op.error = HerculesError(f"metadata commit failed: {exc}")
            self.counters["failed_batches"] += 1
            return
        self.counters["batches"] += 1
        self.counters["commit_seconds"] += took  # with batches: a Prometheus summary of commit latency
        self.counters["mutations"] += len(writes)
        self.counters["largest_batch"] = max(self.counters["largest_batch"], len(writes))

    def _shutdown(self, done: Op) -> None:
        try:
            if self._db is not None:
                try:
                    self._db.execute("PRAGMA optimize")
                except sqlite3.Error:
                    pass
                self._db.close()
                self._db = None
        except BaseException as exc:  # noqa: BLE001 - reported to close()'s caller
            done.error = exc
        finally:
            self._release()
            late: list[Op] = []
            while True:  # queued after close(): refused, never left hanging
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, Op):
                    item.error = HerculesError(f"metadata store {self._path} is closed")
                    late.append(item)
            _deliver(late + [done])

