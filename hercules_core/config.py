"""Configuration: one attrs class, filled from flags > environment > TOML file > defaults.

The seed's variables (``SERVER_TYPE``, ``SERVER_ADDRESS``, ``MASTER_ADDR``, ``ROOT_DIR``,
``LOG_LEVEL``, ``GATEWAY_ADDR``) work as written; every other setting has a
``HERCULES_<NAME>`` variable. A bad value fails at start-up naming its source.

Plugins own their settings (``SettingSpec`` on their descriptors): the file holds them in a
table per area and plugin, the environment in ``HERCULES_<AREA>_<PLUGIN>_<NAME>``::

    [chunk_store]
    use = "zstd"          # the same as a top-level chunk_store = "zstd"

    [chunk_store.zstd]
    level = 9             # or HERCULES_CHUNK_STORE_ZSTD_LEVEL=9

The area key holds either the selection (a string, or a list for ``routes``) or such a table,
since TOML cannot give one key both. Plugin tables are kept raw here and checked against the
plugin's declared settings when the role is assembled (``Config.plugin_options``).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs

from hercules_core.addresses import Address
from hercules_core.errors import ConfigError, InvalidArgument
from hercules_core.plugins.types import SPEC_AREAS, SettingSpec, is_setting_value, setting_env_name

PluginSpec = Any  # one of the descriptors in ``SPEC_AREAS`` (each has ``name`` and ``settings``)

ROLES = ("master", "chunkserver", "gateway")
SERVER_TYPES = {"master_server": "master", "chunk_server": "chunkserver", "gateway_server": "gateway"}
LOG_LEVELS = ("debug", "info", "warn", "warning", "error")
DEFAULT_PORTS = {"master": 9090, "chunkserver": 8081, "gateway": 8089}
METRICS_PORT_OFFSET = 1000  # a master's or chunkserver's /metrics port, unless HERCULES_METRICS_ADDR says
MiB = 1 << 20
# The largest file (and so the largest offset + length) any role accepts: 1 PiB. Far beyond one
# cluster's disks, it keeps chunk indexes small and every size exact in JSON (below 2**53).
MAX_FILE_SIZE = 1 << 50


def check_file_end(end: int, what: str) -> None:
    """Refuse (``InvalidArgument``) what would make a file end past ``MAX_FILE_SIZE``."""
    if end > MAX_FILE_SIZE:
        raise InvalidArgument(f"{what} would end at byte {end}, past the maximum file size ({MAX_FILE_SIZE} bytes)")


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


LOG_FORMATS = ("text", "json")


def _log_format(value: str) -> str:
    value = value.lower()
    if value not in LOG_FORMATS:
        raise ValueError("expected text or json")
    return value


def _metrics_addr(value: str | None) -> str | None:
    """``off``, or where the master's or a chunkserver's metrics listener binds (``host:port``)."""
    if value in (None, ""):
        return None
    if value.lower() == "off":
        return "off"
    Address.parse(value, default_host="0.0.0.0")
    return value


def _names(value: list[str] | str) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return [v.strip() for v in items if v.strip()]


@attrs.define(kw_only=True)
class Config:
    role: str | None = attrs.field(default=None, converter=_role)
    address: str | None = attrs.field(default=None, converter=_address)
    # What a chunkserver tells the master (and so clients) to dial, when not where it binds
    # (a container behind published ports); a bare host keeps the bound port.
    advertise_addr: str | None = None
    master_addr: str = attrs.field(default="127.0.0.1:9090", converter=_address)
    gateway_addr: str = attrs.field(default="8089", converter=_address)
    root_dir: str | None = None
    log_level: str = attrs.field(default="info", converter=_log_level)
    log_format: str = attrs.field(default="text", converter=_log_format)  # json: one object per line
    # The master's and a chunkserver's /metrics listener: unset means the role's port + 1000.
    metrics_addr: str | None = attrs.field(default=None, converter=_metrics_addr)
    # Every native-protocol connection proves knowledge of it (transport_tcp's handshake); unset:
    # no handshake. Never shown in a repr; the transport reads it itself (``cluster_secret``).
    cluster_secret: str = attrs.field(default="", repr=False)
    transport: str = "tcp"
    chunk_store: str = "fs"
    placement: str = "spread"
    metadata_store: str = "sqlite"
    routes: list[str] = attrs.field(factory=lambda: ["rest-v1", "dashboard"], converter=_names)
    chunk_size: int = attrs.field(default=64 * MiB, validator=_positive)
    replication: int = attrs.field(default=3, validator=_positive)
    lease_seconds: float = attrs.field(default=60.0, validator=_positive)
    heartbeat_interval: float = attrs.field(default=2.0, validator=_positive)
    dead_after: float = attrs.field(default=5.0, validator=_positive)  # phi detector's acceptable pause
    phi_threshold: float = attrs.field(default=8.0, validator=_positive)
    trash_grace: float = attrs.field(default=86400.0, validator=_positive)
    # Packed small files (docs/consistency.md): files up to this size (and a quarter chunk) uploaded
    # whole are records in shared pack chunks (default 1 MiB; 0 turns packing off); a sealed pack
    # whose garbage reaches this fraction is compacted.
    pack_threshold: int = attrs.field(default=1024 * 1024, validator=attrs.validators.ge(0))
    pack_garbage: float = attrs.field(default=0.5, validator=_positive)
    # Packs open at once. Small records queued on one open pack go to its replicas as one mutation,
    # so one lane serves a small cluster best; more spread the appends over more primaries.
    pack_lanes: int = attrs.field(default=1, validator=_positive)
    # Leases on cached entries (docs/consistency.md, "Cached entries"): how long a holder's session
    # lasts unrenewed, so the longest a mutation waits for a silent holder (0: no entry is leased).
    entry_lease: float = attrs.field(default=3.0, validator=attrs.validators.ge(0))
    upload_timeout: float = attrs.field(default=86400.0, validator=_positive)  # abandoned uploads go after this
    max_concurrent_copies: int = attrs.field(default=4, validator=_positive)
    rebalance_spread: float = attrs.field(default=0.10, validator=_positive)
    rebalance_interval: float = attrs.field(default=5.0, validator=_positive)
    scrub_rate: int = attrs.field(default=8 * MiB, validator=_positive)  # bytes/s each chunkserver verifies
    scrub_interval: float = attrs.field(default=3600.0, validator=_positive)  # a full pass at most this often
    full_report_every: int = attrs.field(default=30, validator=_positive)  # heartbeats between full reports
    capacity_bytes: int = 0
    max_frame_data: int = attrs.field(default=16 * MiB, validator=_positive)
    # Freed memory each process keeps for reuse (heap.py); 0 leaves malloc's defaults.
    heap_keep: int = attrs.field(default=32 * MiB, validator=attrs.validators.ge(0))
    # Native-protocol limits (docs/security.md, "Limits"): connections a master or chunkserver
    # serves in all and per client host, requests answered at once per connection, how long a
    # peer may stay silent or take over one frame, and the memory and time pushed data may hold.
    max_connections: int = attrs.field(default=4096, validator=_positive)
    max_connections_per_address: int = attrs.field(default=1024, validator=_positive)
    max_in_flight_per_connection: int = attrs.field(default=256, validator=_positive)
    idle_timeout: float = attrs.field(default=600.0, validator=_positive)
    frame_timeout: float = attrs.field(default=60.0, validator=_positive)
    push_budget: int = attrs.field(default=256 * MiB, validator=_positive)
    push_ttl: float = attrs.field(default=30.0, validator=_positive)
    gateway_max_inflight: int = attrs.field(default=32, validator=_positive)  # transfers streaming at once
    gateway_entry_cache: int = attrs.field(default=10_000, validator=attrs.validators.ge(0))  # leased entries kept
    # Gateway security (docs/security.md): credentials (unset: no authentication), HTTPS, HTTP limits.
    auth_file: str | None = None  # TOML principals; re-read on SIGHUP
    tls_cert: str | None = None  # PEM certificate chain; with tls_key the gateway serves HTTPS only
    tls_key: str | None = None
    http_max_body: int = attrs.field(default=1 * MiB, validator=_positive)  # a JSON (non-streaming) body: 413
    http_max_header: int = attrs.field(default=64 << 10, validator=_positive)  # one header line: 431
    http_max_url: int = attrs.field(default=64 << 10, validator=_positive)  # the request target: 414
    http_max_path_depth: int = attrs.field(default=512, validator=_positive)  # path segments: 400
    http_max_connections_per_client: int = attrs.field(default=1024, validator=_positive)  # per address: 429
    http_head_timeout: float = attrs.field(default=30.0, validator=_positive)  # to send a request's head
    http_idle_timeout: float = attrs.field(default=300.0, validator=_positive)  # keep-alive between requests
    http_body_timeout: float = attrs.field(default=120.0, validator=_positive)  # between two pieces of a body
    http_write_timeout: float = attrs.field(default=120.0, validator=_positive)  # a client reading a response
    # Not a setting of its own (no flag, no variable): where plugins' settings come from.
    plugin_sources: PluginSources = attrs.field(factory=lambda: PluginSources(), metadata={"sources": True})

    # --- derived values ------------------------------------------------------------

    def server_address(self) -> Address:
        """Where this master or chunkserver is reached (and, for IPs, listens)."""
        role = self.role or "master"
        default = f"127.0.0.1:{DEFAULT_PORTS[role]}"
        return Address.parse(self.address or default)

    def metrics_address(self) -> Address | None:
        """Where the master or a chunkserver serves ``/metrics`` (``None``: off). Unset, the
        role's own port + 1000 on the same host (10090, 9081...: no clash in ``make run`` or compose)."""
        if self.metrics_addr == "off":
            return None
        if self.metrics_addr is not None:
            return Address.parse(self.metrics_addr, default_host="0.0.0.0")
        server = self.server_address()
        if server.port + METRICS_PORT_OFFSET > 65535:
            return None
        return Address(server.host, server.port + METRICS_PORT_OFFSET)

    def gateway_address(self) -> Address:
        return Address.parse(self.gateway_addr, default_host="0.0.0.0")

    def data_dir(self) -> Path:
        return Path(self.root_dir or f"./data/{self.role or 'master'}")

    def plugin_options(self, spec: PluginSpec) -> dict[str, Any]:
        """The values of ``spec.settings``; ``ConfigError`` naming the setting and its source."""
        return self.plugin_sources.resolve(SPEC_AREAS[type(spec)], spec.name, spec.settings)

    def store_options(self, spec: PluginSpec) -> dict[str, Any]:
        """A chunk store's options: its own settings, and the core's capacity limit if one is set."""
        options = self.plugin_options(spec)
        if self.capacity_bytes > 0:  # 0 means: what the file system has
            options["capacity_bytes"] = self.capacity_bytes
        return options


