"""Descriptor types that plugins contribute, and the interfaces their factories build.

Hooks are synchronous and cheap: they return these descriptors. Everything that does
I/O lives behind the async factories they carry, entered by the core in one
``AsyncExitStack`` per role. Each descriptor names the core interface its factory must
build (``ChunkStore``, ``MetadataStore``, ``PlacementPolicy``, ``FrameConnection``...), and
may declare the plugin's own settings (``SettingSpec``), which the core fills from config.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs
import pluggy

from hercules_core.addresses import Address

if TYPE_CHECKING:
    import argparse

    from aiohttp import web

    from hercules_core.client.client import Client
    from hercules_core.config import Config
    from hercules_core.framing import Frame, FrameLimits
    from hercules_core.master.store import MetadataStore

PROJECT = "hercules"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
# The plugin API this core provides. A plugin module built for another one says so with a
# module attribute ``HERCULES_API = 1`` (an int, or a collection of the ints it supports)
# and is refused at loading, naming its distribution. A module without it is taken as fitting.
API_VERSION = 1

Buffer = bytes | bytearray | memoryview


# --- plugin settings -------------------------------------------------------------

SettingValue = bool | int | float | str
SETTING_TYPES: tuple[type, ...] = (bool, int, float, str)
_SETTING_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


def _check_default(spec: "SettingSpec", attribute: attrs.Attribute, value: Any) -> None:
    if spec.type not in SETTING_TYPES:
        raise TypeError(f"setting {spec.name!r}: type must be one of bool, int, float, str, "
                        f"not {getattr(spec.type, '__name__', spec.type)!r}")
    if not is_setting_value(spec.type, value):
        raise TypeError(f"setting {spec.name!r}: default {value!r} is not a {spec.type.__name__}")
    if spec.choices and value not in spec.choices:
        raise ValueError(f"setting {spec.name!r}: default {value!r} is not one of {list(spec.choices)}")


def is_setting_value(type_: type, value: Any) -> bool:
    """``value`` is of ``type_`` (a bool is no int here; an int is a fine float)."""
    if type_ is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, type_)


def setting_env_name(area: str, plugin: str, name: str) -> str:
    """``HERCULES_<AREA>_<PLUGIN>_<NAME>``, upper case, anything but letters and digits as ``_``."""
    return "HERCULES_" + re.sub(r"[^A-Z0-9]+", "_", f"{area}_{plugin}_{name}".upper())


@attrs.frozen
class SettingSpec:
    """One option a plugin declares for itself (as conda's ``CondaSetting``); the core fills it.

    The value comes from the environment variable ``HERCULES_<AREA>_<PLUGIN>_<NAME>``
    (``HERCULES_CHUNK_STORE_ZSTD_LEVEL``), else from the config file's table
    ``[<area>.<plugin>]`` (``[chunk_store.zstd]``, key ``level``), else ``default``; it is
    checked against ``type`` (and ``choices``) at start-up, an error naming the setting and
    its source. The plugin's factory receives it in its context's ``options`` under ``name``.
    """

    name: str = attrs.field(validator=attrs.validators.matches_re(_SETTING_NAME))
    """Key in the plugin's config table and tail of its variable: lowercase, ``[a-z0-9_]``."""
    type: type
    """``bool``, ``int``, ``float`` or ``str``; text from the environment is parsed to it
    (an int accepts ``64MiB``, a bool ``true``/``false``/``1``/``0``)."""
    default: SettingValue = attrs.field(validator=_check_default)
    """The value when nothing sets it: of ``type``, and among ``choices`` if those are given."""
    help: str = ""
    """One line for ``hercules plugins``: what it changes, and its unit."""
    choices: tuple[SettingValue, ...] = ()
    """If given, the only values accepted."""
    env_aliases: tuple[str, ...] = attrs.field(default=(), validator=attrs.validators.deep_iterable(
        attrs.validators.matches_re(r"HERCULES_[A-Z0-9_]+")))
    """Older ``HERCULES_*`` variable names still read (after the canonical one), so a rename
    breaks nobody."""


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


@runtime_checkable
class PushFrameConnection(FrameConnection, Protocol):
    """Optional: a connection that also hands frames to a callback as they arrive. The RPC layer
    uses it when offered (no reader task woken per frame) and ``read_frame`` otherwise."""

    def deliver(self, on_frame: Callable[["Frame"], None], on_end: Callable[[BaseException], None]) -> None:
        """From now on give every frame to ``on_frame`` (queued ones first; an exception it raises
        ends the connection with it) and, once, after the last, why the stream ended to ``on_end``
        (what ``read_frame`` would have raised). ``read_frame`` is not used after this."""

    def pause_delivery(self) -> None:
        """Hold further frames (backpressure) until ``resume_delivery``."""

    def resume_delivery(self) -> None: ...


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
    settings: tuple[SettingSpec, ...] = ()
    """Declared and validated like any plugin's, listed by ``hercules plugins``; ``connect`` and
    ``serve`` take no options (the client library dials without a config), so a transport
    reads its values itself with ``hercules_core.config.plugin_options(spec)``."""


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
    settings: tuple[SettingSpec, ...] = ()
    """The store's own options, filled into ``StoreContext.options``."""


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
    """A placement policy; ``create(options)`` builds it with its settings' values."""

    name: str
    create: Callable[[dict[str, Any]], PlacementPolicy]
    description: str = ""
    settings: tuple[SettingSpec, ...] = ()
    """The policy's own options, passed to ``create`` as its ``options``."""


# --- gateway routes -----------------------------------------------------------------


@attrs.frozen
class GatewayContext:
    """What route sets get: a connected client library and the gateway's settings."""

    client: "Client"
    config: "Config"
    state: dict[str, Any] = attrs.field(factory=dict)
    options: dict[str, Any] = attrs.field(factory=dict)
    """The route set's own settings (``RouteSetSpec.settings``): each set gets its own context."""


@attrs.frozen
class RouteSetSpec:
    """HTTP routes for the gateway; ``register`` adds them to the aiohttp application."""

    name: str
    register: Callable[["web.Application", GatewayContext], None]
    description: str = ""
    # ``host:port`` (or a bare port) to serve the set on a port of its own, as an application of
    # its own with no middleware of the gateway's (an S3 API answers in its own error format);
    # ``None`` mounts it on the gateway's application.
    listen: str | None = None
    settings: tuple[SettingSpec, ...] = ()
    """The set's own options, in ``GatewayContext.options`` of the context it is registered with."""
    openapi: Callable[[], dict[str, Any]] | None = None
    """The set's part of the gateway's OpenAPI 3.1 description (``/api/v1/openapi.json``): a dict
    with ``paths`` and ``components``, merged with the other mounted sets' (a path two sets
    describe is an error). ``None``: its routes are left undescribed."""


# --- metadata store ------------------------------------------------------------------


@attrs.frozen
class MetadataContext:
    """What a metadata store is opened with: the master's data directory and its own options."""

    root_dir: Path
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class MetadataStoreSpec:
    """The master's durable state; ``open`` yields a ``hercules_core.master.store.MetadataStore``."""

    name: str
    open: Callable[[MetadataContext], AbstractAsyncContextManager["MetadataStore"]]
    description: str = ""
    settings: tuple[SettingSpec, ...] = ()
    """The store's own options, filled into ``MetadataContext.options``."""
    backup: Callable[[MetadataContext, Path], Awaitable[int]] | None = None
    """``hercules backup``: write a consistent copy of the store opened with this context to the
    file given, while a master may be running on it (everything acknowledged before the call
    began is in the copy); return the copy's size in bytes. ``None``: this store has no backup."""
    restore: Callable[[MetadataContext, Path, bool], Awaitable[None]] | None = None
    """``hercules restore``: install a copy ``backup`` wrote as the store of a *stopped* master
    (refusing while one runs there), replacing existing metadata only when the flag (``--force``)
    is true. Handles and file ids must never be reused after it. ``None``: no restore."""


# --- CLI subcommands -----------------------------------------------------------------


@attrs.frozen
class CliCommandSpec:
    """A ``hercules <name>`` subcommand (conda's ``CondaSubcommand`` shape)."""

    name: str
    """The word after ``hercules``; a built-in command's name is refused, naming the distribution."""
    summary: str
    """One line, shown in ``hercules --help``."""
    run: Callable[["argparse.Namespace"], int]
    """Does the work with the parsed arguments; returns the exit code."""
    configure_parser: Callable[["argparse.ArgumentParser"], None] | None = None
    """Adds the command's arguments to its own subparser; keep it free of heavy imports (it runs
    for every ``hercules`` command, at start-up)."""


# The config area each descriptor type belongs to: its selection key and its settings' prefix.
SPEC_AREAS: dict[type, str] = {
    TransportSpec: "transport",
    ChunkStoreSpec: "chunk_store",
    PlacementSpec: "placement",
    RouteSetSpec: "routes",
    MetadataStoreSpec: "metadata_store",
}
