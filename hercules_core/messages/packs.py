"""Messages of packed small files (docs/consistency.md, "Packed small files"): the open pack a
client appends small files to, publishing one as an extent of it, and compaction."""

from __future__ import annotations

import attrs

from hercules_core.messages.master import ChunkLocation, ErrorReply, FileInfo
from hercules_core.messages.registry import message

__all__ = ["OpenPack", "PackTarget", "PublishPacked", "PublishPackedBatch", "PackedPublished", "CompactPacks",
           "PacksCompacted", "PUBLISH_BATCH_MAX"]

PUBLISH_BATCH_MAX = 256  # items of one PublishPackedBatch: the master refuses more, clients send no more


@message("openpack")
class OpenPack:
    """The pack small files are appended to now, with a write lease; ``full`` names a pack an
    append found full: it is sealed and the next one opened."""

    full: int = 0
    lane: int = 0  # which of the open packs (taken modulo the master's ``pack_lanes``)


@message("packtarget")
class PackTarget:
    location: ChunkLocation


@message("pubpacked")
class PublishPacked:
    """Publish ``path`` as the record of ``length`` bytes at ``offset`` of pack ``handle`` (CRC32C
    ``crc``), making its parent directories, in one commit; ``overwrite`` replaces a file there."""

    path: str
    handle: int
    offset: int
    length: int
    crc: int
    overwrite: bool = False
    request_id: str = ""
    holder: str = ""  # a holder of cached entries: lease the published file to it


@message("pubpackedbatch")
class PublishPackedBatch:
    """Several ``PublishPacked`` in one call: a client's publishes that queued while its last one
    was on the wire. Each is its own commit (one transaction's savepoint) and succeeds or fails
    alone; the answer lists their outcomes in order."""

    items: list[PublishPacked]


@message("packedpublished")
class PackedPublished:
    """Per item of a ``PublishPackedBatch``: its file, or (``None`` there) its error."""

    files: list[FileInfo | None]
    errors: list[ErrorReply | None]
    leased: list[bool] = attrs.field(factory=list)  # per item: leased to its ``holder``


@message("compactpacks")
class CompactPacks:
    """Compact every sealed pack whose garbage passes ``garbage`` (0: the master's setting)."""

    garbage: float = 0.0


@message("packscompacted")
class PacksCompacted:
    packs: int
    records_moved: int
    bytes_freed: int