@attrs.frozen
class PluginSources:
    """Where plugins' settings come from: the file's plugin tables and ``HERCULES_*`` variables."""

    tables: dict[str, dict[str, dict[str, Any]]] = attrs.field(factory=dict)  # area -> plugin -> table
    environ: dict[str, str] = attrs.field(factory=dict)
    file: str | None = None

    def resolve(self, area: str, plugin: str, settings: tuple[SettingSpec, ...]) -> dict[str, Any]:
        """Each setting from its variable (or an alias), else the plugin's table, else its default."""
        table = dict(self.tables.get(area, {}).get(plugin, {}))
        where = f"{self.file} [{area}.{plugin}]"
        unknown = sorted(set(table) - {s.name for s in settings})
        if unknown:
            known = ", ".join(s.name for s in settings) or "none"
            raise ConfigError(f"{where}: unknown settings {', '.join(unknown)} (known: {known})")
        values: dict[str, Any] = {}
        for setting in settings:
            names = (setting_env_name(area, plugin, setting.name), *setting.env_aliases)
            variable = next((n for n in names if n in self.environ), None)
            if variable is not None:
                source, raw = f"environment variable {variable}", self.environ[variable]
            elif setting.name in table:
                source, raw = f"{where} {setting.name}", table[setting.name]
            else:
                values[setting.name] = setting.default
                continue
            try:
                values[setting.name] = parse_setting(setting, raw)
            except ValueError as exc:
                raise ConfigError(f"{source}={raw!r}: {exc}") from None
        return values


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_setting(setting: SettingSpec, raw: Any) -> Any:
    """``raw`` (text from the environment, or a TOML value) as the setting's type, else ``ValueError``."""
    type_ = setting.type
    value = raw
    if isinstance(raw, str) and type_ is not str:
        text = raw.strip().lower()
        try:
            if type_ is bool:
                if text not in _TRUE + _FALSE:
                    raise ValueError
                value = text in _TRUE
            else:
                value = _coerce(raw, type_)
        except ValueError:
            raise ValueError(f"expected {_EXPECTED[type_]}") from None
    if not is_setting_value(type_, value):
        raise ValueError(f"expected {_EXPECTED[type_]}")
    value = float(value) if type_ is float else value
    if setting.choices and value not in setting.choices:
        raise ValueError(f"expected one of {', '.join(map(str, setting.choices))}")
    return value


