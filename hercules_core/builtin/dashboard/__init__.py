"""Route set ``dashboard``: a web view of the cluster and its files at ``/ui`` (``/`` redirects there).

Plain HTML, CSS and JS from this package's ``static/`` folder, no build step and no CDN; the page
does everything through the REST API (``rest-v1``), so it shows nothing the API does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from typing import Any

from aiohttp import web

from hercules_core.plugins import hookimpl
from hercules_core.plugins.types import GatewayContext, RouteSetSpec

STATIC = resources.files(__package__).joinpath("static")
ASSETS = {"app.js": "application/javascript", "style.css": "text/css"}


def register(app: web.Application, ctx: GatewayContext) -> None:
    index = STATIC.joinpath("index.html").read_text(encoding="utf-8")
    assets = {name: STATIC.joinpath(name).read_text(encoding="utf-8") for name in ASSETS}

    async def root(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ui")

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=index, content_type="text/html", headers={"Cache-Control": "no-cache"})

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in assets:
            raise web.HTTPNotFound(text=f"no asset {name!r}")
        return web.Response(text=assets[name], content_type=ASSETS[name], headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", root)
    app.router.add_get("/ui", page)
    app.router.add_get("/ui/static/{name:.+}", asset)


def openapi() -> dict[str, Any]:
    html = {"200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}}
    return {"paths": {
        "/": {"get": {"summary": "Redirects to /ui", "operationId": "root",
                      "responses": {"302": {"description": "to /ui"}}}},
        "/ui": {"get": {"summary": "The dashboard", "operationId": "dashboard", "responses": html}},
        "/ui/static/{name}": {"get": {
            "summary": "The dashboard's script and style sheet", "operationId": "dashboard_asset",
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "the asset", "content": {t: {"schema": {"type": "string"}}
                                                                for t in ASSETS.values()}},
                "404": {"description": "no such asset", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Error"}}}}}}},
    }}


@hookimpl
def hercules_gateway_routes() -> Iterator[RouteSetSpec]:
    yield RouteSetSpec(name="dashboard", register=register, openapi=openapi,
                       description="web dashboard at /ui: cluster, file browser, chunks of a file")
