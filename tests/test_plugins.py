"""The plugin core: hook specs, guarded loading, selection by name, listing."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hercules_core.errors import PluginError
from hercules_core.plugins import hookspecs
from hercules_core.plugins.manager import AREAS, make_plugin_manager

MEMORY_STORE = """
from contextlib import asynccontextmanager
from hercules_core.plugins import hookimpl
from hercules_core.plugins.types import ChunkStoreSpec

@asynccontextmanager
async def open_store(ctx):
    yield {}

@hookimpl
def hercules_chunk_stores():
    yield ChunkStoreSpec(name="memory", open=open_store, description="test store")
"""


def test_every_hook_is_documented_and_typed() -> None:
    hooks = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("hercules_")]
    assert sorted(hooks) == sorted(hook for hook, _ in AREAS.values())
    for name in hooks:
        fn = getattr(hookspecs, name)
        doc = inspect.getdoc(fn) or ""
        assert "Role and phase" in doc and "Returns" in doc and "Example" in doc, name
        assert inspect.signature(fn).return_annotation != inspect.Signature.empty, name


def test_every_hook_is_exercised_by_a_test() -> None:
    """Each area has a test that selects an implementation by name through the manager."""
    from pathlib import Path

    tests = "".join(p.read_text() for p in Path(__file__).parent.rglob("test_*.py"))
    facade = {"transport": "transport", "chunk_store": "chunk_store", "placement": "placement",
              "routes": "route_set", "metadata_store": "metadata_store", "cli_command": "cli_commands"}
    assert set(facade) == set(AREAS)
    for area, method in facade.items():
        assert f".{method}(" in tests, f"no test selects a {area} by name"


def test_builtin_and_first_party_plugins_are_found_through_entry_points() -> None:
    pm = make_plugin_manager(strict=True)
    assert pm.names("transport") == ["faults", "tcp"]
    assert {"fs", "zstd"} <= set(pm.names("chunk_store"))
    assert pm.names("placement") == ["spread"]
    assert pm.names("routes") == ["dashboard", "rest-v1", "s3"]
    assert pm.names("metadata_store") == ["sqlite"]
    rows = {r.name: r for r in pm.list_plugins()}
    assert rows["transport_tcp"].distribution == "hercules-transport-tcp"
    assert rows["transport_tcp"].hooks == ["hercules_transports"]
    assert rows["store_zstd"].contributes == {"chunk_store": ["zstd"]}
    assert rows["placement_spread"].distribution == "hercules"


def test_unknown_name_lists_what_is_installed() -> None:
    pm = make_plugin_manager()
    with pytest.raises(PluginError) as err:
        pm.chunk_store("s3")
    assert "unknown chunk store 's3'" in str(err.value)
    assert "fs" in str(err.value) and "zstd" in str(err.value)


def test_third_party_plugin_is_selectable_by_name(fake_dist, no_leftover_modules) -> None:
    fake_dist("thirdparty-memory", "memory_store", "thirdparty_memory", MEMORY_STORE)
    pm = make_plugin_manager(strict=True)
    assert pm.chunk_store("memory").description == "test store"
    row = next(r for r in pm.list_plugins() if r.name == "memory_store")
    assert (row.distribution, row.version, row.status) == ("thirdparty-memory", "1.0", "active")


def test_broken_plugin_is_reported_by_name_and_others_still_load(fake_dist, no_leftover_modules) -> None:
    fake_dist("thirdparty-broken", "broken", "thirdparty_broken", "raise ImportError('needs libfoo')\n")
    pm = make_plugin_manager()
    row = next(r for r in pm.list_plugins() if r.name == "broken")
    assert row.status == "failed" and row.distribution == "thirdparty-broken"
    assert "ImportError: needs libfoo" in row.error
    assert pm.transport("tcp").name == "tcp"
    with pytest.raises(PluginError, match="failed to load: broken"):
        pm.chunk_store("nope")


def test_strict_mode_fails_fast_on_a_broken_plugin(fake_dist, no_leftover_modules) -> None:
    fake_dist("thirdparty-broken", "broken", "thirdparty_broken2", "1/0\n")
    with pytest.raises(PluginError, match="'broken' from 'thirdparty-broken' failed to load: ZeroDivisionError"):
        make_plugin_manager(strict=True)


def test_two_providers_of_one_name_is_an_error_naming_both(fake_dist, no_leftover_modules) -> None:
    fake_dist("thirdparty-a", "mem_a", "thirdparty_mem_a", MEMORY_STORE)
    fake_dist("thirdparty-b", "mem_b", "thirdparty_mem_b", MEMORY_STORE)
    pm = make_plugin_manager()
    with pytest.raises(PluginError, match="'memory' is provided by both plugin 'mem_a' and 'mem_b'"):
        pm.chunk_store("memory")


def test_block_and_allow_lists() -> None:
    pm = make_plugin_manager(block=["store_zstd"])
    assert "zstd" not in pm.names("chunk_store")
    assert next(r for r in pm.list_plugins() if r.name == "store_zstd").status == "blocked"
    only = make_plugin_manager(allow=["transport_tcp"])
    assert only.names("transport") == ["tcp"] and only.names("chunk_store") == []


def test_registering_after_assembly_raises() -> None:
    pm = make_plugin_manager()
    pm.freeze()
    with pytest.raises(PluginError, match="already assembled"):
        pm.register(object(), "late")


def test_misspelled_hook_is_caught_at_registration() -> None:
    from hercules_core.plugins import hookimpl

    class Typo:
        @hookimpl
        def hercules_chunk_store(self):  # missing "s"
            return []

    pm = make_plugin_manager(load_entrypoints=False)
    with pytest.raises(Exception, match="hercules_chunk_store"):
        pm.register(Typo(), "typo")


def test_plugins_command_json() -> None:
    out = subprocess.run([sys.executable, "-m", "hercules_core", "plugins", "--json"], check=True,
                         capture_output=True, text=True).stdout
    rows = {r["name"]: r for r in json.loads(out)}
    for name in ("transport_tcp", "store_fs", "store_zstd", "placement_spread", "rest_v1"):
        assert rows[name]["status"] == "active", rows[name]
        assert rows[name]["version"] and rows[name]["hooks"]
    text = subprocess.run([sys.executable, "-m", "hercules_core", "plugins"], check=True,
                          capture_output=True, text=True).stdout
    assert "store_zstd  [active]  hercules-store-zstd 0.1.0" in text


HELLO_ROUTES = """
from aiohttp import web
from hercules_core.plugins import hookimpl
from hercules_core.plugins.types import RouteSetSpec, SettingSpec

