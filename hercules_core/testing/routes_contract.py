"""The behaviour every gateway route set must show; route-set plugins run it against themselves.

Subclass ``RouteSetContract`` in a test module under a name pytest collects (``Test...``) and
say which set to test::

    from hercules_core.plugins import make_plugin_manager
    from hercules_core.testing.routes_contract import RouteSetContract

    class TestHello(RouteSetContract):
        def route_set(self):
            return make_plugin_manager().route_set("hello")

The set is registered as the gateway registers it: on an application with the gateway's error
middleware (or, for a set with a ``listen`` address of its own, on a bare application), with a
``GatewayContext`` whose ``options`` are the set's setting defaults. Its client reaches no
master: every call on it raises ``Unavailable``. Every route the set added is then asked, with
its path parameters filled and no query or body, over real HTTP on loopback. What is checked:
registering adds routes and needs nothing but the application and the context (twice, on two
applications, works); the set's routes never clash with those of another installed set mounted
beside it; no request makes a handler crash (HTTP 500); for sets on the gateway's
application, every error answers ``{"error": {"code": ..., "message": ...}}`` as JSON; and what
the set's ``openapi`` fragment describes, it routes.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NoReturn

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hercules_core.config import Config
from hercules_core.errors import Unavailable
from hercules_core.gateway.app import CONTEXT_KEY, errors_middleware
from hercules_core.gateway.openapi import merge
from hercules_core.plugins.manager import make_plugin_manager
from hercules_core.plugins.types import GatewayContext, RouteSetSpec

_PARAMETER = re.compile(r"\{[^}]*\}")


class UnreachableClient:
    """A client whose every method raises ``Unavailable``, as when the master is down."""

    def __getattr__(self, name: str) -> Callable[..., NoReturn]:
        if name.startswith("__"):
            raise AttributeError(name)

        def unreachable(*args: Any, **kwargs: Any) -> NoReturn:
            raise Unavailable(f"client.{name}: the contract suite's client reaches no master")

        return unreachable


def context_for(spec: RouteSetSpec, client: Any = None) -> GatewayContext:
    """The context the gateway would register ``spec`` with, its settings at their defaults."""
    return GatewayContext(client=client if client is not None else UnreachableClient(), config=Config(),
                          options={setting.name: setting.default for setting in spec.settings})


def application_for(spec: RouteSetSpec, ctx: GatewayContext) -> web.Application:
    """An application as the gateway builds one for ``spec``, with ``spec`` registered on it."""
    app = web.Application(middlewares=[errors_middleware] if spec.listen is None else [])
    app[CONTEXT_KEY] = ctx
    spec.register(app, ctx)
    return app


def sample_path(canonical: str) -> str:
    """A concrete path for a route's pattern: each ``{parameter}`` becomes ``contract/x``."""
    return _PARAMETER.sub("contract/x", canonical) or "/"


