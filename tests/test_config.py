"""Config from flags, environment and a TOML file, with precedence and clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
