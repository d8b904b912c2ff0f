"""The chunk-store kit: what a file-backed chunk store builds on (``fs`` and ``zstd`` do).

A third-party store that keeps chunks in local files subclasses ``BlockFileStore`` and
writes only how block bytes sit in its data file; it inherits the layout, crash-safe
sidecars, per-handle locks, one thread hop per operation, the start-up scan and usage
accounting, and passes ``hercules_core.testing.store_contract`` unchanged. A store that keeps
chunks elsewhere (object storage, memory) implements ``ChunkStore`` directly and may still
use the pieces below.

- ``checksums``: CRC32C per block, computed on write and verified on every read
  (``block_crcs``, ``verify_blocks``);
- ``fileio``: how bytes reach the disk (``pwrite_all``, ``pread_upto``, ``datasync``,
  ``fsync_dir``, ``unlink_quiet``, ``write_atomic``, ``replace_durably``, ``run_in_thread``);
- ``sidecar``: the metadata format, a log of sealed ``ChunkMeta`` records and journal records
  (``seal``, ``commit_sidecar``, ``create_sidecar``, ``journal_record``, ``newest_record``);
- ``layout``: where each chunk's files sit under the store's root (``ChunkLayout``);
- ``recovery``: the start-up scan, what a crash leaves behind and what is removed, and the
  full listing (``list_chunks``), both reading every sidecar from disk;
- ``memory``: what a store keeps between operations, decoded sidecars (``SidecarCache``), open
  data files (``OpenFiles``) and its byte total (``UsedBytes``), with the settings bounding
  them (``STORE_SETTINGS``, for a store's ``ChunkStoreSpec``);
- ``commits``: how a change reaches a chunk's sidecar (its log kept open, journals, fresh logs,
  the replay at start-up), the part of ``BlockFileStore`` named ``SidecarLogs``;
- ``blockfile``: ``BlockFileStore`` itself.

A minimal store, uncompressed blocks at their own offsets (``store_fs`` is this, plus its
hook; the kit's tests run the contract suite against this very example)::

    from hercules_core.chunkstore import (BlockFileStore, ChunkMeta, datasync, pread_upto,
                                          pwrite_all, verify_blocks)
    from hercules_core.errors import ChecksumMismatch

    class PlainStore(BlockFileStore[ChunkMeta]):
        NAME, DATA_SUFFIX, MAGIC, META = "plain", ".chunk", b"PLN1", ChunkMeta

        def _read_blocks(self, fd, handle, meta, first, last):
            bs = self.block_size
            start, end = first * bs, min((last + 1) * bs, meta.length)
            data = pread_upto(fd, end - start, start)
            if len(data) != end - start:
                raise ChecksumMismatch(f"chunk {handle}: data file is cut short")
            verify_blocks(data, meta.crcs, first_block=first, block_size=bs)
            return data

        def _put_blocks(self, fd, handle, meta, first, buf, dirty):
            pwrite_all(fd, buf, first * self.block_size)
            datasync(fd)  # block bytes durable before the sidecar record that covers them

        def _expected_size(self, meta):
            return meta.length

Its ``open`` (``PlainStore.open``, inherited) is what a ``ChunkStoreSpec`` names. A store whose
data file holds chunk bytes as is, like this one, may also set ``JOURNAL_LIMIT`` (``fs``: 64 KiB):
writes up to that size then cost one fdatasync, their bytes journalled in the sidecar record.
"""

from __future__ import annotations

from hercules_core.chunkstore.blockfile import BlockFileStore
from hercules_core.chunkstore.checksums import block_crcs, crc, verify_blocks
from hercules_core.chunkstore.fileio import (
    as_byte_view,
    datasync,
    fsync_dir,
    pread_upto,
    pwrite_all,
    replace_durably,
    run_in_thread,
    unlink_quiet,
    write_atomic,
)
from hercules_core.chunkstore.layout import ChunkLayout
from hercules_core.chunkstore.memory import OpenFiles, SidecarCache, UsedBytes
from hercules_core.chunkstore.memory import SETTINGS as STORE_SETTINGS
from hercules_core.chunkstore.sidecar import (
    ChunkMeta,
    commit_sidecar,
    create_sidecar,
    journal_record,
    newest_record,
    seal,
    unseal,
)

__all__ = [
    "BlockFileStore",
    "ChunkLayout",
    "ChunkMeta",
    "OpenFiles",
    "STORE_SETTINGS",
    "SidecarCache",
    "UsedBytes",
    "as_byte_view",
    "block_crcs",
    "commit_sidecar",
    "crc",
    "create_sidecar",
    "datasync",
    "fsync_dir",
    "journal_record",
    "newest_record",
    "pread_upto",
    "pwrite_all",
    "replace_durably",
    "run_in_thread",
    "seal",
    "unlink_quiet",
    "unseal",
    "verify_blocks",
    "write_atomic",
]