class RouteSetContract:
    """Base class of the contract tests; override ``route_set``.

    Not collected itself (its name does not start with ``Test``); each subclass is.
    """

    # Paths that answer a status of their own rather than an error when the master is away
    # (``/health`` answers 503 with ``{"status": "degraded", ...}``): still JSON, still no 500.
    status_paths: frozenset[str] = frozenset()

    # -- what a subclass provides ---------------------------------------------------

    def route_set(self) -> RouteSetSpec:
        """The ``RouteSetSpec`` under test, usually ``make_plugin_manager().route_set(name)``."""
        raise NotImplementedError("subclass RouteSetContract and implement route_set()")

    # -- fixtures and helpers -----------------------------------------------------------

    @pytest.fixture
    def spec(self) -> RouteSetSpec:
        return self.route_set()

    @pytest_asyncio.fixture
    async def http(self, spec: RouteSetSpec) -> AsyncIterator[TestClient]:
        client = TestClient(TestServer(application_for(spec, context_for(spec)), host="127.0.0.1"))
        await client.start_server()
        try:
            yield client
        finally:
            await client.close()

    @staticmethod
    def requests(app: web.Application) -> Iterator[tuple[str, str]]:
        """``(method, path)`` for every route on ``app``, once each."""
        seen: set[tuple[str, str]] = set()
        for route in app.router.routes():
            info = route.resource.get_info() if route.resource is not None else {}
            canonical = route.resource.canonical if route.resource is not None else ""
            path = info.get("path") or sample_path(canonical)
            methods = ["GET", "POST", "PUT", "PATCH", "DELETE"] if route.method == "*" else [route.method]
            for method in methods:
                if (method, path) not in seen:
                    seen.add((method, path))
                    yield method, path

    # -- registering --------------------------------------------------------------------

    def test_register_adds_routes(self, spec: RouteSetSpec) -> None:
        app = application_for(spec, context_for(spec))
        assert list(self.requests(app)), f"route set {spec.name!r} registered no route"

    def test_register_twice_on_two_applications(self, spec: RouteSetSpec) -> None:
        """No state shared between registrations: a test, or a second gateway, builds its own."""
        first = application_for(spec, context_for(spec))
        second = application_for(spec, context_for(spec))
        assert sorted(self.requests(first)) == sorted(self.requests(second))

    def test_no_clash_with_the_other_installed_route_sets(self, spec: RouteSetSpec) -> None:
        plugins = make_plugin_manager()
        others = [plugins.route_set(name) for name in plugins.names("routes") if name != spec.name]
        for other in others:
            if (other.listen is None) != (spec.listen is None):
                continue  # served on another port: never on one application together
            for order in ((spec, other), (other, spec)):
                app = web.Application(middlewares=[errors_middleware])
                ctx = context_for(spec)
                app[CONTEXT_KEY] = ctx
                try:
                    for each in order:
                        each.register(app, context_for(each))
                except (RuntimeError, ValueError) as exc:
                    pytest.fail(f"route sets {order[0].name!r} and {order[1].name!r} clash: {exc}")
                mine = set(self.requests(application_for(spec, ctx)))
                theirs = set(self.requests(application_for(other, context_for(other))))
                assert not mine & theirs, f"{spec.name!r} and {other.name!r} both route {sorted(mine & theirs)}"

    # -- answering ------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_no_request_makes_a_handler_crash(self, spec: RouteSetSpec, http: TestClient) -> None:
        crashed = []
        for method, path in self.requests(http.server.app):
            async with http.request(method, path) as response:
                await response.read()
                if response.status >= 500 and response.status not in (502, 503, 504, 507):
                    crashed.append(f"{method} {path}: {response.status}")
        assert not crashed, f"handlers of {spec.name!r} failed: {crashed}"

    @pytest.mark.asyncio
    async def test_errors_answer_as_json(self, spec: RouteSetSpec, http: TestClient) -> None:
        if spec.listen is not None:
            pytest.skip(f"{spec.name!r} is served on a port of its own, in its own error format")
        wrong = []
        for method, path in self.requests(http.server.app):
            if method == "HEAD":
                continue
            async with http.request(method, path) as response:
                if response.status < 400:
                    continue
                try:
                    body = json.loads(await response.text())
                except ValueError:
                    body = None
                if path in self.status_paths:
                    ok = isinstance(body, dict)
                else:
                    error = body.get("error") if isinstance(body, dict) else None
                    ok = isinstance(error, dict) and isinstance(error.get("code"), str) \
                        and isinstance(error.get("message"), str) and bool(error["message"])
                if not ok or response.content_type != "application/json":
                    wrong.append(f"{method} {path}: {response.status} {response.content_type} {body!r:.100}")
        assert not wrong, f"errors of {spec.name!r} that are not JSON errors: {wrong}"

    @pytest.mark.asyncio
    async def test_an_unknown_method_on_its_paths_is_a_json_error(self, spec: RouteSetSpec,
                                                                  http: TestClient) -> None:
        if spec.listen is not None:
            pytest.skip(f"{spec.name!r} is served on a port of its own, in its own error format")
        routed = set(self.requests(http.server.app))
        for path in sorted({path for _, path in routed}):
            method = next((m for m in ("PATCH", "PUT", "DELETE", "POST") if (m, path) not in routed), None)
            if method is None:
                continue
            async with http.request(method, path) as response:
                assert response.status == 405, f"{method} {path}: {response.status}"
                assert response.content_type == "application/json"
                assert (await response.json())["error"]["code"]

    # -- describing ---------------------------------------------------------------------------

    def test_openapi_fragment_describes_only_its_own_routes(self, spec: RouteSetSpec) -> None:
        """What ``RouteSetSpec.openapi`` describes, the set routes (a described path it does not
        serve would send API clients to a 404); it merges into the gateway's description alone."""
        if spec.openapi is None:
            return  # undescribed routes: allowed, they are just missing from /api/v1/openapi.json
        fragment = spec.openapi()
        assert isinstance(fragment.get("paths"), dict), "the fragment needs a 'paths' object"
        merge([spec], "contract")
        routed = {(method, _PARAMETER.sub("{}", path)) for method, path in self.requests_patterns(spec)}
        described = {(method.upper(), _PARAMETER.sub("{}", path)) for path, item in fragment["paths"].items()
                     for method in item if method not in ("parameters", "summary", "description", "servers")}
        assert described <= routed, f"described but not routed by {spec.name!r}: {sorted(described - routed)}"

    @staticmethod
    def requests_patterns(spec: RouteSetSpec) -> Iterator[tuple[str, str]]:
        """``(method, canonical path)`` of every route ``spec`` registers."""
        for route in application_for(spec, context_for(spec)).router.routes():
            if route.resource is not None:
                yield route.method, route.resource.canonical


__all__ = ["RouteSetContract", "UnreachableClient", "application_for", "context_for", "sample_path"]
