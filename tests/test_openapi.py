"""The OpenAPI description is true of the live gateway: schemathesis sends what it allows and fails
on any 5xx, any status, content type, header or body the description does not list, or a crash."""

from __future__ import annotations

import copy
import json
from urllib.parse import quote

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hercules_core import __version__
from hercules_core.builtin.rest_v1 import register
from hercules_core.config import Config
from hercules_core.errors import PluginError
from hercules_core.gateway.app import build_app
from hercules_core.gateway.openapi import merge
from hercules_core.plugins.manager import make_plugin_manager
from hercules_core.plugins.types import GatewayContext, RouteSetSpec
from hercules_core.testing.cluster import LocalCluster
from hercules_core.testing.routes_contract import RouteSetContract
from tests.helpers import Http

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


# The description as the gateway builds it (its default route sets and what it mounts itself); the gateway
# serves the same document, which test_description_served_and_rendered checks.
DOCUMENT = merge([make_plugin_manager(strict=True).route_set(name) for name in Config().routes], __version__)
schema = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT))  # it resolves references in place


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_gateway_answers_as_described(case: schemathesis.Case, cluster: LocalCluster) -> None:
    case.call_and_validate(base_url=cluster.gateway_url, checks=CHECKS, timeout=60)


negative = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT))
negative.config.generation.update(modes=[GenerationMode.NEGATIVE])


@negative.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_gateway_refuses_what_the_description_does_not_allow_as_described(
        case: schemathesis.Case, cluster: LocalCluster) -> None:
    """Requests outside the description: a documented status (a 4xx) with an ``Error`` body, never a 5xx."""
    case.call_and_validate(base_url=cluster.gateway_url, checks=CHECKS, timeout=60)


def test_stateful_links(cluster: LocalCluster) -> None:
    """Follow the description's links (create → fileinfo, delete; chunk handle → servers)."""
    schema.config.update(base_url=cluster.gateway_url)

    class Links(schema.as_state_machine()):  # type: ignore[misc]
        def validate_response(self, response, case, additional_checks=None, **kwargs):  # noqa: ANN001, ANN201
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs or None)

    Links.run(settings=settings(max_examples=10, stateful_step_count=6, deadline=None,
                                suppress_health_check=list(HealthCheck)))


def test_description_served_and_rendered(gw: Http) -> None:
    status, doc = gw.json("GET", "/api/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert doc == DOCUMENT
    assert {"/api/v1/list", "/api/v1/files/{path}", "/api/v1/openapi.json"} <= set(doc["paths"])
    status, headers, page = gw.request("GET", "/api/v1/docs")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"openapi.json" in page


def test_every_route_is_described_and_every_description_routed() -> None:
    app = build_app(GatewayContext(client=None, config=Config()), make_plugin_manager(strict=True),  # type: ignore[arg-type]
                    Config().routes)
    routed = {(r.method.lower(), r.resource.canonical.replace("{path:.+}", "{path}"))
              for r in app.router.routes() if r.method != "HEAD" or "files" in r.resource.canonical}
    described = {(method, path) for path, item in DOCUMENT["paths"].items() for method in item if method != "parameters"}
    assert routed == described


def test_longest_legal_path_in_a_query_answers_json(gw: Http) -> None:
    """Regression: a 4096-byte path, percent-encoded past aiohttp's 8190-byte request line, got a
    plain-text 400 from the HTTP parser instead of the handler's answer."""
    path = "".join("/" + "é" * 100 for _ in range(20))  # 20 names of 200 bytes: 4020 bytes, 12 KiB encoded
    status, headers, body = gw.request("GET", "/api/v1/fileinfo?path=" + quote(path))
    assert (status, headers["content-type"]) == (404, "application/json; charset=utf-8")
    assert json.loads(body)["error"]["code"] == "not_found"


def _fragment(path: str) -> dict:
    return {"paths": {path: {"get": {"responses": {"200": {"description": "ok"}}}}}}


def test_route_sets_contribute_paths_and_clashes_fail() -> None:
    rest = RouteSetSpec(name="rest-v1", register=register, openapi=lambda: _fragment("/api/v1/list"))
    hello = RouteSetSpec(name="hello", register=register, openapi=lambda: _fragment("/hello"))
    quiet = RouteSetSpec(name="quiet", register=register)
    assert {"/api/v1/list", "/hello"} <= set(merge([rest, hello, quiet], "1")["paths"])
    clash = RouteSetSpec(name="clash", register=register, openapi=lambda: _fragment("/hello"))
    with pytest.raises(PluginError, match="'clash' describes /hello"):
        merge([hello, clash], "1")


def test_route_set_contract_catches_a_described_path_the_set_does_not_route() -> None:
    def hello(app, ctx) -> None:  # noqa: ANN001
        async def answer(request):  # noqa: ANN001, ANN202
            return web.json_response({})
        app.router.add_get("/hello", answer)

    contract = RouteSetContract()
    contract.test_openapi_fragment_describes_only_its_own_routes(
        RouteSetSpec(name="hello", register=hello, openapi=lambda: _fragment("/hello")))
    with pytest.raises(AssertionError, match=r"described but not routed by 'hello': \[\('GET', '/nope'\)\]"):
        contract.test_openapi_fragment_describes_only_its_own_routes(
            RouteSetSpec(name="hello", register=hello, openapi=lambda: _fragment("/nope")))
