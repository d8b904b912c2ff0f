"""Start the gateway: a client of the master, the route-set applications, their HTTP listeners."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from contextlib import AsyncExitStack

import attrs
from aiohttp import web

from hercules_core.addresses import Address
from hercules_core.assembly import frame_limits
from hercules_core.client.client import Client
from hercules_core.config import Config
from hercules_core.errors import ConfigError
from hercules_core.gateway.app import CONTEXT_KEY, build_app
from hercules_core.gateway.auth import STATE_KEY, Credentials
from hercules_core.gateway.limits import HttpLimits, LimitedSite
from hercules_core.metrics.wiring import gateway_metrics
from hercules_core.plugins.manager import PluginManager
from hercules_core.plugins.types import GatewayContext

log = logging.getLogger(__name__)
# An upload body is buffered up to twice this per connection before its socket is paused (aiohttp's
# default, 64 KiB, pauses and resumes the socket every 128 KiB).
READ_BUFSIZE = 1 << 20
# A legal path (4096 bytes) percent-encodes to 12 KiB, past aiohttp's 8190-byte request line: the
# request line and header limits are ``http_max_url`` and ``http_max_header`` (64 KiB by default).


async def start_gateway(stack: AsyncExitStack, plugins: PluginManager, config: Config) -> str:
    """Serve HTTP until ``stack`` unwinds; return the URL of the main application."""
    client = Client(config.master_addr, plugins.transport(config.transport), frame_limits(config),
                    entry_cache=config.gateway_entry_cache)
    stack.push_async_callback(client.close)
    ctx = GatewayContext(client=client, config=config)
    if config.auth_file:
        _watch_credentials(stack, ctx.state.setdefault(STATE_KEY, Credentials.open(config.auth_file)))
    app = build_app(ctx, plugins, config.routes)
    gateway_metrics(app, ctx.state, config, client.entries)
    tls = _tls_context(config)
    url = await _serve(stack, app, config.gateway_address(), config, tls)
    await _serve_own_ports(stack, ctx, plugins, config.routes, tls)
    log.info("gateway serving on %s (master %s)", url, config.master_addr)
    return url


def _watch_credentials(stack: AsyncExitStack, creds: Credentials) -> None:
    """Re-read the credentials file on SIGHUP (where this process may handle signals)."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, creds.reload)
    except (RuntimeError, ValueError, NotImplementedError):  # not the main thread, or no SIGHUP here
        log.warning("credentials in %s are not reloaded on SIGHUP in this process", creds.file)
        return
    stack.callback(loop.remove_signal_handler, signal.SIGHUP)
    log.info("authentication on: %d principals from %s", len(creds.principals), creds.file)


def _tls_context(config: Config) -> ssl.SSLContext | None:
    """HTTPS for every listener of the gateway when a certificate and its key are configured."""
    if not (config.tls_cert or config.tls_key):
        return None
    if not (config.tls_cert and config.tls_key):
        raise ConfigError("HTTPS needs both tls_cert (HERCULES_TLS_CERT) and tls_key (HERCULES_TLS_KEY)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"HTTPS certificate {config.tls_cert} or key {config.tls_key}: {exc}") from None
    return context


async def _serve(stack: AsyncExitStack, app: web.Application, address: Address, config: Config,
                 tls: ssl.SSLContext | None) -> str:
    limits = HttpLimits.of(config)
    runner = web.AppRunner(app, access_log=None, read_bufsize=READ_BUFSIZE, **limits.runner_args())
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await LimitedSite(runner, address.host, address.port, limits, tls).start()
    port = runner.addresses[0][1]  # the bound port, when 0 was asked
    scheme = "https" if tls else "http"
    return f"{scheme}://{'127.0.0.1' if address.host == '0.0.0.0' else address.host}:{port}"


async def _serve_own_ports(stack: AsyncExitStack, ctx: GatewayContext, plugins: PluginManager,
                           route_sets: list[str], tls: ssl.SSLContext | None) -> None:
    """Each set with a ``listen`` address, as its own application on its own port."""
    for name in route_sets:
        spec = plugins.route_set(name)
        if spec.listen is not None:
            app = web.Application(client_max_size=64 << 20)
            app[CONTEXT_KEY] = ctx
            spec.register(app, attrs.evolve(ctx, options=ctx.config.plugin_options(spec)))
            url = await _serve(stack, app, Address.parse(spec.listen, default_host="0.0.0.0"), ctx.config, tls)
            log.info("route set %s serving on %s", name, url)