_EXPECTED = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}


def plugin_options(spec: PluginSpec, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A plugin's settings without a ``Config`` at hand (a transport, dialled by any client):
    from this process's environment and the ``HERCULES_CONFIG`` file, if one is named."""
    environ = os.environ if environ is None else environ
    file = environ.get("HERCULES_CONFIG")
    sources = PluginSources(_plugin_tables(_read_file(file), file)[1] if file else {}, dict(environ), file)
    return sources.resolve(SPEC_AREAS[type(spec)], spec.name, spec.settings)


def cluster_secret(environ: Mapping[str, str] | None = None) -> bytes:
    """``HERCULES_CLUSTER_SECRET``, else ``cluster_secret`` in the ``HERCULES_CONFIG`` file, as
    bytes (empty: none). For transports, which dial without a ``Config`` (as ``plugin_options``)."""
    environ = os.environ if environ is None else environ
    value = environ.get(env_name("cluster_secret"))
    if value is None and environ.get("HERCULES_CONFIG"):
        value = str(_read_file(environ["HERCULES_CONFIG"]).get("cluster_secret", ""))
    return (value or "").encode()


def export_for_transports(config: Config) -> None:
    """Make this process's transports (which read only the environment and ``HERCULES_CONFIG``)
    see what a role's ``config`` says: its file given by ``--config``, a secret given as a flag.
    Without this, a secret in a ``--config`` file would silently leave the role unprotected."""
    if config.plugin_sources.file:
        os.environ["HERCULES_CONFIG"] = config.plugin_sources.file
    if config.cluster_secret:
        os.environ[env_name("cluster_secret")] = config.cluster_secret


PLUGIN_AREAS = tuple(SPEC_AREAS.values())
FIELDS = {a.name: a for a in attrs.fields(Config) if not a.metadata.get("sources")}
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
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    if file:
        from_file, tables = _plugin_tables(_read_file(file), file)
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
    config = _converter.structure(values, Config)
    config.plugin_sources = PluginSources(tables, {k: v for k, v in environ.items() if k.startswith("HERCULES_")},
                                          str(file) if file else None)
    return config


def _read_file(file: str | Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(file).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {file}: {exc}") from None


def _plugin_tables(from_file: dict[str, Any], file: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split the file into core settings (an area table's ``use`` is its selection) and plugin tables."""
    core = dict(from_file)
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    for area in PLUGIN_AREAS:
        if not isinstance(core.get(area), dict):
            continue
        table = dict(core.pop(area))
        if "use" in table:
            core[area] = table.pop("use")
        for plugin, settings in table.items():
            if not isinstance(settings, dict):
                raise ConfigError(f"config file {file}: [{area}] {plugin}: expected use = <name> "
                                  f"or a table [{area}.{plugin}] of that plugin's settings")
            tables.setdefault(area, {})[plugin] = settings
    return core, tables


def _coerce(raw: Any, type_: Any) -> Any:
    if type_ in ("int", int) and isinstance(raw, str):
        if raw.strip().lower().startswith("0x"):
            return int(raw.replace("_", ""), 0)
        try:
            return parse_size(raw)
        except ValueError:
            raise ValueError("expected a whole number (a size may carry a unit, e.g. 64MiB)") from None
    if type_ in ("float", float) and isinstance(raw, str):
        return float(raw)
    if type_ in ("list[str]", list[str]) and isinstance(raw, str):  # HERCULES_ROUTES=rest-v1,s3
        return _names(raw)
    return raw


_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
          "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}
_SIZE = re.compile(r"\s*(\d[\d_]*)\s*([a-z]*)\s*")


def parse_size(raw: str) -> int:
    """Bytes from ``65536``, ``64MiB``, ``4k`` or ``1g`` (binary units: ``MB`` is read as MiB);
    ``ValueError`` naming the text otherwise. The one size parser, for config and command lines."""
    match = _SIZE.fullmatch(raw.lower())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"not a size: {raw!r} (use e.g. 4096, 4KiB, 64MiB, 1GiB)")
    return int(match.group(1).replace("_", "")) * _UNITS[match.group(2)]


def _explain(exc: Exception, type_: Any) -> str:
    text = str(exc)
    if "invalid literal" in text or "could not convert" in text:
        return f"expected {'a whole number' if type_ in ('int', int) else 'a number'}"
    return text
