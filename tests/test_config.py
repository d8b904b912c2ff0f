"""Config from flags, environment and a TOML file, with precedence and clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hercules_core.chunkstore import STORE_SETTINGS
from hercules_core.config import load_config
from hercules_core.errors import ConfigError


def test_seed_environment_variables() -> None:
    config = load_config({}, {"SERVER_TYPE": "chunk_server", "SERVER_ADDRESS": "chunkserver1:8081",
                              "MASTER_ADDR": "master:9090", "ROOT_DIR": "/data/chunks", "LOG_LEVEL": "warn",
                              "GATEWAY_ADDR": "8089"})
    assert config.role == "chunkserver"
    assert str(config.server_address()) == "chunkserver1:8081"
    assert config.server_address().bind_host() == "0.0.0.0"
    assert config.master_addr == "master:9090"
    assert str(config.data_dir()) == "/data/chunks"
    assert config.log_level == "warning"
    assert str(config.gateway_address()) == "0.0.0.0:8089"


def test_gateway_addr_accepts_host_and_port() -> None:
    assert str(load_config({}, {"GATEWAY_ADDR": "127.0.0.1:18089"}).gateway_address()) == "127.0.0.1:18089"


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    file = tmp_path / "hercules.toml"
    file.write_text('chunk_store = "zstd"\nreplication = 2\nchunk_size = "4MiB"\nlease_seconds = 9\n')
    env = {"HERCULES_REPLICATION": "1", "HERCULES_CONFIG": str(file)}
    config = load_config({"lease_seconds": "3"}, env)
    assert config.chunk_store == "zstd"  # file
    assert config.replication == 1  # env beats file
    assert config.lease_seconds == 3.0  # flag beats file
    assert config.chunk_size == 4 << 20


@pytest.mark.parametrize(("env", "message"), [
    ({"SERVER_TYPE": "storage"}, "SERVER_TYPE='storage': expected one of master_server, chunk_server, gateway_server"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud': expected one of debug, info, warn, error"),
    ({"MASTER_ADDR": "master"}, "MASTER_ADDR='master': 'master' is not host:port"),
    ({"GATEWAY_ADDR": "80x"}, "GATEWAY_ADDR='80x'"),
    ({"SERVER_ADDRESS": "host:99999"}, "port must be a number from 1 to 65535"),
    ({"HERCULES_CHUNK_SIZE": "big"}, "HERCULES_CHUNK_SIZE='big': expected a whole number"),
    ({"HERCULES_REPLICATION": "0"}, "HERCULES_REPLICATION='0': must be greater than 0"),
    ({"HERCULES_LEASE_SECONDS": "soon"}, "expected a number"),
])
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config({}, env)
    assert message in str(err.value)


def test_bad_flag_and_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--replication='x'"):
        load_config({"replication": "x"}, {})
    file = tmp_path / "bad.toml"
    file.write_text("chunk_sise = 1\n")
    with pytest.raises(ConfigError, match="unknown settings chunk_sise"):
        load_config({}, {}, file)


def test_serve_rejects_bad_environment_at_start_up() -> None:
    proc = subprocess.run([sys.executable, "-m", "hercules_core", "serve"], capture_output=True, text=True,
                          env={"SERVER_TYPE": "master_server", "LOG_LEVEL": "chatty", "PATH": "/usr/bin"}, timeout=60)
    assert proc.returncode == 2
    assert "LOG_LEVEL='chatty': expected one of debug, info, warn, error" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- plugin-owned settings ----------------------------------------------------------------


def _zstd_spec():
    from hercules_core.plugins import make_plugin_manager

    return make_plugin_manager(allow=["store_zstd"], strict=True).chunk_store("zstd")


def test_plugin_settings_leave_the_core_config() -> None:
    from hercules_core.config import FIELDS

    assert not {"zstd_level", "cache_mib", "batch_max", "plugin_sources"} & set(FIELDS)


def test_a_plugin_setting_comes_from_its_variable_else_its_table_else_its_default(tmp_path: Path) -> None:
    spec = _zstd_spec()
    kit = {s.name: s.default for s in STORE_SETTINGS}  # the chunk-store kit's own, every store has them
    assert load_config({}, {}).store_options(spec) == {"level": 3, **kit}
    file = tmp_path / "hercules.toml"
    file.write_text('[chunk_store]\nuse = "zstd"\n\n[chunk_store.zstd]\nlevel = 9\n')
    config = load_config({}, {}, file)
    assert config.chunk_store == "zstd"  # the area table's `use` is the selection
    assert config.store_options(spec) == {"level": 9, **kit}
    env = {"HERCULES_CHUNK_STORE_ZSTD_LEVEL": "12", "HERCULES_CAPACITY_BYTES": "1MiB"}
    assert load_config({}, env, file).store_options(spec) == {"level": 12, **kit, "capacity_bytes": 1 << 20}
    assert load_config({}, {"HERCULES_ZSTD_LEVEL": "5"}).store_options(spec) == {"level": 5, **kit}  # the old name


@pytest.mark.parametrize(("env", "table", "message"), [
    ({"HERCULES_CHUNK_STORE_ZSTD_LEVEL": "fast"}, "",
     "environment variable HERCULES_CHUNK_STORE_ZSTD_LEVEL='fast': expected a whole number"),
    ({}, 'level = "fast"', "[chunk_store.zstd] level='fast': expected a whole number"),
    ({}, "level = 1.5", "[chunk_store.zstd] level=1.5: expected a whole number"),
    ({}, "lvl = 1", "[chunk_store.zstd]: unknown settings lvl (known: level, sidecar_cache_bytes, open_files)"),
])
def test_a_bad_plugin_setting_names_the_setting_and_its_source(tmp_path: Path, env: dict[str, str], table: str,
                                                               message: str) -> None:
    file = tmp_path / "hercules.toml"
    file.write_text(f"[chunk_store.zstd]\n{table}\n")
    config = load_config({}, env, file)
    with pytest.raises(ConfigError) as err:
        config.store_options(_zstd_spec())
    assert message in str(err.value)


def test_an_area_table_holds_use_and_plugin_tables_only(tmp_path: Path) -> None:
    file = tmp_path / "hercules.toml"
    file.write_text('[chunk_store]\nlevel = 3\n')
    with pytest.raises(ConfigError, match=r"\[chunk_store\] level: expected use = <name> or a table"):
        load_config({}, {}, file)


def test_setting_types_and_choices() -> None:
    from hercules_core.config import PluginSources
    from hercules_core.plugins.types import SettingSpec

    settings = (SettingSpec("sync", bool, True), SettingSpec("ratio", float, 0.5),
                SettingSpec("mode", str, "a", choices=("a", "b")), SettingSpec("size", int, 1))
    env = {"HERCULES_PLACEMENT_X_SYNC": "off", "HERCULES_PLACEMENT_X_RATIO": "2",
           "HERCULES_PLACEMENT_X_MODE": "b", "HERCULES_PLACEMENT_X_SIZE": "4MiB"}
    assert PluginSources(environ=env).resolve("placement", "x", settings) == {
        "sync": False, "ratio": 2.0, "mode": "b", "size": 4 << 20}
    with pytest.raises(ConfigError, match="HERCULES_PLACEMENT_X_MODE='c': expected one of a, b"):
        PluginSources(environ={"HERCULES_PLACEMENT_X_MODE": "c"}).resolve("placement", "x", settings)
    with pytest.raises(ConfigError, match="HERCULES_PLACEMENT_X_SYNC='maybe': expected true or false"):
        PluginSources(environ={"HERCULES_PLACEMENT_X_SYNC": "maybe"}).resolve("placement", "x", settings)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "Level", "type": int, "default": 1}, "must match regex"),
    ({"name": "level", "type": list, "default": []}, "type must be one of bool, int, float, str"),
    ({"name": "level", "type": int, "default": "3"}, "default '3' is not a int"),
    ({"name": "level", "type": int, "default": True}, "default True is not a int"),
    ({"name": "mode", "type": str, "default": "c", "choices": ("a", "b")}, "default 'c' is not one of"),
])
def test_a_malformed_setting_declaration_is_refused(kwargs: dict, message: str) -> None:
    from hercules_core.plugins.types import SettingSpec

    with pytest.raises((TypeError, ValueError), match=message):
        SettingSpec(**kwargs)


def test_the_zstd_level_reaches_the_store(tmp_path: Path) -> None:
    import asyncio

    from hercules_core.plugins.types import StoreContext

    spec = _zstd_spec()

    async def level() -> int:
        options = load_config({}, {"HERCULES_CHUNK_STORE_ZSTD_LEVEL": "7"}).store_options(spec)
        async with spec.open(StoreContext(tmp_path, options)) as store:
            return store.level

    assert asyncio.run(level()) == 7


def test_a_chunkserver_refuses_a_bad_plugin_setting_at_start_up(tmp_path: Path) -> None:
    from hercules_core.testing.cluster import free_port

    env = {"SERVER_TYPE": "chunk_server", "SERVER_ADDRESS": f"127.0.0.1:{free_port()}", "ROOT_DIR": str(tmp_path),
           "HERCULES_CHUNK_STORE": "zstd", "HERCULES_CHUNK_STORE_ZSTD_LEVEL": "fast", "PATH": "/usr/bin"}
    proc = subprocess.run([sys.executable, "-m", "hercules_core", "serve"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "environment variable HERCULES_CHUNK_STORE_ZSTD_LEVEL='fast': expected a whole number" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_metadata_store_settings_reach_the_store(tmp_path: Path) -> None:
    import asyncio

    from hercules_core.plugins import make_plugin_manager
    from hercules_core.plugins.types import MetadataContext

    spec = make_plugin_manager(allow=["metadata_sqlite"], strict=True).metadata_store("sqlite")
    assert load_config({}, {}).plugin_options(spec) == {"cache_mib": 32, "batch_max": 256, "check": "quick"}
    file = tmp_path / "hercules.toml"
    file.write_text("[metadata_store.sqlite]\ncache_mib = 64\nbatch_max = 16\n")
    config = load_config({}, {"HERCULES_METADATA_STORE_SQLITE_CHECK": "full"}, file)

    async def opened() -> tuple[int, int, str]:
        async with spec.open(MetadataContext(tmp_path, config.plugin_options(spec))) as store:
            return store._cache_mib, store._commits._batch_max, store._check

    assert asyncio.run(opened()) == (64, 16, "full")
    with pytest.raises(ConfigError, match="HERCULES_METADATA_STORE_SQLITE_CHECK='fast': expected one of quick, full"):
        load_config({}, {"HERCULES_METADATA_STORE_SQLITE_CHECK": "fast"}).plugin_options(spec)


def test_a_transport_reads_its_settings_without_a_config(tmp_path: Path) -> None:
    from hercules_core.config import plugin_options
    from hercules_core.plugins.types import SettingSpec, TransportSpec

    spec = TransportSpec(name="unix", connect=print, serve=print,  # type: ignore[arg-type]
                         settings=(SettingSpec("dir", str, "/run"), SettingSpec("backlog", int, 8)))
    file = tmp_path / "hercules.toml"
    file.write_text('[transport]\nuse = "unix"\n\n[transport.unix]\ndir = "/tmp/sockets"\n')
    env = {"HERCULES_CONFIG": str(file), "HERCULES_TRANSPORT_UNIX_BACKLOG": "64"}
    assert plugin_options(spec, env) == {"dir": "/tmp/sockets", "backlog": 64}
    assert plugin_options(spec, {}) == {"dir": "/run", "backlog": 8}


def test_an_alias_must_be_a_hercules_variable() -> None:
    from hercules_core.plugins.types import SettingSpec

    with pytest.raises(ValueError, match="must match regex"):
        SettingSpec("level", int, 3, env_aliases=("ZSTD_LEVEL",))
