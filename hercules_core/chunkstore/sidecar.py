"""The metadata sidecar format: a log of sealed records, each one chunk's whole ``ChunkMeta``.

A record is ``<u32 length><4-byte store magic><u32 CRC32C of the body><body>``; the body is
``ChunkMeta.encode()``. Updates append a record with one fdatasync while the log is small and
replace the file by its newest record past ``SIDECAR_LOG_LIMIT``, so a metadata update costs
one sync, never a rename. Room for the next records is written ahead as zeros (a zero length
prefix ends the log), so most appends overwrite bytes the file has and change no file size.
Reading takes the last intact record; only a torn *tail* (an append cut short by a crash) is
forgiven, anything else is ``ChecksumMismatch``.

A small write may put its bytes in the log too: a *journal* record (magic ``JOURNAL_MAGIC``,
body ``<u64 chunk offset><bytes>``) written with the ``ChunkMeta`` record that covers it, in
one write and one fdatasync, while the data file's copy is left to the page cache. A journal
record counts once a ``ChunkMeta`` record follows it; the start-up scan writes those bytes
into the data file again (``LogRead.journals``), which is what a power loss may have cost.
Every data byte a log's journals do not hold was fdatasync'ed before the log was replaced.
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Self

import attrs

from hercules_core.chunkstore.checksums import crc
from hercules_core.chunkstore.fileio import datasync, pwrite_all, unlink_quiet, write_atomic, write_atomic_open
from hercules_core.errors import ChecksumMismatch
from hercules_core.plugins.types import Buffer

META_SUFFIX = ".meta"
SIDECAR_LOG_LIMIT = 64 << 10  # past this a sidecar is rewritten to its newest record

JOURNAL_MAGIC = b"HJNL"  # a journal record: bytes written to the data file without a sync of their own
_RECORD = struct.Struct("<I")  # length prefix of each sealed record in the log
_JOURNAL_HEAD = struct.Struct("<Q")  # chunk offset of a journal record's bytes
_SEAL = struct.Struct("<4sI")  # store magic, CRC32C of the body
_META_HEAD = struct.Struct("<QQQI")  # version, length, data-file generation, block count
_BIG_ENDIAN = sys.byteorder == "big"


def seal(magic: bytes, body: bytes) -> bytes:
    """Frame a sidecar body with the store's magic and its own CRC32C (bit rot in metadata shows)."""
    return _SEAL.pack(magic, crc(body)) + body


def unseal(magic: bytes, raw: bytes, what: str) -> bytes:
    """The body of one sealed record, or ``ChecksumMismatch`` naming ``what`` if it is damaged."""
    if len(raw) < _SEAL.size:
        raise ChecksumMismatch(f"{what}: metadata sidecar is truncated")
    found, expected = _SEAL.unpack_from(raw)
    if found != magic:
        raise ChecksumMismatch(f"{what}: metadata sidecar has magic {found!r}, expected {magic!r}")
    body = raw[_SEAL.size:]
    if crc(body) != expected:
        raise ChecksumMismatch(f"{what}: metadata sidecar fails its CRC32C check")
    return body


def _record(sealed: bytes) -> bytes:
    return _RECORD.pack(len(sealed)) + sealed


def journal_record(offset: int, data: Buffer) -> bytes:
    """A journal record of ``data`` written at chunk ``offset``: ``commit_sidecar``'s ``journal``.
    Framed as ``_record(seal(JOURNAL_MAGIC, head + data))``, with ``data`` copied once."""
    head = _JOURNAL_HEAD.pack(offset)
    view = memoryview(data)
    return b"".join((_RECORD.pack(_SEAL.size + len(head) + view.nbytes),
                     _SEAL.pack(JOURNAL_MAGIC, crc(view, crc(head))), head, view))


SidecarLog = tuple[int, int, int]
"""A sidecar kept open between commits: its descriptor, where its log ends (the next record's
offset) and the file's size (zeros past the end: room written ahead)."""


def log_end(raw: bytes) -> int:
    """Where a log's records end: at its first zero length prefix, or where the file does."""
    pos = 0
    while pos + _RECORD.size <= len(raw):
        (size,) = _RECORD.unpack_from(raw, pos)
        if not size or pos + _RECORD.size + size > len(raw):
            break
        pos += _RECORD.size + size
    return pos


