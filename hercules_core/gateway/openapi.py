"""The gateway's OpenAPI 3.1 description: the fragments of its route sets, merged and served.

Each mounted route set may contribute ``RouteSetSpec.openapi`` (paths and components); the
gateway serves their union at ``/api/v1/openapi.json`` and a self-contained page that renders
it at ``/api/v1/docs`` (no CDN, no vendored bundle).
"""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any

from aiohttp import web

from hercules_core import __version__
from hercules_core.errors import PluginError
from hercules_core.plugins.types import RouteSetSpec

OPENAPI_PATH = "/api/v1/openapi.json"
DOCS_PATH = "/api/v1/docs"
_OWN_PATHS = {  # this module's own two routes, described like any other
    OPENAPI_PATH: {"get": {"summary": "This description", "operationId": "openapi",
                           "responses": {"200": {"description": "OpenAPI 3.1",
                                                 "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    DOCS_PATH: {"get": {"summary": "This description as a page", "operationId": "docs",
                        "responses": {"200": {"description": "HTML",
                                              "content": {"text/html": {"schema": {"type": "string"}}}}}}},
}


def merge(specs: list[RouteSetSpec], version: str) -> dict[str, Any]:
    """One document from every set's fragment; two sets describing one path or schema is an error."""
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Hercules gateway", "version": version,
                 "description": "REST API of a Hercules gateway. Errors are "
                                "`{\"error\": {\"code\", \"message\"}}` with a fitting status."},
        "servers": [{"url": "/"}],
        "paths": copy.deepcopy(_OWN_PATHS),
        "components": {},
    }
    for spec in specs:
        if spec.openapi is None:
            continue
        fragment = spec.openapi()
        for path, item in fragment.get("paths", {}).items():
            if path in doc["paths"]:
                raise PluginError(f"route set {spec.name!r} describes {path}, which another set describes")
            doc["paths"][path] = item
        for section, entries in fragment.get("components", {}).items():
            target = doc["components"].setdefault(section, {})
            for name, value in entries.items():
                if name in target and target[name] != value:
                    raise PluginError(f"route set {spec.name!r} redefines components/{section}/{name}")
                target[name] = value
    return doc


def mount(app: web.Application, specs: list[RouteSetSpec]) -> None:
    """Serve the merged description of ``specs`` (built once, at assembly) and its page."""
    document = merge(specs, __version__)
    page = resources.files(__package__).joinpath("openapi_docs.html").read_text(encoding="utf-8")

    async def openapi_json(request: web.Request) -> web.Response:
        return web.json_response(document)

    async def docs(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app.router.add_get(OPENAPI_PATH, openapi_json)
    app.router.add_get(DOCS_PATH, docs)
