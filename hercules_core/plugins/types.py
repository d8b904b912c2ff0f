"""Descriptor types that plugins contribute, and the interfaces their factories build.

Hooks are synchronous and cheap: they return these descriptors. Everything that does
I/O lives behind the async factories they carry, entered by the core in one
``AsyncExitStack`` per role.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs
import pluggy

from hercules_core.addresses import Address

if TYPE_CHECKING:
    from aiohttp import web

    from hercules_core.framing import Frame, FrameLimits

PROJECT = "hercules"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Buffer = bytes | bytearray | memoryview


# --- transport -----------------------------------------------------------------


@runtime_checkable
class FrameConnection(Protocol):
    """One bidirectional connection that moves whole frames (see ``hercules_core.framing``)."""

    peer: str

    async def read_frame(self) -> "Frame":
        """The next frame; ``EOFError`` on a clean close, ``ProtocolError`` if malformed."""

    async def write_frame(self, frame: "Frame") -> None:
        """Send a frame; the data part is written as is, never re-encoded."""

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


ConnectionHandler = Callable[[FrameConnection], Awaitable[None]]


@runtime_checkable
class FrameServer(Protocol):
    address: Address

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


@attrs.frozen
class TransportSpec:
    """A way to move frames between processes (TCP, TLS, unix sockets...)."""

    name: str
    connect: Callable[[Address, "FrameLimits"], Awaitable[FrameConnection]]
    serve: Callable[[Address, ConnectionHandler, "FrameLimits"], Awaitable[FrameServer]]
    description: str = ""


# --- chunk store -----------------------------------------------------------------


@attrs.frozen
class ChunkInfo:
    handle: int
    version: int
    length: int


@attrs.frozen
class StoreUsage:
    used_bytes: int
    capacity_bytes: int


@attrs.frozen
class StoreContext:
    """What a chunk store is opened with: its directory and its own options."""

    root_dir: Path
    options: dict[str, Any] = attrs.field(factory=dict)
    block_size: int = 64 * 1024


@runtime_checkable
class ChunkStore(Protocol):
    """Chunk bytes and versions on one chunkserver, checksummed per block.

    Every read is verified against the stored CRC32C block checksums and raises
    ``ChecksumMismatch`` rather than return bad bytes. Callers serialise mutations
    of one chunk; reads may run alongside them.
    """

    async def create(self, handle: int, version: int) -> None: ...

    async def write(self, handle: int, offset: int, data: Buffer) -> int:
        """Write at ``offset`` (zero-filling any gap); return the chunk's new length."""

    async def read(self, handle: int, offset: int, length: int) -> bytes:
        """Up to ``length`` verified bytes from ``offset``; short (or empty) past the end."""

    async def info(self, handle: int) -> ChunkInfo:
        """Version and length; ``NotFound`` if the chunk is not here."""

    async def set_version(self, handle: int, version: int) -> None: ...

    async def delete(self, handle: int) -> None: ...

    async def list(self) -> Sequence[ChunkInfo]: ...

    async def usage(self) -> StoreUsage: ...


@attrs.frozen
class ChunkStoreSpec:
    """A chunk store; ``open`` returns an async context manager yielding a ``ChunkStore``."""

    name: str
    open: Callable[[StoreContext], AbstractAsyncContextManager[ChunkStore]]
    description: str = ""


# --- placement -------------------------------------------------------------------


@attrs.frozen
class ServerView:
    """What a placement policy may know about a live chunkserver."""

    server_id: str
    address: Address
    capacity_bytes: int
    used_bytes: int
    chunk_count: int = 0

    @property
    def free_bytes(self) -> int:
        return max(0, self.capacity_bytes - self.used_bytes)


class PlacementPolicy(Protocol):
    """A pure function of (servers, count): no I/O, no state the core cannot see."""

    def choose(
        self, servers: Sequence[ServerView], count: int, exclude: frozenset[str] = frozenset()
    ) -> list[ServerView]:
        """Pick ``count`` distinct servers for new replicas; fewer if fewer qualify."""


@attrs.frozen
class PlacementSpec:
    name: str
    create: Callable[[dict[str, Any]], PlacementPolicy]
    description: str = ""


# --- gateway routes -----------------------------------------------------------------


@attrs.frozen
class GatewayContext:
    """What route sets get: a connected client library and the gateway's settings."""

    client: Any  # hercules_core.client.Client (kept loose to avoid an import cycle)
    config: Any
    state: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class RouteSetSpec:
    """HTTP routes for the gateway; ``register`` adds them to the aiohttp application."""

    name: str
    register: Callable[["web.Application", GatewayContext], None]
    description: str = ""


# --- metadata store ------------------------------------------------------------------


@attrs.frozen
class MetadataContext:
    root_dir: Path
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class MetadataStoreSpec:
    """The master's durable state; ``open`` yields a ``hercules_core.master.store.MetadataStore``."""

    name: str
    open: Callable[[MetadataContext], AbstractAsyncContextManager[Any]]
    description: str = ""