def _open_log(path: Path) -> SidecarLog | None:
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        return fd, log_end(os.pread(fd, size, 0)), size
    except BaseException:
        os.close(fd)
        raise


def commit_sidecar(path: Path, sealed: bytes, tag: str, log: SidecarLog | None = None, *,
                   keep: bool = False, journal: bytes = b"",
                   sync_data: Callable[[], None] | None = None) -> tuple[SidecarLog | None, bool]:
    """Make a new sidecar record durable with one fdatasync: appended to the sidecar's log while
    it is small, else the file is replaced (atomically) by just this record.

    When a record does not fit the file, zeros are written after it, as many bytes as the log
    then holds (up to its limit): the next records overwrite them, so their fdatasync changes
    no file size and, on ext4 and its kind, commits no file-system journal (about half the
    cost of an appending one here). A log that grows doubles its file a few times. A sidecar
    never takes more than twice its records' bytes, or the limit: a busy log (``keep``) that is
    replaced keeps its size, so the commits after it do not pay those doublings again.

    Returns the log and whether the file was replaced. With ``keep`` the log stays open and is
    returned, to be passed back as ``log`` by the next commit: an append is then one write and
    one fdatasync, with no stat, open or close; after a replacement it is the new file's. Without
    ``keep`` the log is ``None``.

    ``journal`` (``journal_record``s) goes in the same write, before the record. A replacement
    drops the log's journals, so it first calls ``sync_data`` (which must make the data file's
    bytes durable); the caller passes it whenever the log holds journals or ``journal`` is given.

    A crash mid-append leaves a torn last record, which ``newest_record`` skips: the chunk then
    reads with its previous metadata, and any block written since fails its CRC (never passes).
    """
    record = _record(sealed)
    if log is None:
        log = _open_log(path)
    added = len(journal) + len(record)
    limit = max(SIDECAR_LOG_LIMIT, 4 * added)
    if log is None or log[1] + added > limit:
        room = 0
        if log is not None:
            os.close(log[0])
            if keep:  # a busy log keeps its size: the records after this one change no file size
                room = max(0, min(limit, log[2]) - len(record))
        if sync_data is not None:
            sync_data()
        if not keep:
            write_atomic(path, record, tag)
            return None, True
        fd = write_atomic_open(path, b"".join((record, bytes(room))) if room else record, tag)
        return (fd, len(record), len(record) + room), True
    fd, end, size = log
    room = 0
    if end + added > size:  # no room written ahead: as much as the log then holds, up to the limit
        room = min(limit, 2 * (end + added)) - end - added
    out = b"".join((journal, record, bytes(room))) if journal or room else record  # one copy
    try:
        pwrite_all(fd, out, end)
        datasync(fd)
    except BaseException:
        os.close(fd)
        raise
    if keep:
        return (fd, end + added, max(size, end + len(out))), False
    os.close(fd)
    return None, False


def rewrite_sidecar(path: Path, sealed: bytes, tag: str) -> None:
    """Replace the sidecar by a fresh log of one record: after a torn tail, where an append
    could never be found again."""
    write_atomic(path, _record(sealed), tag)


