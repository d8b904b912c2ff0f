"""Metadata store ``sqlite``: the master's namespace in an embedded SQLite database (WAL).

The plugin, one concern per module:

- ``store``: ``SqliteMetadataStore``, the ``MetadataStore`` interface; decides where each
  operation runs (the db thread, or a lookup on the event loop);
- ``commits``: group commit on one db thread, many mutations per fsync;
- ``files``: the database, its side files and ``metadata.lock`` (one master per ROOT_DIR);
- ``schema``: tables, schema version and the checks made when the database is opened;
- ``inodes``, ``namespace``, ``trash``, ``chunks``: the queries;
- ``pathcache``: directory path → inode id, shared by both connections, forgotten when a
  directory moves or goes;
- ``requests``: request ids that make retried mutations idempotent;
- ``backup``: online backup and offline restore, this plugin's ``backup``/``restore``.

Start-up integrity: ``open`` refuses a database SQLite cannot read, that fails ``PRAGMA
quick_check``, or that is not a Hercules database, with a ``HerculesError`` naming the file;
and it refuses to start an empty namespace where there are signs of an earlier database
(a ``-wal``/``-shm``/``-journal`` file, or the marker written into ``metadata.lock`` when the
database was first created).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

from hercules_core.builtin.metadata_sqlite import backup
from hercules_core.builtin.metadata_sqlite.commits import BATCH_MAX
from hercules_core.builtin.metadata_sqlite.files import DB_NAME
from hercules_core.builtin.metadata_sqlite.store import SqliteMetadataStore
from hercules_core.plugins import hookimpl
from hercules_core.plugins.types import MetadataContext, MetadataStoreSpec, SettingSpec

__all__ = ["SETTINGS", "SqliteMetadataStore", "open_sqlite", "hercules_metadata_stores"]

SETTINGS = (
    SettingSpec("cache_mib", int, 32, help="SQLite page cache per connection, MiB"),
    SettingSpec("batch_max", int, BATCH_MAX, help="most mutations sharing one commit (one fsync)"),
    SettingSpec("check", str, "quick", choices=("quick", "full", "none"),
                help="database check at start-up: PRAGMA quick_check, integrity_check, or none"),
)


@asynccontextmanager
async def open_sqlite(ctx: MetadataContext) -> AsyncIterator[SqliteMetadataStore]:
    """Options (``ctx.options``, declared in ``SETTINGS``): ``cache_mib`` (page cache, default 32),
    ``batch_max`` (mutations per commit, default 256), ``check`` (start-up check: ``quick``,
    ``full`` or ``none``)."""
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
    yield MetadataStoreSpec(name="sqlite", open=open_sqlite, backup=backup.backup, restore=backup.restore,
                            settings=SETTINGS, description="namespace and chunk versions in embedded SQLite (WAL, group commit)")
