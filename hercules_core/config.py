"""Configuration: one attrs class, filled from flags > environment > TOML file > defaults.

The seed's variables (``SERVER_TYPE``, ``SERVER_ADDRESS``, ``MASTER_ADDR``, ``ROOT_DIR``,
``LOG_LEVEL``, ``GATEWAY_ADDR``) work as written; every other setting has a
``HERCULES_<NAME>`` variable. A bad value fails at start-up naming its source.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs

from hercules_core.addresses import Address
from hercules_core.errors import ConfigError

ROLES = ("master", "chunkserver", "gateway")
SERVER_TYPES = {"master_server": "master", "chunk_server": "chunkserver", "gateway_server": "gateway"}
LOG_LEVELS = ("debug", "info", "warn", "warning", "error")
DEFAULT_PORTS = {"master": 9090, "chunkserver": 8081, "gateway": 8089}
MiB = 1 << 20


def _positive(inst: Any, attribute: attrs.Attribute, value: float) -> None:
    if value <= 0:
        raise ValueError("must be greater than 0")


def _role(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    value = SERVER_TYPES.get(value, value)
    if value not in ROLES:
        raise ValueError(f"expected one of {', '.join(SERVER_TYPES)} (or {', '.join(ROLES)})")
    return value


def _address(value: str | None) -> str | None:
    if value in (None, ""):
        return None
    Address.parse(value)
    return value


def _log_level(value: str) -> str:
    value = value.lower()
    if value not in LOG_LEVELS:
        raise ValueError("expected one of debug, info, warn, error")
    return "warning" if value == "warn" else value


def _names(value: list[str] | str) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return [v.strip() for v in items if v.strip()]


@attrs.define(kw_only=True)
class Config:
    role: str | None = attrs.field(default=None, converter=_role)
    address: str | None = attrs.field(default=None, converter=_address)
    master_addr: str = attrs.field(default="127.0.0.1:9090", converter=_address)
    gateway_addr: str = attrs.field(default="8089", converter=_address)
    root_dir: str | None = None
    log_level: str = attrs.field(default="info", converter=_log_level)
    transport: str = "tcp"
    chunk_store: str = "fs"
    placement: str = "spread"
    metadata_store: str = "sqlite"
    routes: list[str] = attrs.field(factory=lambda: ["rest-v1"], converter=_names)
    chunk_size: int = attrs.field(default=64 * MiB, validator=_positive)
    replication: int = attrs.field(default=3, validator=_positive)
    lease_seconds: float = attrs.field(default=60.0, validator=_positive)
    heartbeat_interval: float = attrs.field(default=2.0, validator=_positive)
    dead_after: float = attrs.field(default=5.0, validator=_positive)  # phi detector's acceptable pause
    phi_threshold: float = attrs.field(default=8.0, validator=_positive)
    trash_grace: float = attrs.field(default=86400.0, validator=_positive)
    upload_timeout: float = attrs.field(default=86400.0, validator=_positive)  # abandoned uploads go after this
    max_concurrent_copies: int = attrs.field(default=4, validator=_positive)
    rebalance_spread: float = attrs.field(default=0.10, validator=_positive)
    rebalance_interval: float = attrs.field(default=5.0, validator=_positive)
    scrub_rate: int = attrs.field(default=8 * MiB, validator=_positive)  # bytes/s each chunkserver verifies
    scrub_interval: float = attrs.field(default=3600.0, validator=_positive)  # a full pass at most this often
    full_report_every: int = attrs.field(default=30, validator=_positive)  # heartbeats between full reports
    zstd_level: int = 3
    capacity_bytes: int = 0
    max_frame_data: int = attrs.field(default=16 * MiB, validator=_positive)
    gateway_max_inflight: int = attrs.field(default=32, validator=_positive)  # transfers streaming at once

    # --- derived values ------------------------------------------------------------

    def server_address(self) -> Address:
        """Where this master or chunkserver is reached (and, for IPs, listens)."""
        role = self.role or "master"
        default = f"127.0.0.1:{DEFAULT_PORTS[role]}"
        return Address.parse(self.address or default)

    def gateway_address(self) -> Address:
        return Address.parse(self.gateway_addr, default_host="0.0.0.0")

    def data_dir(self) -> Path:
        return Path(self.root_dir or f"./data/{self.role or 'master'}")

    def store_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"zstd_level": self.zstd_level}
        if self.capacity_bytes > 0:  # 0 means: what the file system has
            options["capacity_bytes"] = self.capacity_bytes
        return options


FIELDS = {a.name: a for a in attrs.fields(Config)}
SEED_ENV = {
    "role": "SERVER_TYPE",
    "address": "SERVER_ADDRESS",
    "master_addr": "MASTER_ADDR",
    "root_dir": "ROOT_DIR",
    "log_level": "LOG_LEVEL",
    "gateway_addr": "GATEWAY_ADDR",
}


def env_name(field: str) -> str:
    return SEED_ENV.get(field, f"HERCULES_{field.upper()}")


_converter = cattrs.Converter()


def load_config(flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None,
                file: str | Path | None = None) -> Config:
    """Merge the sources; raise ``ConfigError`` naming the bad setting and what was expected."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    environ = os.environ if environ is None else environ
    file = file or environ.get("HERCULES_CONFIG")
    from_file: dict[str, Any] = {}
    if file:
        try:
            from_file = tomllib.loads(Path(file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {file}: {exc}") from None
        unknown = sorted(set(from_file) - set(FIELDS))
        if unknown:
            raise ConfigError(f"config file {file}: unknown settings {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, field in FIELDS.items():
        if name in flags:
            source, raw = f"--{name.replace('_', '-')}", flags[name]
        elif env_name(name) in environ:
            source, raw = f"environment variable {env_name(name)}", environ[env_name(name)]
        elif name in from_file:
            source, raw = f"{file}: {name}", from_file[name]
        else:
            continue
        try:
            value = _coerce(raw, field.type)
            values[name] = value
            Config(**{name: value})  # run this field's converter and validator alone
        except (ValueError, TypeError, cattrs.BaseValidationError) as exc:
            raise ConfigError(f"{source}={raw!r}: {_explain(exc, field.type)}") from None
    return _converter.structure(values, Config)


def _coerce(raw: Any, type_: Any) -> Any:
    if type_ in ("int", int) and isinstance(raw, str):
        return int(raw.replace("_", ""), 0) if raw.strip().lower().startswith("0x") else _int_with_unit(raw)
    if type_ in ("float", float) and isinstance(raw, str):
        return float(raw)
    return raw


_UNITS = {"k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30}


def _int_with_unit(raw: str) -> int:
    """``65536``, ``64MiB`` and ``1g`` are all accepted for sizes."""
    text = raw.strip().lower().replace("_", "")
    for unit in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(unit) and text[: -len(unit)].strip().isdigit():
            return int(text[: -len(unit)]) * _UNITS[unit]
    return int(text)


def _explain(exc: Exception, type_: Any) -> str:
    text = str(exc)
    if "invalid literal" in text or "could not convert" in text:
        return f"expected {'a whole number' if type_ in ('int', int) else 'a number'}"
    return text