def register(app, ctx):
    async def hello(request):
        return web.json_response({"hello": ctx.state["who"]})

    async def greet(request):
        return web.json_response({"greeting": ctx.options["greeting"]})

    app.router.add_get("/hello", hello)
    app.router.add_get("/greet", greet)

@hookimpl
def hercules_gateway_routes():
    yield RouteSetSpec(name="hello", register=register, settings=(SettingSpec("greeting", str, "hi"),))
"""


async def test_third_party_route_set_is_mounted_beside_rest_v1(fake_dist, no_leftover_modules) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from hercules_core.gateway.app import build_app
    from hercules_core.plugins.types import GatewayContext

    fake_dist("thirdparty-hello", "hello_routes", "thirdparty_hello", HELLO_ROUTES)
    pm = make_plugin_manager(strict=True)
    assert pm.route_set("hello").name == "hello"
    from hercules_core.config import Config

    app = build_app(GatewayContext(client=None, config=Config(), state={"who": "world"}), pm, ["rest-v1", "hello"])
    async with TestClient(TestServer(app)) as http:
        resp = await http.get("/hello")
        assert resp.status == 200 and await resp.json() == {"hello": "world"}
        resp = await http.get("/api/v1/nope")
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    with pytest.raises(PluginError, match="unknown routes 'graphql'; installed: dashboard, hello, rest-v1"):
        build_app(GatewayContext(client=None, config=Config()), pm, ["graphql"])


# --- plugin API version, settings, --check -------------------------------------------------

SETTINGS_STORE = """
from contextlib import asynccontextmanager
from hercules_core.plugins import hookimpl
from hercules_core.plugins.types import ChunkStoreSpec, SettingSpec

HERCULES_API = {api}

@asynccontextmanager
async def open_store(ctx):
    yield ctx.options

@hookimpl
def hercules_chunk_stores():
    yield ChunkStoreSpec(name="memory", open={open}, settings=(
        SettingSpec("max_mib", int, 64, help="RAM to use, MiB"),))
