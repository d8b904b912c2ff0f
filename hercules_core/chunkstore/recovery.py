"""The start-up scan of a block-file store: what a crash can leave behind, and what is removed.

Nothing is acknowledged before it is durable (see ``blockfile``), so every leftover below is
the remains of an operation the caller never saw succeed, and removing it loses nothing:

- tmp files (an atomic sidecar replacement cut short);
- data files without a sidecar (a creation or deletion cut short);
- a sidecar over no bytes without an intact record, or naming no bytes without a data file
  (a creation cut short before its directory fsync);
- data files of a generation the sidecar does not name (a compaction cut short);
- bytes past what the sidecar accounts for (an append whose sidecar record never landed).

Before that, the journals of each sidecar's log (``sidecar``) are written into its data file
again and synced: a power loss may have taken the page cache's copy of those bytes.

The same module holds ``list_chunks``, the full listing a running store answers by reading every
sidecar from disk again.

Anything else that does not read back (a damaged sidecar over bytes, a sidecar whose data
file is gone) is corruption: it is kept as evidence and logged, and reads of it fail loudly.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hercules_core.chunkstore.fileio import TMP_SUFFIX, fsync_dir, unlink_quiet, write_atomic
from hercules_core.chunkstore.layout import FORMAT_VERSION, UPGRADABLE_FORMATS
from hercules_core.errors import ChecksumMismatch, ConfigError, NotFound
from hercules_core.plugins.types import ChunkInfo

if TYPE_CHECKING:
    from hercules_core.chunkstore.blockfile import BlockFileStore

log = logging.getLogger(__name__)


def startup_scan(store: BlockFileStore[Any]) -> int:
    """Check the format file, clean every fan-out directory; return the bytes of live data files."""
    check_format(store)
    chunks = store.layout.chunks
    if not chunks.is_dir():
        chunks.mkdir()
        fsync_dir(store.root)
    return sum(recover_dir(store, directory) for directory in store.layout.fan_dirs())


def check_format(store: BlockFileStore[Any]) -> None:
    """Refuse a directory written by another store or block size: its bytes would misread."""
    store.root.mkdir(parents=True, exist_ok=True)
    path = store.layout.format_file
    want = {"store": store.NAME, "format": FORMAT_VERSION, "block_size": store.block_size}
    try:
        found = json.loads(path.read_bytes())
    except FileNotFoundError:
        write_atomic(path, json.dumps(want).encode(), store.session)
        return
    except ValueError:
        raise ConfigError(f"{path} is not a Hercules chunk store format file") from None
    if isinstance(found, dict) and found.get("format") in UPGRADABLE_FORMATS and {**found, "format": FORMAT_VERSION} == want:
        log.info("chunk store %s: format %s upgraded to %s", store.root, found["format"], FORMAT_VERSION)
        write_atomic(path, json.dumps(want).encode(), store.session)
        return
    if found != want:
        raise ConfigError(f"{store.root} holds a chunk store described as {found}; "
                          f"the {store.NAME!r} store needs {want}")


def recover_dir(store: BlockFileStore[Any], directory: Path) -> int:
    """Clean one fan-out directory (see the module docstring); return the bytes of live data."""
    layout = store.layout
    metas: set[int] = set()
    datas: dict[int, list[tuple[int, Path]]] = {}
    for name in os.listdir(directory):
        if name.endswith(TMP_SUFFIX):
            unlink_quiet(directory / name)
        elif (handle := layout.parse_meta(name)) is not None:
            metas.add(handle)
        elif (parsed := layout.parse_data(name)) is not None:
            datas.setdefault(parsed[0], []).append((parsed[1], directory / name))
    used = 0
    for handle in metas.difference(datas):
        _recover_dataless(store, handle)
    for handle, files in datas.items():
        if handle not in metas:
            for _, path in files:
                unlink_quiet(path)
            continue
        try:
            meta, journals = store._load_log(handle)
        except ChecksumMismatch as exc:
            sizes = [path.stat().st_size for _, path in files]
            if not any(sizes):  # no intact record over no bytes: a creation cut short
                unlink_quiet(layout.meta_path(handle))
                for _, path in files:
                    unlink_quiet(path)
                continue
            log.warning("chunk store %s: %s", store.root, exc)  # keep the evidence; reads fail loudly
            used += sum(sizes)
            continue
        if journals and any(gen == meta.gen for gen, _ in files):
            store._replay(handle, meta, journals)
        expected = store._expected_size(meta)
        for gen, path in files:
            if gen != meta.gen:
                unlink_quiet(path)
                continue
            size = path.stat().st_size
            if size > expected:
                os.truncate(path, expected)
                size = expected
            used += size
        store._sidecars.put(handle, meta)  # decoded anyway: the first reads need not again
    return used


def list_chunks(store: BlockFileStore[Any]) -> list[ChunkInfo]:
    """Every chunk whose sidecar reads back from disk (read again, not taken from memory): the
    full report a chunkserver sends, so a sidecar damaged or removed since it was cached is found
    here and dropped from memory. Tmp files of earlier sessions are removed on the way."""
    found: list[ChunkInfo] = []
    for directory in store.layout.fan_dirs():
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            continue
        for name in names:
            if name.endswith(TMP_SUFFIX) and not name.endswith(store._own_tmp):
                unlink_quiet(directory / name)  # a previous session's, cut short
                continue
            handle = store.layout.parse_meta(name)
            if handle is None:
                continue
            try:
                meta = store._load(handle)
            except NotFound:  # deleted while we scanned
                continue
            except ChecksumMismatch as exc:
                if not store._locks.held(handle):  # else: a sidecar still being created
                    log.warning("chunk store %s: %s", store.root, exc)
                continue
            found.append(ChunkInfo(handle, meta.version, meta.length))
    store._sidecars.keep_only({info.handle for info in found})  # a damaged or lost one: from disk next
    found.sort(key=lambda info: info.handle)
    return found


def _recover_dataless(store: BlockFileStore[Any], handle: int) -> None:
    """A sidecar without any data file: a creation or deletion cut short when it names no
    bytes (or has no intact record), so it is removed; otherwise the chunk lost its data."""
    try:
        meta = store._load(handle)
    except ChecksumMismatch:
        meta = None
    if meta is None or store._expected_size(meta) == 0:
        unlink_quiet(store.layout.meta_path(handle))
        store._forget_torn(handle)
    else:
        log.warning("chunk store %s: chunk %d: data file is missing", store.root, handle)


__all__ = ["check_format", "list_chunks", "recover_dir", "startup_scan"]
