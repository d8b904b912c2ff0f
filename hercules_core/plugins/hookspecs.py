"""Every hook a Hercules plugin can implement. This module is the plugin author's reference.

Each hook is a *noun*: it contributes capabilities by returning descriptor objects
(``hercules_core.plugins.types``). Hooks are called once, when a role is assembled at
start-up, never per request. They are synchronous: do no I/O in them; put it in the
async factory the descriptor carries. Config picks an implementation by its ``name``.

Register a plugin in the ``hercules`` entry-point group of your distribution::

    [project.entry-points.hercules]
    my_store = "my_package.plugin"

and implement hooks in that module with ``@hercules_core.plugins.hookimpl``.

A descriptor may declare the plugin's own settings (``settings=(SettingSpec(...), ...)``): the
core fills them from config and passes them in its context's ``options``. A module built for
a given plugin API says so with ``HERCULES_API = 1`` (see ``hercules_core.plugins.API_VERSION``);
``hercules plugins --check`` validates the installed set.
"""

from __future__ import annotations

from collections.abc import Iterable

from hercules_core.plugins.types import (
    ChunkStoreSpec,
    CliCommandSpec,
    MetadataStoreSpec,
    PlacementSpec,
    RouteSetSpec,
    TransportSpec,
    hookspec,
)


@hookspec
def hercules_transports() -> Iterable[TransportSpec]:
    """Contribute transports that move frames between Hercules processes.

    Role and phase: every role, at assembly; the one named by config ``transport``
    is used for all native-protocol traffic of that process.

    Returns: ``TransportSpec`` objects. ``connect(address, limits)`` dials and
    returns a ``FrameConnection``; ``serve(address, handler, limits)`` listens and
    calls ``handler(connection)`` for each accepted connection. Parse frames with
    ``hercules_core.framing`` so limits and errors are the same for every transport.

    Example::

        @hookimpl
        def hercules_transports():
            yield TransportSpec(name="unix", connect=dial_unix, serve=serve_unix)
    """


@hookspec
def hercules_chunk_stores() -> Iterable[ChunkStoreSpec]:
    """Contribute chunk stores: where a chunkserver keeps chunk bytes and versions.

    Role and phase: chunkserver, at assembly; config ``chunk_store`` names one.

    Returns: ``ChunkStoreSpec`` objects whose ``open(ctx)`` is an async context
    manager yielding a ``ChunkStore``. Verify ``hercules_core.testing.store_contract``
    passes against your store.

    Example::

        @hookimpl
        def hercules_chunk_stores():
            yield ChunkStoreSpec(name="memory", open=open_memory_store)
    """


@hookspec
def hercules_placement_policies() -> Iterable[PlacementSpec]:
    """Contribute replica placement policies.

    Role and phase: master, at assembly; config ``placement`` names one.

    Returns: ``PlacementSpec`` objects whose ``create(options)`` builds a policy
    with a pure ``choose(servers, count, exclude)`` method.

    Example::

        @hookimpl
        def hercules_placement_policies():
            yield PlacementSpec(name="first", create=lambda options: FirstFit())
    """


@hookspec
def hercules_gateway_routes() -> Iterable[RouteSetSpec]:
    """Contribute HTTP route sets to the gateway (REST, S3-compatible, dashboards...).

    Role and phase: gateway, at assembly; config ``routes`` lists the sets to mount.

    Returns: ``RouteSetSpec`` objects whose ``register(app, ctx)`` adds aiohttp
    routes; handlers reach the file system through ``ctx.client``.

    Example::

        @hookimpl
        def hercules_gateway_routes():
            yield RouteSetSpec(name="hello", register=lambda app, ctx: app.router.add_get("/hello", hello))
    """


@hookspec
def hercules_metadata_stores() -> Iterable[MetadataStoreSpec]:
    """Contribute stores for the master's durable metadata (namespace, chunks, versions).

    Role and phase: master, at assembly; config ``metadata_store`` names one.

    Returns: ``MetadataStoreSpec`` objects whose ``open(ctx)`` yields a
    ``hercules_core.master.store.MetadataStore``.

    Example::

        @hookimpl
        def hercules_metadata_stores():
            yield MetadataStoreSpec(name="sqlite", open=open_sqlite)
    """


@hookspec
def hercules_cli_commands() -> Iterable[CliCommandSpec]:
    """Contribute ``hercules <name>`` subcommands (a benchmark, an admin tool...), so that a tool
    ships as its own distribution instead of inside the core package.

    Role and phase: the ``hercules`` command, at start-up: it builds one subparser per command
    (``configure_parser`` adds its arguments) and calls ``run(args)`` when it is the one invoked,
    exiting with what it returns. A name that is a built-in command (``serve``, ``ls``...) is an
    error naming the distribution; two plugins offering one name is an error naming both.

    Returns: ``CliCommandSpec`` objects. Keep ``configure_parser`` cheap (it runs for every
    ``hercules`` invocation) and import what ``run`` needs inside ``run``.

    Example::

        @hookimpl
        def hercules_cli_commands():
            yield CliCommandSpec(name="hello", summary="say hello",
                                 configure_parser=lambda p: p.add_argument("--who", default="world"),
                                 run=lambda args: print(f"hello, {args.who}") or 0)
    """
