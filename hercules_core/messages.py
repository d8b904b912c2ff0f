"""Wire messages: attrs classes, each registered under a short type tag.

Bulk data never lives in these; it travels in the frame's raw data part.
"""

from __future__ import annotations

from typing import Any, TypeVar

import attrs

T = TypeVar("T")
REGISTRY: dict[str, type] = {}


def message(tag: str):
    """Register an attrs class as a wire message under ``tag``."""

    def wrap(cls: type[T]) -> type[T]:
        if tag in REGISTRY:
            raise ValueError(f"duplicate message tag {tag!r}")
        cls = attrs.frozen(cls)
        cls.TAG = tag  # type: ignore[attr-defined]
        REGISTRY[tag] = cls
        return cls

    return wrap


# --- generic replies ----------------------------------------------------------------


@message("ok")
class Ok:
    pass


@message("err")
class ErrorReply:
    code: str
    message: str


# --- namespace (client -> master) ----------------------------------------------------


@message("file")
class FileInfo:
    path: str
    file_id: int
    is_dir: bool
    size: int
    replication: int
    chunk_count: int
    ctime: float
    mtime: float


@message("mkdir")
class Mkdir:
    path: str


@message("create")
class Create:
    path: str
    replication: int | None = None
    exclusive: bool = True
    request_id: str = ""  # makes a retried request safe: the master answers it once


@message("stat")
class Stat:
    path: str


@message("list")
class ListDir:
    path: str
    recursive: bool = False
    limit: int = 0
    cursor: str = ""


@message("listing")
class Listing:
    entries: list[FileInfo]
    next_cursor: str = ""


@message("rename")
class Rename:
    source: str
    target: str
    overwrite: bool = False
    request_id: str = ""


@message("beginupload")
class BeginUpload:
    """Start an upload to ``path``: refused now if the path is taken (and not ``overwrite``);
    the reply is the hidden temporary file the data goes into."""

    path: str
    replication: int | None = None
    overwrite: bool = False
    request_id: str = ""
    size_hint: int = 0  # > 0: data will follow, so the first chunk is allocated in the same call


@message("uploadstarted")
class UploadStarted:
    temp: FileInfo
    first_chunk: ChunkLocation | None = None  # with its lease, when ``size_hint`` > 0


@message("publish")
class PublishUpload:
    """Finish an upload in one atomic step: size, parent directories, rename into place."""

    temp: str
    path: str
    size: int
    overwrite: bool = False
    request_id: str = ""


@message("delete")
class Delete:
    path: str
    recursive: bool = False
    request_id: str = ""


# --- chunks (client -> master) ---------------------------------------------------------


@message("getchunk")
class GetChunk:
    """Location of chunk ``index`` of a file; ``for_write`` also ensures a lease (and allocates)."""

    file_id: int
    index: int
    for_write: bool = False


@message("lastchunk")
class LastChunk:
    """The chunk record appends go to: the file's last, allocated if the file has none."""

    file_id: int


@message("findchunk")
class FindChunk:
    handle: int


@message("chunkloc")
class ChunkLocation:
    handle: int
    index: int
    version: int
    replicas: list[str]
    primary: str = ""
    lease_expires: float = 0.0  # wall clock, for display
    exists: bool = True


@message("locate")
class Locate:
    """Open a file for reading: its entry and the locations of up to ``count`` chunks from
    ``index`` in one call (no chunks for a directory)."""

    path: str
    index: int = 0
    count: int = 1


@message("located")
class Located:
    info: FileInfo
    chunks: list[ChunkLocation]


@message("extend")
class ExtendSize:
    file_id: int
    size: int


@message("badreplica")
class ReportBadReplica:
    handle: int
    address: str
    reason: str


@message("cluster")
class ClusterStatus:
    pass


@message("csinfo")
class ChunkserverStatus:
    server_id: str
    address: str
    state: str
    capacity_bytes: int
    used_bytes: int
    chunk_count: int
    last_heartbeat_age: float
    phi: float = 0.0


@message("clusterinfo")
class ClusterInfo:
    chunkservers: list[ChunkserverStatus]
    chunk_size: int
    replication: int
    under_replicated: int = 0
    pending_deletions: int = 0
    missing_chunks: int = 0  # chunks the metadata expects but no chunkserver has reported


# --- chunkserver <-> master --------------------------------------------------------------


@message("chunkrep")
class ChunkReport:
    handle: int
    version: int
    length: int = 0


@message("register")
class Register:
    server_id: str
    address: str
    capacity_bytes: int
    used_bytes: int
    chunks: list[ChunkReport]
    leases: list["LeaseExtension"] = attrs.Factory(list)  # leases this server still holds (informational)


@message("registered")
class Registered:
    delete: list[int]
    heartbeat_interval: float


@message("heartbeat")
class Heartbeat:
    server_id: str
    capacity_bytes: int
    used_bytes: int
    chunk_count: int
    added: list[ChunkReport] = attrs.Factory(list)
    removed: list[int] = attrs.Factory(list)
    lease_extensions: list[int] = attrs.Factory(list)
    full: list[ChunkReport] | None = None  # every chunk held, sent now and then to find orphans


@message("leaseext")
class LeaseExtension:
    handle: int
    version: int
    seconds: float


@message("hbreply")
class HeartbeatReply:
    known: bool
    delete: list[int] = attrs.Factory(list)
    extended: list[LeaseExtension] = attrs.Factory(list)


# --- master -> chunkserver ---------------------------------------------------------------


@message("mkchunk")
class CreateChunk:
    """A new (empty) chunk at ``version``; ``lease_seconds`` > 0 also makes the receiver its primary."""

    handle: int
    version: int
    lease_seconds: float = 0.0


@message("setversion")
class SetVersion:
    """New chunk version after a lease grant; ``lease_seconds`` > 0 makes the receiver primary."""

    handle: int
    version: int
    lease_seconds: float = 0.0


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


# --- snapshots and trash (client -> master) -------------------------------------------------


@message("snapshot")
class Snapshot:
    source: str
    target: str
    request_id: str = ""


@message("undelete")
class Undelete:
    path: str
    request_id: str = ""


@message("listtrash")
class ListTrash:
    pass


@message("trashentry")
class TrashEntry:
    original_path: str
    deleted_at: float
    purge_at: float
    entry: FileInfo


@message("trashlist")
class TrashList:
    entries: list[TrashEntry]


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


@message("readreply")
class ReadReply:
    length: int


@message("ping")
class Ping:
    pass


@message("pong")
class Pong:
    role: str
    info: dict[str, Any] = attrs.Factory(dict)


Message = Any