"""


def test_a_plugin_built_for_another_api_is_refused_naming_its_distribution(fake_dist, no_leftover_modules) -> None:
    from hercules_core.plugins import API_VERSION

    fake_dist("thirdparty-future", "future_store", "thirdparty_future",
              SETTINGS_STORE.format(api=API_VERSION + 1, open="open_store"), version="9.0")
    row = next(r for r in make_plugin_manager().list_plugins() if r.name == "future_store")
    assert row.status == "failed"
    assert f"thirdparty-future 9.0 is built for plugin API {API_VERSION + 1}" in row.error
    assert f"this Hercules provides plugin API {API_VERSION}" in row.error
    with pytest.raises(PluginError, match="'future_store' from 'thirdparty-future' failed to load"):
        make_plugin_manager(strict=True)


def test_a_plugin_for_this_api_loads_and_its_settings_reach_its_factory(fake_dist, no_leftover_modules) -> None:
    import asyncio

    from hercules_core.config import load_config
    from hercules_core.plugins.types import StoreContext

    fake_dist("thirdparty-mem", "mem_store", "thirdparty_mem_api",
              SETTINGS_STORE.format(api="(1, 2)", open="open_store"))
    pm = make_plugin_manager(strict=True)
    spec = pm.chunk_store("memory")
    config = load_config({}, {"HERCULES_CHUNK_STORE_MEMORY_MAX_MIB": "128"})

    async def options() -> dict:
        async with spec.open(StoreContext(Path("."), config.store_options(spec))) as opts:
            return opts

    assert asyncio.run(options()) == {"max_mib": 128}
    row = next(r for r in pm.list_plugins(config) if r.name == "mem_store")
    (setting,) = row.settings
    assert (setting.name, setting.type, setting.default, setting.current, setting.env) == (
        "max_mib", "int", 64, 128, "HERCULES_CHUNK_STORE_MEMORY_MAX_MIB")
    assert pm.check(config) == []


def test_check_finds_malformed_descriptors_and_refused_settings(fake_dist, no_leftover_modules, tmp_path) -> None:
    from hercules_core.config import load_config

    fake_dist("thirdparty-bad", "bad_store", "thirdparty_bad_open", SETTINGS_STORE.format(api=1, open="42"))
    file = tmp_path / "hercules.toml"
    file.write_text("[chunk_store.memory]\nmax_mib = 'lots'\n\n[chunk_store.s4]\nx = 1\n")
    problems = make_plugin_manager(strict=True).check(load_config({}, {}, file))
    assert "chunk_store 'memory': open is int, not callable" in problems
    assert any("setting max_mib: " in p and "max_mib='lots': expected a whole number" in p for p in problems)
    assert any("[chunk_store.s4] names no installed chunk store (installed: fs, memory, zstd)" in p
               for p in problems), problems


def test_plugins_check_command_exits_non_zero_with_the_reason() -> None:
    run = [sys.executable, "-m", "hercules_core", "plugins", "--check"]
    ok = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    env = {"PATH": "/usr/bin", "HERCULES_CHUNK_STORE_ZSTD_LEVEL": "fast"}
    bad = subprocess.run(run, capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 1
    assert "HERCULES_CHUNK_STORE_ZSTD_LEVEL='fast': expected a whole number" in bad.stderr
    text = subprocess.run([sys.executable, "-m", "hercules_core", "plugins"], check=True, capture_output=True,
                          text=True, env={"PATH": "/usr/bin", "HERCULES_CHUNK_STORE_ZSTD_LEVEL": "9"}).stdout
    assert "setting chunk_store.zstd.level (int, default 3) = 9" in text


async def test_a_route_set_gets_its_own_settings_in_its_context(fake_dist, no_leftover_modules) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from hercules_core.config import load_config
    from hercules_core.gateway.app import build_app
    from hercules_core.plugins.types import GatewayContext

    fake_dist("thirdparty-hello", "hello_routes", "thirdparty_hello_options", HELLO_ROUTES)
    pm = make_plugin_manager(strict=True)
    config = load_config({}, {"HERCULES_ROUTES_HELLO_GREETING": "hello"})
    app = build_app(GatewayContext(client=None, config=config), pm, ["rest-v1", "hello"])  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as http:
        assert await (await http.get("/greet")).json() == {"greeting": "hello"}


def test_plugins_check_command_names_a_plugin_that_fails_to_load(fake_dist, tmp_path) -> None:
    from hercules_core.plugins import API_VERSION

    fake_dist("thirdparty-old", "old_store", "thirdparty_old_cli",
              SETTINGS_STORE.format(api=API_VERSION + 1, open="open_store"), version="0.1")
    env = {"PATH": "/usr/bin", "PYTHONPATH": str(tmp_path / "site")}
    proc = subprocess.run([sys.executable, "-m", "hercules_core", "plugins", "--check"], capture_output=True,
                          text=True, timeout=60, env=env)
    assert proc.returncode == 1
    assert "plugin 'old_store' from 'thirdparty-old' failed to load" in proc.stderr
    assert f"thirdparty-old 0.1 is built for plugin API {API_VERSION + 1}" in proc.stderr
    assert "Traceback" not in proc.stderr
