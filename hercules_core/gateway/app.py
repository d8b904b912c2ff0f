"""The gateway's aiohttp application, assembled from route-set plugins; ``role.py`` serves it."""

from __future__ import annotations

import json
import logging

import attrs
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from hercules_core.errors import HerculesError
from hercules_core.gateway import openapi
from hercules_core.gateway.auth import STATE_KEY, auth_middleware
from hercules_core.gateway.limits import HttpLimits, url_middleware
from hercules_core.gateway.limits import json_error as error_response
from hercules_core.plugins.manager import PluginManager
from hercules_core.plugins.types import GatewayContext

log = logging.getLogger(__name__)
CONTEXT_KEY: web.AppKey[GatewayContext] = web.AppKey("hercules", GatewayContext)


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
    except (BadHttpMessage, web.RequestPayloadError) as exc:  # a body read failed: undecodable, cut short
        response = error_response(400, "invalid_argument", _unreadable_body(request, exc))
        request.content.feed_eof()  # nothing more can be read of it: no lingering read of the rest
        response.force_close()  # and the connection's byte stream is lost: the client is told to reconnect
        return response
    except (ConnectionError, TimeoutError):
        raise  # the client went away or stopped reading: there is no one to answer
    except Exception:  # a bug: logged with its traceback, answered in our shape, never aiohttp's text
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal", f"{request.method} {request.path} failed in the gateway (logged)")


def _unreadable_body(request: web.Request, exc: Exception) -> str:
    """What went wrong, without aiohttp's ``400, message:`` framing of the parser's error."""
    detail = exc.message if isinstance(exc, BadHttpMessage) else " ".join(str(exc).split())
    detail = detail.removeprefix("400, message: ")
    encoding = request.headers.get("Content-Encoding", "identity")
    sent = "" if encoding.lower() == "identity" else f" (sent with Content-Encoding: {encoding})"
    return f"request body{sent} could not be read: {detail}"


def build_app(ctx: GatewayContext, plugins: PluginManager, route_sets: list[str]) -> web.Application:
    """The gateway's application with every set that has no ``listen`` address of its own: errors
    in our shape, then the URL limits, then (when credentials are set) authentication."""
    middlewares = [errors_middleware, url_middleware(HttpLimits.of(ctx.config))]
    if STATE_KEY in ctx.state:
        middlewares.append(auth_middleware(ctx.state[STATE_KEY]))
    app = web.Application(middlewares=middlewares, client_max_size=64 << 20)
    app[CONTEXT_KEY] = ctx
    mounted = [spec for spec in map(plugins.route_set, route_sets) if spec.listen is None]
    for spec in mounted:
        spec.register(app, attrs.evolve(ctx, options=ctx.config.plugin_options(spec)))
    openapi.mount(app, mounted)
    return app

