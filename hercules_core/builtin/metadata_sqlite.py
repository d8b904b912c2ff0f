"""Metadata store ``sqlite``: the master's namespace in an embedded SQLite database (WAL).

The namespace is an inode table keyed by (parent, name), so renaming a directory is
one row update and lookups never need the whole tree in memory.

Durability and group commit
    Every mutation, and every read that may scan much, runs on one dedicated thread, off
    the event loop. (Short indexed lookups — stat, chunk locations, versions, listing
    pages — are answered at once on the event loop from a second, read-only connection:
    WAL readers see the last commit and never wait for the writer.) The event loop only
    puts an operation on a queue and awaits a future. The thread takes the first queued
    operation and drains whatever else is waiting (up to ``batch_max``); the mutations
    among them run in ONE transaction, each inside its own SAVEPOINT (an operation that
    raises rolls back only its savepoint, and only its caller sees the exception), then
    one COMMIT — with ``synchronous=FULL`` in WAL mode that is one fsync of the WAL for
    the whole batch. Only after that COMMIT is any caller's future resolved, so a
    returned mutation survives a crash or power loss. Operations run in the order they
    were queued, so a read sees every mutation queued before it; a read that follows a
    mutation in the batch runs inside the transaction and is answered after the COMMIT
    too, so nobody acts on state that might still be rolled back.

Idempotent retries
    ``create``, ``rename``, ``delete``, ``undelete`` and ``snapshot`` take a keyword
    ``request_id``. A non-empty id is recorded with the encoded result in the
    ``requests`` table in the same transaction as the mutation; a later call with the
    same id returns the recorded result without applying anything again. Failed
    operations record nothing. Ids are forgotten after ``REQUEST_TTL`` seconds.

Start-up integrity
    ``open`` refuses a database SQLite cannot read, that fails ``PRAGMA quick_check``,
    or that is not a Hercules database, with a ``HerculesError`` naming the file; and it
    refuses to start an empty namespace where there are signs of an earlier database
    (a ``-wal``/``-shm``/``-journal`` file, or the marker written into ``metadata.lock``
    when the database was first created). ``metadata.lock`` is also flock()ed while the
    store is open, so two masters (or a restore) never share one ROOT_DIR.
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from hercules_core import codec
from hercules_core.errors import (
    AlreadyExists,
    ConfigError,
    HerculesError,
    InvalidArgument,
    IsADirectory,
    NotADirectory,
    NotEmpty,
    NotFound,
)
from hercules_core.fsync import fsync_dir
from hercules_core.master.store import ChunkRef, FreedChunks
from hercules_core.messages import FileInfo
from hercules_core.paths import parent_and_name, split
from hercules_core.plugins import hookimpl
from hercules_core.plugins.types import MetadataContext, MetadataStoreSpec

log = logging.getLogger(__name__)
T = TypeVar("T")
ROOT_ID = 1
DB_NAME = "metadata.sqlite3"
LOCK_NAME = "metadata.lock"
SIDE_FILES = ("-wal", "-shm", "-journal")
SCHEMA_VERSION = 2  # PRAGMA user_version; 2 added the requests table
BATCH_MAX = 256  # mutations sharing one commit
LINGER_MAX = 0.001  # longest wait for more mutations to join a commit (see ``_next_batch``)
REQUEST_TTL = 3600.0  # seconds a request id is remembered
PRUNE_EVERY = 60.0
MAX_REQUEST_ID = 256
LOOKUP_PAGE = 1000  # listing pages up to this size are answered on the event loop
SQLITE_MAGIC = b"SQLite format 3\x00"
SCHEMA = """
CREATE TABLE IF NOT EXISTS inodes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    parent INTEGER NOT NULL,
    name TEXT NOT NULL,
    is_dir INTEGER NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    replication INTEGER NOT NULL DEFAULT 0,
    ctime REAL NOT NULL,
    mtime REAL NOT NULL,
    UNIQUE (parent, name)
);
CREATE TABLE IF NOT EXISTS chunks (
    handle INTEGER PRIMARY KEY AUTOINCREMENT,
    version INTEGER NOT NULL,
    refs INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE IF NOT EXISTS trash (
    inode INTEGER PRIMARY KEY,
    original_path TEXT NOT NULL,
    deleted_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS trash_by_path ON trash (original_path, deleted_at);
CREATE TABLE IF NOT EXISTS file_chunks (
    file_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    handle INTEGER NOT NULL,
    PRIMARY KEY (file_id, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS file_chunks_by_handle ON file_chunks (handle);
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    op TEXT NOT NULL,
    result BLOB,
    at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS requests_by_time ON requests (at);
"""
TRASH_DIR = "/.hercules/trash"
_COLS = "i.id, i.parent, i.name, i.is_dir, i.size, i.replication, i.ctime, i.mtime"


def _pairs_in(db: sqlite3.Connection, sql: str, keys: Sequence[int], batch: int = 500) -> dict[int, int]:
    """Run a two-column query whose ``IN ({marks})`` list is filled with ``keys``, in batches
    (SQLite caps the number of bound parameters)."""
    found: dict[int, int] = {}
    items = list(keys)
    for start in range(0, len(items), batch):
        part = items[start:start + batch]
        found.update(db.execute(sql.format(marks=",".join("?" * len(part))), part).fetchall())
    return found


def _info(row: tuple, path: str, chunk_count: int) -> FileInfo:
    return FileInfo(path=path, file_id=row[0], is_dir=bool(row[3]), size=row[4], replication=row[5],
                    chunk_count=chunk_count, ctime=row[6], mtime=row[7])


def corrupt_error(path: Path, detail: object) -> HerculesError:
    return HerculesError(f"metadata database {path} is corrupt: {detail}; refusing to start. Restore a backup "
                         f"with `hercules restore BACKUP --force` (or move the file away to investigate)")


def check_database_file(path: Path) -> None:
    """Cheap checks before SQLite opens ``path``: the header, the page size, the length.

    SQLite itself treats a zero-length file as a new empty database and reports other
    damage only when a page is read; these checks turn both into a clear error early.
    """
    size = path.stat().st_size
    if size == 0:
        return  # the caller decides: a fresh file from a crash during creation, or a wiped one
    with open(path, "rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise corrupt_error(path, "the file does not start with an SQLite header")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise corrupt_error(path, f"the header names an impossible page size {page_size}")
    if size % page_size:
        raise corrupt_error(path, f"its length {size} is not a whole number of {page_size}-byte pages (torn?)")


class _Op:
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


class _Stop:
    """Queued by ``close``: finish what was queued before, close the database, then answer."""

    def __init__(self, done: _Op) -> None:
        self.done = done


def _resolve(ops: list[_Op]) -> None:
    """On the event loop: hand each caller its outcome (a cancelled caller is skipped)."""
    for op in ops:
        if op.future.done():
            continue
        if op.error is not None:
            op.future.set_exception(op.error)
        else:
            op.future.set_result(op.result)


def _deliver(ops: list[_Op]) -> None:
    """From the db thread: one wake-up per event loop for a whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Op]] = {}
    for op in ops:
        by_loop.setdefault(op.loop, []).append(op)
    for loop, group in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, group)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _encode_result(result: Any) -> bytes | None:
    if isinstance(result, tuple):  # (FileInfo, FreedChunks) of a publish: the freed part is not replayed
        result = result[0]
    return codec.encode(result) if isinstance(result, FileInfo) else None


def _replay(blob: bytes | None) -> Any:
    # FreedChunks were handed to the first caller already: a replay frees nothing again.
    return FreedChunks([]) if blob is None else codec.decode(blob)


class SqliteMetadataStore:
    def __init__(self, path: Path, *, cache_mib: int = 32, batch_max: int = BATCH_MAX,
                 check: str = "quick") -> None:
        self._path = Path(path)
        self._cache_mib = cache_mib
        self._batch_max = max(1, batch_max)
        self._check = check  # "quick" (PRAGMA quick_check), "full" (integrity_check) or "none"
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None  # the event loop's lookups (see ``_lookup``)
        self._lock_fd: int | None = None
        self._last_prune = 0.0
        self._recent_batches: collections.deque[int] = collections.deque(maxlen=4)  # mutations per batch
        self._commit_seconds = 0.0  # moving average of a COMMIT's time (the WAL fsync)
        self._closing = False
        self.counters = {"batches": 0, "mutations": 0, "reads": 0, "largest_batch": 0, "failed_batches": 0}

    @property
    def path(self) -> Path:
        return self._path

    # -- the db thread ----------------------------------------------------------------------

    async def _submit(self, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
        if self._closing or self._thread is None or not self._thread.is_alive():
            raise HerculesError(f"metadata store {self._path} is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Op(fn, write, future, loop))  # SimpleQueue.put never blocks
        return await future

    async def _mutate(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._submit(fn, True)

    async def _query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._submit(fn, False)

    def _lookup(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A short indexed read, answered at once on the caller's thread from committed state.

        WAL lets this connection read while the db thread writes, so the hot lookups (stat,
        chunk locations, versions) skip the queue and two thread hand-offs. Every mutation a
        caller was told about is committed, hence visible; one read transaction makes the
        few statements of a lookup see one snapshot.
        """
        db = self._reader
        if db is None or self._closing:
            raise HerculesError(f"metadata store {self._path} is not open")
        db.execute("BEGIN")
        try:
            return fn(db)
        finally:
            db.execute("COMMIT")
            self.counters["reads"] += 1

    def _serve(self, opened: _Op) -> None:
        try:
            self._open()
        except BaseException as exc:  # noqa: BLE001 - handed to open()'s caller
            opened.error = exc
            self._release_lock()
            _deliver([opened])
            return
        _deliver([opened])
        stopping: _Op | None = None
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

    def _next_batch(self, item: Any) -> tuple[list[_Op], _Op | None]:
        """``item`` and whatever else is queued, up to ``batch_max``; and the stop request, if any.

        Group commit that lingers a little: when the queue runs dry with fewer mutations than
        recent batches held, it waits up to half a commit's time for the rest. Clients that were
        just answered send their next request within that; without it, concurrent writers fall
        into two half-size batches that take turns, each paying a whole commit.
        """
        ops: list[_Op] = []
        deadline = 0.0
        while True:
            if isinstance(item, _Stop):
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

    def _run_batch(self, ops: list[_Op]) -> None:
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

    def _read(self, op: _Op) -> None:
        try:
            op.result = op.fn(self._db)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - the caller's error
            op.error = exc
        self.counters["reads"] += 1

    def _commit(self, ops: list[_Op]) -> None:
        """Run ``ops`` in one transaction, each mutation in a SAVEPOINT, and commit them once.

        Reads among them see the mutations queued before them; their answers, like the
        mutations', are handed out only after the COMMIT, so nobody acts on a state that
        could still be rolled back.
        """
        db = self._db
        assert db is not None
        writes = [op for op in ops if op.write]
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
                db.execute("RELEASE op")
            now = time.time()
            if now - self._last_prune >= PRUNE_EVERY:
                db.execute("DELETE FROM requests WHERE at < ?", (now - REQUEST_TTL,))
                self._last_prune = now
            started = time.monotonic()
            db.execute("COMMIT")
            self._commit_seconds += (time.monotonic() - started - self._commit_seconds) / 8  # moving average
        except Exception as exc:  # noqa: BLE001 - nothing of this batch is durable: all fail
            log.error("metadata commit of %d operations failed: %s", len(writes), exc)
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            for op in ops:
                op.result = None
                op.error = HerculesError(f"metadata commit failed: {exc}")
            self.counters["failed_batches"] += 1
            return
        self.counters["batches"] += 1
        self.counters["mutations"] += len(writes)
        self.counters["largest_batch"] = max(self.counters["largest_batch"], len(writes))

    def _shutdown(self, done: _Op) -> None:
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
            self._release_lock()
            late: list[_Op] = []
            while True:  # queued after close(): refused, never left hanging
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Op):
                    item.error = HerculesError(f"metadata store {self._path} is closed")
                    late.append(item)
            _deliver(late + [done])

    # -- opening: locking and integrity ---------------------------------------------------------

    def _acquire_lock(self) -> str:
        """flock ``metadata.lock`` (one master per ROOT_DIR); return the marker it holds."""
        lock_path = self._path.with_name(LOCK_NAME)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"{lock_path} is locked: another master (or a restore) is using "
                              f"{self._path.parent}") from None
        self._lock_fd = fd
        return os.pread(fd, 4096, 0).decode(errors="replace")

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def _write_marker(self) -> None:
        assert self._lock_fd is not None
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        text = f"hercules metadata database {self._path.name} in use since {stamp}\n"
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, text.encode(), 0)
        os.fsync(self._lock_fd)
        fsync_dir(self._path.parent)

    def _refuse_fresh_start(self, marker: str) -> None:
        """No usable database: refuse if anything says there was one."""
        signs = [p.name for p in (Path(str(self._path) + s) for s in SIDE_FILES) if p.exists()]
        if marker.strip():
            signs.append(f"{LOCK_NAME} records a database ({marker.strip()})")
        if signs:
            raise ConfigError(
                f"metadata database {self._path} is missing or empty but {self._path.parent} shows an earlier one "
                f"({'; '.join(signs)}); refusing to start with an empty namespace. Restore a backup with "
                f"`hercules restore BACKUP --force`; to really start afresh, delete {self._path.name}, its "
                f"{'/'.join(SIDE_FILES)} files and {LOCK_NAME}")

    def _open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        marker = self._acquire_lock()
        fresh = not self._path.exists() or self._path.stat().st_size == 0
        if fresh:
            self._refuse_fresh_start(marker)
            log.info("creating a new, empty metadata database at %s", self._path)
        else:
            check_database_file(self._path)
        try:
            db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise HerculesError(f"cannot open metadata database {self._path}: {exc}") from None
        try:
            self._prepare(db, fresh)
        except sqlite3.OperationalError as exc:  # locked, unreadable, I/O error: not damage as such
            db.close()
            raise HerculesError(f"cannot open metadata database {self._path}: {exc}") from None
        except sqlite3.DatabaseError as exc:  # SQLITE_CORRUPT, SQLITE_NOTADB
            db.close()
            raise corrupt_error(self._path, exc) from None
        except BaseException:
            db.close()
            raise
        self._db = db
        if not marker.strip():
            self._write_marker()

    def _prepare(self, db: sqlite3.Connection, fresh: bool) -> None:
        db.execute("PRAGMA busy_timeout=10000")  # e.g. an online backup's reader starting up
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            log.warning("%s: WAL is not available here (journal_mode=%s); commits are slower", self._path, mode)
        db.execute("PRAGMA synchronous=FULL")  # an acknowledged commit survives power loss
        db.execute("PRAGMA foreign_keys=OFF")
        db.execute(f"PRAGMA cache_size=-{int(self._cache_mib) * 1024}")
        db.execute("PRAGMA temp_store=MEMORY")
        db.execute("PRAGMA journal_size_limit=67108864")
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not fresh and not tables:
            raise corrupt_error(self._path, "it holds no tables")
        if tables and "inodes" not in tables:
            raise HerculesError(f"{self._path} is an SQLite database but not Hercules metadata "
                                f"(tables: {', '.join(sorted(tables))}); refusing to start")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise HerculesError(f"metadata database {self._path} has schema version {version}, newer than this "
                                f"Hercules understands ({SCHEMA_VERSION}); run a newer Hercules")
        if tables and self._check != "none":
            pragma = "integrity_check" if self._check == "full" else "quick_check"
            problems = [r[0] for r in db.execute(f"PRAGMA {pragma}(20)")]
            if problems != ["ok"]:
                raise corrupt_error(self._path, "; ".join(problems))
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("DELETE FROM chunks WHERE refs <= 0")  # clones a crash left unreferenced
            now = time.time()
            db.execute("INSERT OR IGNORE INTO inodes (id, parent, name, is_dir, ctime, mtime) "
                       "VALUES (?, 0, '', 1, ?, ?)", (ROOT_ID, now, now))
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    async def open(self) -> None:
        if self._thread is not None:
            raise HerculesError(f"metadata store {self._path} is already open")
        loop = asyncio.get_running_loop()
        opened = _Op(lambda db: None, False, loop.create_future(), loop)
        self._thread = threading.Thread(target=self._serve, args=(opened,), name="hercules-sqlite", daemon=True)
        self._thread.start()
        await opened.future
        self._reader = self._open_reader()

    def _open_reader(self) -> sqlite3.Connection:
        reader = sqlite3.connect(self._path, isolation_level=None)
        reader.execute("PRAGMA query_only=ON")
        reader.execute(f"PRAGMA cache_size=-{int(self._cache_mib) * 1024}")
        return reader

    async def close(self) -> None:
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._release_lock()
            return
        loop = asyncio.get_running_loop()
        done = _Op(lambda db: None, False, loop.create_future(), loop)
        self._closing = True
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._queue.put(_Stop(done))  # runs after everything queued before it
        await done.future
        await asyncio.to_thread(thread.join)

    # -- request ids ----------------------------------------------------------------------------

    @staticmethod
    def _once(request_id: str, what: str, fn: Callable[[sqlite3.Connection], T],
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

    # -- lookups (run on the db thread) --------------------------------------------------

    @staticmethod
    def _row(db: sqlite3.Connection, inode: int) -> tuple:
        return db.execute(f"SELECT {_COLS} FROM inodes i WHERE i.id = ?", (inode,)).fetchone()

    @classmethod
    def _resolve(cls, db: sqlite3.Connection, path: str) -> tuple | None:
        row = cls._row(db, ROOT_ID)
        for name in split(path):
            if not row[3]:
                raise NotADirectory(f"{name!r} in {path!r}: a parent is a file")
            row = db.execute(f"SELECT {_COLS} FROM inodes i WHERE i.parent = ? AND i.name = ?",
                             (row[0], name)).fetchone()
            if row is None:
                return None
        return row

    @classmethod
    def _vacancy(cls, db: sqlite3.Connection, path: str, no_parent: str, taken: str) -> tuple[tuple, str]:
        """The parent directory's row and the name for a new entry at ``path``: ``NotFound``
        (``no_parent``) without that directory, ``AlreadyExists`` (``taken``) if the name is used."""
        parent_path, name = parent_and_name(path)
        parent = cls._resolve(db, parent_path)
        if parent is None or not parent[3]:
            raise NotFound(f"{parent_path}: {no_parent}")
        if db.execute("SELECT 1 FROM inodes WHERE parent = ? AND name = ?", (parent[0], name)).fetchone():
            raise AlreadyExists(f"{path}: {taken}")
        return parent, name

    @classmethod
    def _must(cls, db: sqlite3.Connection, path: str) -> tuple:
        row = cls._resolve(db, path)
        if row is None:
            raise NotFound(f"{path}: no such file or directory")
        return row

    @staticmethod
    def _count(db: sqlite3.Connection, file_id: int) -> int:
        return db.execute("SELECT COUNT(*) FROM file_chunks WHERE file_id = ?", (file_id,)).fetchone()[0]

    @staticmethod
    def _path_of(db: sqlite3.Connection, inode: int) -> str:
        names: list[str] = []
        while inode != ROOT_ID:
            parent, name = db.execute("SELECT parent, name FROM inodes WHERE id = ?", (inode,)).fetchone()
            names.append(name)
            inode = parent
        return "/" + "/".join(reversed(names))

    # -- namespace ----------------------------------------------------------------------

    def _make_dirs(self, db: sqlite3.Connection, path: str) -> tuple:
        """mkdir -p: the row of the directory at ``path``, made with any missing parents."""
        row = self._row(db, ROOT_ID)
        now = time.time()
        for name in split(path):
            if not row[3]:
                raise AlreadyExists(f"{path}: a file is in the way")
            child = db.execute(f"SELECT {_COLS} FROM inodes i WHERE i.parent = ? AND i.name = ?",
                               (row[0], name)).fetchone()
            if child is None:
                cur = db.execute("INSERT INTO inodes (parent, name, is_dir, ctime, mtime) "
                                 "VALUES (?, ?, 1, ?, ?)", (row[0], name, now, now))
                child = (cur.lastrowid, row[0], name, 1, 0, 0, now, now)
            row = child
        if not row[3]:
            raise AlreadyExists(f"{path}: a file is in the way")
        return row

    async def mkdir(self, path: str) -> FileInfo:
        return await self._mutate(lambda db: _info(self._make_dirs(db, path), path, 0))

    async def create(self, path: str, replication: int, exclusive: bool = True, *,
                     request_id: str = "", first_chunk: bool = False) -> FileInfo:
        def op(db: sqlite3.Connection) -> FileInfo:
            parent_path, name = parent_and_name(path)
            if not name:
                raise AlreadyExists("/ is a directory")
            parent = self._must(db, parent_path)
            if not parent[3]:
                raise NotADirectory(f"{parent_path}: not a directory")
            existing = db.execute(f"SELECT {_COLS} FROM inodes i WHERE i.parent = ? AND i.name = ?",
                                  (parent[0], name)).fetchone()
            if existing is not None:
                if existing[3]:
                    raise IsADirectory(f"{path}: is a directory")
                if exclusive:
                    raise AlreadyExists(f"{path}: already exists")
                return _info(existing, path, self._count(db, existing[0]))
            now = time.time()
            cur = db.execute("INSERT INTO inodes (parent, name, is_dir, replication, ctime, mtime) "
                             "VALUES (?, ?, 0, ?, ?, ?)", (parent[0], name, replication, now, now))
            db.execute("UPDATE inodes SET mtime = ? WHERE id = ?", (now, parent[0]))
            if first_chunk:
                self._insert_chunk(db, cur.lastrowid, 0)
            return _info((cur.lastrowid, parent[0], name, 0, 0, replication, now, now), path, int(first_chunk))

        return await self._mutate(self._once(request_id, f"create {path}", op))

    async def stat(self, path: str) -> FileInfo:
        def op(db: sqlite3.Connection) -> FileInfo:
            row = self._must(db, path)
            return _info(row, path, 0 if row[3] else self._count(db, row[0]))

        return self._lookup(op)

    async def stat_id(self, file_id: int) -> FileInfo:
        def op(db: sqlite3.Connection) -> FileInfo:
            row = self._row(db, file_id)
            if row is None:
                raise NotFound(f"file id {file_id} no longer exists")
            return _info(row, self._path_of(db, file_id), 0 if row[3] else self._count(db, row[0]))

        return self._lookup(op)

    async def list(self, path: str, recursive: bool, limit: int, cursor: str) -> tuple[list[FileInfo], str]:
        def op(db: sqlite3.Connection) -> tuple[list[FileInfo], str]:
            row = self._must(db, path)
            base = "" if path == "/" else path
            if not row[3]:
                return [_info(row, path, self._count(db, row[0]))], ""
            count = "(SELECT COUNT(*) FROM file_chunks c WHERE c.file_id = i.id)"
            cap = limit if limit > 0 else -1
            if recursive:
                rows = db.execute(
                    f"WITH RECURSIVE tree(id, path) AS ("
                    f" SELECT id, ? || '/' || name FROM inodes WHERE parent = ?"
                    f" UNION ALL SELECT i.id, tree.path || '/' || i.name FROM inodes i JOIN tree ON i.parent = tree.id)"
                    f" SELECT {_COLS}, {count}, tree.path FROM tree JOIN inodes i ON i.id = tree.id"
                    f" WHERE tree.path > ? ORDER BY tree.path LIMIT ?",
                    (base, row[0], cursor, cap)).fetchall()
                entries = [_info(r, r[9], r[8]) for r in rows]
            else:
                rows = db.execute(f"SELECT {_COLS}, {count} FROM inodes i WHERE i.parent = ? AND i.name > ? "
                                  f"ORDER BY i.name LIMIT ?", (row[0], cursor, cap)).fetchall()
                entries = [_info(r, f"{base}/{r[2]}", r[8]) for r in rows]
            if path == "/":
                entries = [e for e in entries if not e.path.startswith("/.hercules")]
            more = limit > 0 and len(rows) == limit
            last = (rows[-1][9] if recursive else rows[-1][2]) if more else ""
            return entries, last

        return self._lookup(op) if 0 < limit <= LOOKUP_PAGE else await self._query(op)

    def _unlink(self, db: sqlite3.Connection, inode: int) -> list[int]:
        """Drop an inode subtree; return chunk handles no file references any more."""
        ids = [r[0] for r in db.execute(
            "WITH RECURSIVE tree(id) AS (SELECT ? UNION ALL SELECT i.id FROM inodes i JOIN tree ON i.parent = tree.id)"
            " SELECT id FROM tree", (inode,))]
        freed: list[int] = []
        for start in range(0, len(ids), 500):
            batch = ids[start:start + 500]
            marks = ",".join("?" * len(batch))
            handles = [r[0] for r in db.execute(f"SELECT handle FROM file_chunks WHERE file_id IN ({marks})", batch)]
            db.execute(f"DELETE FROM file_chunks WHERE file_id IN ({marks})", batch)
            db.execute(f"DELETE FROM inodes WHERE id IN ({marks})", batch)
            for handle in handles:
                db.execute("UPDATE chunks SET refs = refs - 1 WHERE handle = ?", (handle,))
            gone = [r[0] for r in db.execute(
                f"SELECT handle FROM chunks WHERE refs <= 0 AND handle IN ({','.join('?' * len(handles))})", handles)]
            db.executemany("DELETE FROM chunks WHERE handle = ?", [(h,) for h in gone])
            freed.extend(gone)
        return freed

    def _mkdirs(self, db: sqlite3.Connection, path: str) -> int:
        inode, now = ROOT_ID, time.time()
        for name in split(path):
            row = db.execute("SELECT id FROM inodes WHERE parent = ? AND name = ?", (inode, name)).fetchone()
            inode = row[0] if row else db.execute(
                "INSERT INTO inodes (parent, name, is_dir, ctime, mtime) VALUES (?, ?, 1, ?, ?)",
                (inode, name, now, now)).lastrowid
        return inode

    async def delete(self, path: str, recursive: bool, *, request_id: str = "") -> FreedChunks:
        """Move ``path`` into the hidden trash; its chunks stay until the grace period ends."""

        def op(db: sqlite3.Connection) -> FreedChunks:
            if path == "/":
                raise InvalidArgument("the root directory cannot be deleted")
            row = self._must(db, path)
            if row[3] and not recursive and db.execute(
                    "SELECT 1 FROM inodes WHERE parent = ? LIMIT 1", (row[0],)).fetchone():
                raise NotEmpty(f"{path}: directory is not empty (use recursive=true)")
            now = time.time()
            if path.startswith(TRASH_DIR + "/") or path.startswith("/.hercules/uploads/"):
                return FreedChunks(self._unlink(db, row[0]))  # internal: no second trip through trash
            trash = self._mkdirs(db, TRASH_DIR)
            db.execute("UPDATE inodes SET parent = ?, name = ?, mtime = ? WHERE id = ?",
                       (trash, str(row[0]), now, row[0]))
            db.execute("INSERT INTO trash (inode, original_path, deleted_at) VALUES (?, ?, ?)", (row[0], path, now))
            db.execute("UPDATE inodes SET mtime = ? WHERE id = ?", (now, row[1]))
            return FreedChunks([])

        return await self._mutate(self._once(request_id, f"delete {path}", op))

    async def undelete(self, path: str, *, request_id: str = "") -> FileInfo:
        """Put back the most recently deleted entry that lived at ``path``."""

        def op(db: sqlite3.Connection) -> FileInfo:
            entry = db.execute("SELECT inode FROM trash WHERE original_path = ? ORDER BY deleted_at DESC LIMIT 1",
                               (path,)).fetchone()
            if entry is None:
                raise NotFound(f"{path}: nothing by that name is in the trash")
            parent, name = self._vacancy(db, path, "the original directory no longer exists",
                                         "something else exists there now")
            db.execute("UPDATE inodes SET parent = ?, name = ? WHERE id = ?", (parent[0], name, entry[0]))
            db.execute("DELETE FROM trash WHERE inode = ?", (entry[0],))
            row = self._row(db, entry[0])
            return _info(row, path, 0 if row[3] else self._count(db, row[0]))

        return await self._mutate(self._once(request_id, f"undelete {path}", op))

    async def trash(self) -> list[tuple[str, float, FileInfo]]:
        def op(db: sqlite3.Connection) -> list[tuple[str, float, FileInfo]]:
            rows = db.execute(f"SELECT t.original_path, t.deleted_at, {_COLS} FROM trash t JOIN inodes i "
                              f"ON i.id = t.inode ORDER BY t.deleted_at").fetchall()
            return [(r[0], r[1], _info(r[2:], f"{TRASH_DIR}/{r[2]}", self._count(db, r[2]))) for r in rows]

        return await self._query(op)

    async def purge_trash(self, deleted_before: float) -> FreedChunks:
        """Drop trash entries older than the grace period; return chunks nothing references now."""

        def op(db: sqlite3.Connection) -> FreedChunks:
            expired = [r[0] for r in db.execute("SELECT inode FROM trash WHERE deleted_at < ?", (deleted_before,))]
            freed: list[int] = []
            for inode in expired:
                freed.extend(self._unlink(db, inode))
                db.execute("DELETE FROM trash WHERE inode = ?", (inode,))
            return FreedChunks(freed)

        return await self._mutate(op)

    # -- snapshots and copy-on-write ------------------------------------------------------

    async def handles_under(self, path: str) -> list[int]:
        def op(db: sqlite3.Connection) -> list[int]:
            row = self._must(db, path)
            return [r[0] for r in db.execute(
                "WITH RECURSIVE tree(id) AS (SELECT ? UNION ALL SELECT i.id FROM inodes i JOIN tree "
                "ON i.parent = tree.id) SELECT DISTINCT f.handle FROM tree JOIN file_chunks f ON f.file_id = tree.id",
                (row[0],))]

        return await self._query(op)

    async def snapshot(self, source: str, target: str, *, request_id: str = "") -> FileInfo:
        """Copy the tree at ``source`` to ``target``; both share every chunk (refs + 1)."""

        def op(db: sqlite3.Connection) -> FileInfo:
            src = self._must(db, source)
            if src[3] and (target + "/").startswith(source + "/"):
                raise InvalidArgument(f"cannot snapshot {source} into itself ({target})")
            parent, name = self._vacancy(db, target, "target directory does not exist", "already exists")
            now = time.time()
            pending = [(src[0], parent[0], name)]
            top = 0
            while pending:
                old, new_parent, new_name = pending.pop()
                r = self._row(db, old)
                new = db.execute("INSERT INTO inodes (parent, name, is_dir, size, replication, ctime, mtime) "
                                 "VALUES (?, ?, ?, ?, ?, ?, ?)", (new_parent, new_name, r[3], r[4], r[5], now, r[7])
                                 ).lastrowid
                top = top or new
                if r[3]:
                    pending.extend((c[0], new, c[1]) for c in db.execute(
                        "SELECT id, name FROM inodes WHERE parent = ?", (old,)))
                else:
                    db.execute("INSERT INTO file_chunks (file_id, idx, handle) SELECT ?, idx, handle "
                               "FROM file_chunks WHERE file_id = ?", (new, old))
                    db.execute("UPDATE chunks SET refs = refs + 1 WHERE handle IN "
                               "(SELECT handle FROM file_chunks WHERE file_id = ?)", (old,))
            row = self._row(db, top)
            return _info(row, target, 0 if row[3] else self._count(db, row[0]))

        return await self._mutate(self._once(request_id, f"snapshot {source} {target}", op))

    async def new_handle(self, version: int) -> int:
        """A fresh handle no file references yet (refs 0) for a copy-on-write clone."""

        def op(db: sqlite3.Connection) -> int:
            return db.execute("INSERT INTO chunks (version, refs) VALUES (?, 0)", (version,)).lastrowid

        return await self._mutate(op)

    async def repoint(self, file_id: int, index: int, old: int, new: int) -> FreedChunks:
        """Make chunk ``index`` of a file use ``new`` instead of the shared ``old``."""

        def op(db: sqlite3.Connection) -> FreedChunks:
            updated = db.execute("UPDATE file_chunks SET handle = ? WHERE file_id = ? AND idx = ? AND handle = ?",
                                 (new, file_id, index, old)).rowcount
            if not updated:
                return FreedChunks([new]) if db.execute("DELETE FROM chunks WHERE handle = ? AND refs = 0",
                                                        (new,)).rowcount else FreedChunks([])
            db.execute("UPDATE chunks SET refs = refs + 1 WHERE handle = ?", (new,))
            db.execute("UPDATE chunks SET refs = refs - 1 WHERE handle = ?", (old,))
            gone = db.execute("DELETE FROM chunks WHERE handle = ? AND refs <= 0", (old,)).rowcount
            return FreedChunks([old] if gone else [])

        return await self._mutate(op)

    async def replication_of(self, handles: Sequence[int]) -> dict[int, int]:
        """The replication each chunk needs: the highest of the files that reference it."""

        def op(db: sqlite3.Connection) -> dict[int, int]:
            return _pairs_in(db, "SELECT f.handle, MAX(i.replication) FROM file_chunks f JOIN inodes i "
                                 "ON i.id = f.file_id WHERE f.handle IN ({marks}) GROUP BY f.handle", handles)

        return self._lookup(op)

    def _move(self, db: sqlite3.Connection, source: str, target: str, overwrite: bool) -> FreedChunks:
        if source == "/" or target == "/":
            raise InvalidArgument("the root directory cannot be renamed")
        src = self._must(db, source)
        if target == source:
            return FreedChunks([])
        if src[3] and target.startswith(source + "/"):
            raise InvalidArgument(f"cannot move {source} into itself ({target})")
        parent_path, name = parent_and_name(target)
        parent = self._resolve(db, parent_path)
        if parent is None:
            raise NotFound(f"{parent_path}: target directory does not exist")
        if not parent[3]:
            raise NotADirectory(f"{parent_path}: not a directory")
        freed: list[int] = []
        existing = db.execute("SELECT id, is_dir FROM inodes WHERE parent = ? AND name = ?",
                              (parent[0], name)).fetchone()
        if existing is not None:
            if not overwrite or existing[1] or src[3]:
                raise AlreadyExists(f"{target}: already exists")
            freed = self._unlink(db, existing[0])
        now = time.time()
        db.execute("UPDATE inodes SET parent = ?, name = ?, mtime = ? WHERE id = ?",
                   (parent[0], name, now, src[0]))
        db.execute("UPDATE inodes SET mtime = ? WHERE id IN (?, ?)", (now, src[1], parent[0]))
        return FreedChunks(freed)

    async def rename(self, source: str, target: str, overwrite: bool, *,
                     request_id: str = "") -> FreedChunks:
        def op(db: sqlite3.Connection) -> FreedChunks:
            return self._move(db, source, target, overwrite)

        return await self._mutate(self._once(request_id, f"rename {source} {target}", op))

    async def publish(self, source: str, target: str, size: int, overwrite: bool, *,
                      request_id: str = "") -> tuple[FileInfo, FreedChunks]:
        def op(db: sqlite3.Connection) -> tuple[FileInfo, FreedChunks]:
            src = self._must(db, source)
            if src[3]:
                raise IsADirectory(f"{source}: is a directory")
            self._make_dirs(db, parent_and_name(target)[0])
            db.execute("UPDATE inodes SET size = MAX(size, ?) WHERE id = ?", (size, src[0]))
            freed = self._move(db, source, target, overwrite)
            return _info(self._row(db, src[0]), target, self._count(db, src[0])), freed

        def replay(blob: bytes | None) -> tuple[FileInfo, FreedChunks]:
            return codec.decode(blob), FreedChunks([])  # type: ignore[arg-type]

        return await self._mutate(self._once(request_id, f"publish {source} {target}", op, replay))

    # -- chunks --------------------------------------------------------------------------

    async def chunk(self, file_id: int, index: int) -> ChunkRef | None:
        def op(db: sqlite3.Connection) -> ChunkRef | None:
            row = db.execute("SELECT f.handle, c.version, c.refs FROM file_chunks f JOIN chunks c "
                             "ON c.handle = f.handle WHERE f.file_id = ? AND f.idx = ?", (file_id, index)).fetchone()
            return ChunkRef(row[0], index, row[1], row[2]) if row else None

        return self._lookup(op)

    async def last_chunk(self, file_id: int) -> ChunkRef | None:
        def op(db: sqlite3.Connection) -> ChunkRef | None:
            row = db.execute("SELECT f.handle, f.idx, c.version, c.refs FROM file_chunks f JOIN chunks c "
                             "ON c.handle = f.handle WHERE f.file_id = ? ORDER BY f.idx DESC LIMIT 1",
                             (file_id,)).fetchone()
            return ChunkRef(row[0], row[1], row[2], row[3]) if row else None

        return self._lookup(op)

    @staticmethod
    def _insert_chunk(db: sqlite3.Connection, file_id: int, index: int) -> int:
        """A new handle at version 0 ("being created") as chunk ``index`` of the file."""
        handle = db.execute("INSERT INTO chunks (version, refs) VALUES (0, 1)").lastrowid
        db.execute("INSERT INTO file_chunks (file_id, idx, handle) VALUES (?, ?, ?)", (file_id, index, handle))
        return handle

    async def add_chunk(self, file_id: int, index: int) -> ChunkRef:
        def op(db: sqlite3.Connection) -> ChunkRef:
            row = db.execute("SELECT is_dir FROM inodes WHERE id = ?", (file_id,)).fetchone()
            if row is None:
                raise NotFound(f"file id {file_id} no longer exists")
            if row[0]:
                raise IsADirectory("chunks belong to files, not directories")
            existing = db.execute("SELECT f.handle, c.version FROM file_chunks f JOIN chunks c ON "
                                  "c.handle = f.handle WHERE f.file_id = ? AND f.idx = ?", (file_id, index)).fetchone()
            if existing:
                return ChunkRef(existing[0], index, existing[1])
            return ChunkRef(self._insert_chunk(db, file_id, index), index, 0)

        return await self._mutate(op)

    async def set_version(self, handle: int, version: int) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute("UPDATE chunks SET version = ? WHERE handle = ?", (version, handle))

        await self._mutate(op)

    async def versions(self, handles: Sequence[int]) -> dict[int, int]:
        def op(db: sqlite3.Connection) -> dict[int, int]:
            return _pairs_in(db, "SELECT handle, version FROM chunks WHERE handle IN ({marks})", handles)

        return self._lookup(op)

    async def extend_size(self, file_id: int, size: int) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute("UPDATE inodes SET size = MAX(size, ?), mtime = ? WHERE id = ?", (size, time.time(), file_id))

        await self._mutate(op)

    async def chunk_total(self) -> int:
        return await self._query(lambda db: db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    async def all_handles(self) -> list[int]:
        """Every chunk handle the namespace knows, ascending (e.g. to find chunks no server holds)."""
        handles: list[int] = []
        async for batch in self.handle_batches():
            handles.extend(batch)
        return handles

    async def handle_batches(self, size: int = 50_000) -> AsyncIterator[list[int]]:
        """``all_handles`` in ascending batches, each one short read, so writers are not held up."""
        after = 0
        while True:
            batch: list[int] = await self._query(lambda db, after=after: [r[0] for r in db.execute(
                "SELECT handle FROM chunks WHERE handle > ? ORDER BY handle LIMIT ?", (after, size))])
            if batch:
                yield batch
            if len(batch) < size:
                return
            after = batch[-1]

    async def stats(self) -> dict[str, int]:
        """Cheap counters: entries, chunks, trash, remembered request ids, bytes on disk, commit batching."""

        def op(db: sqlite3.Connection) -> dict[str, int]:
            dirs, files = db.execute("SELECT COALESCE(SUM(is_dir), 0), COALESCE(SUM(1 - is_dir), 0) "
                                     "FROM inodes").fetchone()
            found = {
                "directories": dirs, "files": files,
                "chunks": db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0],
                "trash": db.execute("SELECT COUNT(*) FROM trash").fetchone()[0],
                "request_ids": db.execute("SELECT COUNT(*) FROM requests").fetchone()[0],
                "db_bytes": db.execute("PRAGMA page_count").fetchone()[0] * db.execute("PRAGMA page_size").fetchone()[0],
            }
            wal = Path(str(self._path) + "-wal")
            found["wal_bytes"] = wal.stat().st_size if wal.exists() else 0
            found.update(self.counters)
            return found

        return await self._query(op)




@asynccontextmanager
async def open_sqlite(ctx: MetadataContext) -> AsyncIterator[SqliteMetadataStore]:
    """Options (``ctx.options``): ``cache_mib`` (page cache, default 32), ``batch_max`` (mutations
    per commit, default 256), ``check`` (start-up check: ``quick``, ``full`` or ``none``)."""
    opts = ctx.options
    store = SqliteMetadataStore(Path(ctx.root_dir) / DB_NAME, cache_mib=int(opts.get("cache_mib", 32)),
                                batch_max=int(opts.get("batch_max", BATCH_MAX)), check=str(opts.get("check", "quick")))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@hookimpl
def hercules_metadata_stores() -> Iterator[MetadataStoreSpec]:
    yield MetadataStoreSpec(name="sqlite", open=open_sqlite,
                            description="namespace and chunk versions in embedded SQLite (WAL, group commit)")