def create_sidecar(path: Path, sealed: bytes) -> None:
    """Write the first record of a sidecar that does not exist yet: ``O_EXCL`` + one fdatasync.

    No tmp file or rename is needed, since there is no old content to keep: a crash leaves no
    file, an empty one or a torn record, which ``newest_record`` refuses. The caller makes the
    file's directory entry durable (``fsync_dir``) before it reports the chunk as created.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        pwrite_all(fd, _record(sealed), 0)
        datasync(fd)
    except BaseException:
        os.close(fd)
        unlink_quiet(path)
        raise
    os.close(fd)


@attrs.frozen
class LogRead:
    """What a sidecar's log holds: the body of its last intact ``ChunkMeta`` record, whether the
    log ended cleanly, and the journal records some ``ChunkMeta`` record follows, in log order,
    as ``(chunk offset, bytes)``."""

    body: bytes
    clean: bool
    journals: list[tuple[int, bytes]]


def newest_record(magic: bytes, raw: bytes, what: str) -> LogRead:
    """Read a sidecar's log (``LogRead``).

    Only a torn *tail* is forgiven; the next commit must then rewrite the file
    (``rewrite_sidecar``), since an append after a torn record could not be found again.
    Journal records with no ``ChunkMeta`` record after them belong to a commit that never
    finished, and are left out.
    """
    pos, body, clean = 0, None, True
    journals: list[tuple[int, bytes]] = []
    pending: list[tuple[int, bytes]] = []
    while pos < len(raw):
        if pos + _RECORD.size > len(raw):
            clean = False
            break  # torn length prefix at the tail
        (size,) = _RECORD.unpack_from(raw, pos)
        if not size:
            break  # the room written ahead: the log ends here
        end = pos + _RECORD.size + size
        if end > len(raw):
            clean = False
            break  # torn record at the tail
        sealed = raw[pos + _RECORD.size:end]
        is_journal = sealed[:len(JOURNAL_MAGIC)] == JOURNAL_MAGIC
        try:
            found = unseal(JOURNAL_MAGIC if is_journal else magic, sealed, what)
        except ChecksumMismatch:
            if body is not None and not raw[end:].strip(b"\0"):
                clean = False
                break  # the last append was cut short by a crash (only zeros after it)
            raise
        if is_journal:
            if len(found) < _JOURNAL_HEAD.size:
                raise ChecksumMismatch(f"{what}: malformed journal record in the metadata sidecar")
            pending.append((_JOURNAL_HEAD.unpack_from(found)[0], found[_JOURNAL_HEAD.size:]))
        else:
            body = found
            journals += pending
            pending.clear()
        pos = end
    if body is None:
        raise ChecksumMismatch(f"{what}: metadata sidecar is truncated")
    return LogRead(body, clean, journals)


@attrs.define
class ChunkMeta:
    """A sidecar's content: version, length, data-file generation and one CRC32C per block.

    Stores add per-block columns by subclassing and extending ``COLUMNS`` (attribute name,
    ``array`` typecode); every column has one entry per block and is stored little-endian.
    """

    COLUMNS: ClassVar[tuple[tuple[str, str], ...]] = (("crcs", "I"),)

    version: int
    length: int
    gen: int = 0
    crcs: list[int] = attrs.field(factory=list)

    def encode(self) -> bytes:
        count = len(self.crcs)
        parts = [_META_HEAD.pack(self.version, self.length, self.gen, count)]
        for name, code in self.COLUMNS:
            column = array(code, getattr(self, name))
            if len(column) != count:
                raise ValueError(f"sidecar column {name} has {len(column)} entries, expected {count}")
            if _BIG_ENDIAN:
                column.byteswap()
            parts.append(column.tobytes())
        return b"".join(parts)

    @classmethod
    def decode(cls, body: bytes, what: str) -> Self:
        """Parse ``encode``'s output; anything malformed is ``ChecksumMismatch`` naming ``what``."""
        try:
            version, length, gen, count = _META_HEAD.unpack_from(body)
            pos = _META_HEAD.size
            columns: dict[str, list[int]] = {}
            for name, code in cls.COLUMNS:
                column = array(code)
                end = pos + count * column.itemsize
                if end > len(body):
                    raise ValueError("short column")
                column.frombytes(body[pos:end])
                if _BIG_ENDIAN:
                    column.byteswap()
                columns[name] = column.tolist()
                pos = end
            if pos != len(body):
                raise ValueError("trailing bytes")
        except (struct.error, ValueError) as exc:
            raise ChecksumMismatch(f"{what}: malformed metadata sidecar ({exc})") from None
        return cls(version, length, gen, **columns)


__all__ = [
    "JOURNAL_MAGIC",
    "META_SUFFIX",
    "SIDECAR_LOG_LIMIT",
    "ChunkMeta",
    "LogRead",
    "SidecarLog",
    "commit_sidecar",
    "create_sidecar",
    "journal_record",
    "log_end",
    "newest_record",
    "rewrite_sidecar",
    "seal",
    "unseal",
]
