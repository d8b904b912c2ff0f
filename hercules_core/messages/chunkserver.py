"""Messages a chunkserver serves: the master's commands and the data path (client or peer), and
the one question a secondary asks the master about the data path (``CheckLease``)."""

from __future__ import annotations

from hercules_core.messages.registry import message

__all__ = [
    "CreateChunk", "SetVersion", "DeleteChunks", "CopyChunk", "CloneChunk", "RevokeLease", "VerifyChunk",
    "PushData", "WriteChunk", "AppendChunk", "ApplyMutation", "Written", "ReadChunk", "ReadReply", "CheckLease",
]


# --- master -> chunkserver ---------------------------------------------------------------


@message("mkchunk")
class CreateChunk:
    """A new (empty) chunk at ``version``; ``lease_seconds`` > 0 also makes the receiver its primary,
    and ``token`` is then the lease's proof its mutations carry to the secondaries."""

    handle: int
    version: int
    lease_seconds: float = 0.0
    token: str = ""


@message("setversion")
class SetVersion:
    """New chunk version after a lease grant; ``lease_seconds`` > 0 makes the receiver primary,
    ``token`` (the master's, for this chunk and version) proves it to the secondaries."""

    handle: int
    version: int
    lease_seconds: float = 0.0
    token: str = ""


@message("rmchunks")
class DeleteChunks:
    handles: list[int]


@message("copychunk")
class CopyChunk:
    """Re-replication: pull chunk ``handle`` at ``version`` from ``source`` and keep a replica."""

    handle: int
    version: int
    source: str


@message("clonechunk")
class CloneChunk:
    """Copy-on-write after a snapshot: copy local chunk ``source_handle`` to a new ``handle``."""

    source_handle: int
    handle: int
    version: int


@message("revoke")
class RevokeLease:
    handle: int


@message("verify")
class VerifyChunk:
    """Re-read the local replica of ``handle`` whole: ``Ok``, or ``checksum_mismatch`` if it is
    corrupt (the master asks before it believes a report that the replica is bad)."""

    handle: int


# --- data path (client -> chunkserver, chunkserver -> chunkserver) -------------------------


@message("push")
class PushData:
    """Buffer the frame's data under ``data_id`` here and forward it along ``chain``."""

    data_id: str
    chain: list[str]


@message("write")
class WriteChunk:
    handle: int
    version: int
    offset: int
    data_id: str
    secondaries: list[str]


@message("append")
class AppendChunk:
    handle: int
    version: int
    data_id: str
    secondaries: list[str]
    chunk_size: int


@message("apply")
class ApplyMutation:
    """A mutation in the primary's serial order; ``pad_to`` > 0 zero-fills to that length."""

    handle: int
    version: int
    serial: int
    offset: int
    data_id: str = ""
    pad_to: int = 0
    token: str = ""  # the primary's lease token (``SetVersion.token``): no other sender has it


@message("written")
class Written:
    offset: int
    length: int


@message("read")
class ReadChunk:
    handle: int
    version: int
    offset: int
    length: int
    at_least: bool = False  # any version from ``version`` on: the bytes never change (a pack's record)


@message("readreply")
class ReadReply:
    length: int


# --- chunkserver -> master -------------------------------------------------------------------


@message("checklease")
class CheckLease:
    """Whether ``token`` is the one the master gave the primary of ``handle`` at ``version``
    (``Ok``, else ``not_primary``): a secondary asks once per version, then remembers."""

    handle: int
    version: int
    token: str
