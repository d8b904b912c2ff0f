"""The gateway's aiohttp application, assembled from route-set plugins."""

from __future__ import annotations

import json
import logging
from contextlib import AsyncExitStack

from aiohttp import web

from hercules_core.client.client import Client
from hercules_core.config import Config
from hercules_core.errors import HerculesError
from hercules_core.plugins.manager import PluginManager
from hercules_core.plugins.types import GatewayContext
from hercules_core.roles import frame_limits

log = logging.getLogger(__name__)
# An upload body is buffered up to twice this per connection before its socket is paused (aiohttp's
# default, 64 KiB, pauses and resumes the socket every 128 KiB).
READ_BUFSIZE = 1 << 20
CONTEXT_KEY: web.AppKey[GatewayContext] = web.AppKey("hercules", GatewayContext)


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Every failure becomes ``{"error": {"code", "message"}}`` with a fitting status."""
    try:
        return await handler(request)
    except HerculesError as exc:
        return error_response(exc.http_status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status, "http_error")
        message = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else \
            f"{request.method} {request.path}: {exc.reason}"
        if exc.content_type == "application/json" and exc.text:
            return web.Response(status=exc.status, text=exc.text, content_type="application/json",
                                headers={k: v for k, v in exc.headers.items() if k.lower() != "content-type"})
        return error_response(exc.status, code, message)
    except json.JSONDecodeError as exc:
        return error_response(400, "invalid_argument", f"request body is not valid JSON: {exc}")


def build_app(ctx: GatewayContext, plugins: PluginManager, route_sets: list[str]) -> web.Application:
    app = web.Application(middlewares=[errors_middleware], client_max_size=64 << 20)
    app[CONTEXT_KEY] = ctx
    for name in route_sets:
        plugins.route_set(name).register(app, ctx)
    return app


async def start_gateway(stack: AsyncExitStack, plugins: PluginManager, config: Config) -> str:
    client = Client(config.master_addr, plugins.transport(config.transport), frame_limits(config))
    stack.push_async_callback(client.close)
    ctx = GatewayContext(client=client, config=config)
    app = build_app(ctx, plugins, config.routes)
    runner = web.AppRunner(app, access_log=None, read_bufsize=READ_BUFSIZE)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    address = config.gateway_address()
    site = web.TCPSite(runner, address.host, address.port, reuse_address=True)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://{'127.0.0.1' if address.host == '0.0.0.0' else address.host}:{port}"
    log.info("gateway serving on %s (master %s)", url, config.master_addr)
    return url
