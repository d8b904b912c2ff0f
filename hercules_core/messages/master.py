"""Messages to and from the master: namespace, chunks, snapshots and trash, chunkserver reports."""

from __future__ import annotations

from typing import Any

import attrs

from hercules_core.messages.registry import message

__all__ = [
    "Ping", "Pong", "Ok", "ErrorReply", "FileInfo", "Mkdir", "Create", "Stat", "ListDir", "Listing", "Rename", "BeginUpload",
    "UploadStarted", "PublishUpload", "AbortUpload", "Delete", "GetChunk", "LastChunk", "FindChunk",
    "ChunkLocation", "Locate", "PackedExtent", "Located", "ExtendSize", "ReportBadReplica", "ClusterStatus",
    "ChunkserverStatus", "ClusterInfo", "ChunkReport", "Register", "Registered", "Heartbeat",
    "LeaseExtension", "HeartbeatReply", "Snapshot", "Undelete", "ListTrash", "PurgeTrash", "TrashPurged",
    "TrashEntry", "TrashList", "Compose",
]


# --- generic replies ----------------------------------------------------------------


@message("ok")
class Ok:
    pass


@message("err")
class ErrorReply:
    code: str
    message: str


@message("ping")
class Ping:
    pass


@message("pong")
class Pong:
    role: str
    info: dict[str, Any] = attrs.Factory(dict)


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


@message("abort_upload")
class AbortUpload:
    """Drop an upload in progress that will not be published: its hidden file and chunks go at once."""

    temp: str


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
    holder: str = ""  # a holder of cached entries (``WatchEntries``): lease the entry to it if packed


@message("extent")
class PackedExtent:
    """Where a packed file's bytes are: ``length`` bytes at ``offset`` of pack ``handle`` (CRC32C ``crc``)."""

    handle: int
    offset: int
    length: int
    crc: int


@message("located")
class Located:
    info: FileInfo
    chunks: list[ChunkLocation]
    extent: PackedExtent | None = None  # a packed file's; then ``chunks`` is its pack's location
    leased: bool = False  # leased to the ``holder`` asked for: it may answer reads of it itself


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
    metrics_url: str = ""


@message("clusterinfo")
class ClusterInfo:
    chunkservers: list[ChunkserverStatus]
    chunk_size: int
    replication: int
    under_replicated: int = 0
    pending_deletions: int = 0
    missing_chunks: int = 0  # chunks the metadata expects but no chunkserver has reported
    master_metrics_url: str = ""


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
    metrics_url: str = ""  # where its Prometheus metrics are scraped ("" when off)


@message("registered")
class Registered:
    delete: list[int]
    heartbeat_interval: float
    chunk_size: int = 0  # the cluster's, which bounds every write a chunkserver accepts (0: unknown)


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


# --- snapshots, composition and trash (client -> master) ----------------------------------


@message("snapshot")
class Snapshot:
    source: str
    target: str
    request_id: str = ""


@message("compose")
class Compose:
    """Make the file ``target`` from the chunks of ``sources``, in order, shared copy-on-write as a
    snapshot shares them: no byte is copied. Every source but the last must be a whole number of
    chunks long (else ``invalid_argument`` naming it: the caller copies instead). One atomic
    commit makes the target (and its parent directories) and, with ``remove_sources``, drops the
    sources; the reply is the target's entry."""

    target: str
    sources: list[str]
    remove_sources: bool = False
    overwrite: bool = False
    request_id: str = ""


@message("undelete")
class Undelete:
    path: str
    request_id: str = ""


@message("listtrash")
class ListTrash:
    limit: int = 0  # 0: the master's page size; every reply is one page, with a cursor for more
    cursor: str = ""


@message("purgetrash")
class PurgeTrash:
    """Empty the trash now instead of at the end of each entry's grace period."""

    request_id: str = ""


@message("trashpurged")
class TrashPurged:
    chunks: int  # chunks freed (shared ones only lose a reference)


@message("trashentry")
class TrashEntry:
    original_path: str
    deleted_at: float
    purge_at: float
    entry: FileInfo


@message("trashlist")
class TrashList:
    entries: list[TrashEntry]
    next_cursor: str = ""
