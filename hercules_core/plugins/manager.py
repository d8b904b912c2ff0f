"""Plugin loading (guarded per entry point), selection by name, and listing.

Core code asks this facade for ``plugins.chunk_store("zstd")``; it never calls
``pm.hook`` itself, and hooks run once per area, at assembly.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import re
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import pluggy

from hercules_core.errors import HerculesError, PluginError
from hercules_core.plugins import hookspecs
from hercules_core.plugins.types import (
    API_VERSION,
    PROJECT,
    ChunkStoreSpec,
    CliCommandSpec,
    MetadataStoreSpec,
    PlacementSpec,
    RouteSetSpec,
    SettingSpec,
    TransportSpec,
    setting_env_name,
)

if TYPE_CHECKING:
    from hercules_core.config import Config

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = PROJECT
Spec = TypeVar("Spec", TransportSpec, ChunkStoreSpec, PlacementSpec, RouteSetSpec, MetadataStoreSpec,
               CliCommandSpec)

AREAS: dict[str, tuple[str, type]] = {
    "transport": ("hercules_transports", TransportSpec),
    "chunk_store": ("hercules_chunk_stores", ChunkStoreSpec),
    "placement": ("hercules_placement_policies", PlacementSpec),
    "routes": ("hercules_gateway_routes", RouteSetSpec),
    "metadata_store": ("hercules_metadata_stores", MetadataStoreSpec),
    "cli_command": ("hercules_cli_commands", CliCommandSpec),
}


@attrs.define
class SettingInfo:
    """One declared setting of a contribution, as ``hercules plugins`` shows it."""

    area: str
    contribution: str  # the descriptor's name: "zstd"
    name: str
    type: str
    default: Any
    help: str
    env: str
    current: Any = None  # the value config gives it now (``default`` when nothing sets it)
    error: str | None = None  # why config's value for it is refused


@attrs.define
class PluginInfo:
    """One row of ``hercules plugins``."""

    name: str
    distribution: str | None
    version: str | None
    status: str  # active | blocked | failed
    hooks: list[str] = attrs.field(factory=list)
    contributes: dict[str, list[str]] = attrs.field(factory=dict)
    error: str | None = None
    settings: list[SettingInfo] = attrs.field(factory=list)


class PluginManager:
    """A typed facade over one ``pluggy.PluginManager``; build one per process."""

    def __init__(self, *, strict: bool = False) -> None:
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._strict = strict
        self._info: dict[str, PluginInfo] = {}
        self._cache: dict[str, dict[str, Any]] = {}
        self._frozen = False

    # -- registration -----------------------------------------------------------

    def register(self, plugin: ModuleType | object, name: str, *, distribution: str | None = None,
                 version: str | None = None) -> None:
        if self._frozen:
            raise PluginError(f"cannot register plugin {name!r}: the role is already assembled")
        if name in self._info and self._info[name].status == "active":
            existing = self._info[name]
            if existing.distribution != distribution:
                raise PluginError(
                    f"plugin name {name!r} is provided by both {existing.distribution!r} "
                    f"and {distribution!r}; uninstall one")
            return
        self._pm.register(plugin, name=name)
        self._pm.check_pending()
        hooks = sorted(h.name for h in self._pm.get_hookcallers(plugin) or [])
        self._info[name] = PluginInfo(name, distribution, version, "active", hooks)
        self._cache.clear()

    def load_entrypoints(self, allow: Iterable[str] | None = None, block: Iterable[str] = ()) -> None:
        """Load every ``hercules`` entry point, each guarded: a broken one is recorded, not fatal."""
        allowed = set(allow) if allow is not None else None
        blocked = set(block)
        seen: set[tuple[str, str]] = set()
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else None
            version = ep.dist.version if ep.dist else None
            key = (dist or "", ep.name)
            if key in seen:  # the same distribution seen twice (editable installs, lib64 links)
                continue
            seen.add(key)
            if ep.name in blocked or (allowed is not None and ep.name not in allowed):
                self._info.setdefault(ep.name, PluginInfo(ep.name, dist, version, "blocked"))
                continue
            try:
                module = ep.load()
                _check_api(module, f"{dist or ep.name} {version or ''}".strip())
            except Exception as exc:  # noqa: BLE001 - one broken plugin must not crash the host
                error = f"{type(exc).__name__}: {exc}"
                log.warning("plugin %s (%s) failed to load: %s", ep.name, dist, error)
                if self._strict:
                    raise PluginError(f"plugin {ep.name!r} from {dist!r} failed to load: {error}") from exc
                self._info[ep.name] = PluginInfo(ep.name, dist, version, "failed", error=error)
                continue
            self.register(module, ep.name, distribution=dist, version=version)

    def load_providing(self, area: str, name: str) -> None:
        """Load entry points one at a time, likeliest first (an entry-point name containing
        ``name``), until one contributes ``name`` to ``area``: a client dialling ``tcp`` imports
        the TCP transport, not every store and route set. An unknown name tries them all."""
        candidates = sorted({ep.name for ep in md.entry_points(group=ENTRY_POINT_GROUP)},
                            key=lambda ep_name: (name not in ep_name, ep_name))
        for ep_name in candidates:
            if name in self._specs(area):
                return
            self.load_entrypoints(allow=[ep_name])

    def freeze(self) -> None:
        """After assembly, registering raises: the running role's plugins are fixed."""
        self._frozen = True

    # -- selection --------------------------------------------------------------

    def _specs(self, area: str) -> dict[str, Any]:
        if area not in self._cache:
            hook_name, spec_type = AREAS[area]
            found: dict[str, Any] = {}
            owners: dict[str, str] = {}
            for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
                try:
                    specs = list(impl.function() or ())
                except Exception as exc:  # noqa: BLE001
                    self._mark_failed(impl.plugin_name, f"{hook_name}: {type(exc).__name__}: {exc}")
                    continue
                for spec in specs:
                    if not isinstance(spec, spec_type):
                        raise PluginError(f"plugin {impl.plugin_name!r}: {hook_name} returned "
                                          f"{type(spec).__name__}, expected {spec_type.__name__}")
                    if spec.name in found and owners[spec.name] != impl.plugin_name:
                        raise PluginError(f"{area} {spec.name!r} is provided by both plugin "
                                          f"{owners[spec.name]!r} and {impl.plugin_name!r}")
                    found[spec.name] = spec
                    owners[spec.name] = impl.plugin_name
                    info = self._info.get(impl.plugin_name)
                    if info is not None:
                        names = info.contributes.setdefault(area, [])
                        if spec.name not in names:
                            names.append(spec.name)
                            info.settings += [_setting_info(area, spec, s) for s in getattr(spec, "settings", ())]
            self._cache[area] = found
        return self._cache[area]

    def _mark_failed(self, plugin_name: str, error: str) -> None:
        if self._strict:
            raise PluginError(f"plugin {plugin_name!r} failed: {error}")
        info = self._info.get(plugin_name)
        if info is not None:
            info.status, info.error = "failed", error

    def names(self, area: str) -> list[str]:
        return sorted(self._specs(area))

    def _select(self, area: str, name: str) -> Any:
        specs = self._specs(area)
        if name not in specs:
            installed = ", ".join(sorted(specs)) or "none"
            failed = [f"{i.name} ({i.error})" for i in self._info.values() if i.status == "failed"]
            hint = f"; plugins that failed to load: {'; '.join(failed)}" if failed else ""
            raise PluginError(f"unknown {area.replace('_', ' ')} {name!r}; installed: {installed}{hint}")
        return specs[name]

    def transport(self, name: str) -> TransportSpec:
        return self._select("transport", name)

    def chunk_store(self, name: str) -> ChunkStoreSpec:
        return self._select("chunk_store", name)

    def placement(self, name: str) -> PlacementSpec:
        return self._select("placement", name)

    def route_set(self, name: str) -> RouteSetSpec:
        return self._select("routes", name)

    def metadata_store(self, name: str) -> MetadataStoreSpec:
        return self._select("metadata_store", name)

    def cli_commands(self) -> dict[str, CliCommandSpec]:
        """Every plugin subcommand by name: the CLI mounts them all beside its own."""
        return dict(self._specs("cli_command"))

    # -- listing ----------------------------------------------------------------

    def list_plugins(self, config: Config | None = None) -> list[PluginInfo]:
        """Every plugin seen; with ``config``, each setting's current value (or why it is refused)."""
        for area in AREAS:
            self._specs(area)
        rows = sorted(self._info.values(), key=lambda i: i.name)
        if config is not None:
            for row in rows:
                for setting in row.settings:
                    spec = self._specs(setting.area)[setting.contribution]
                    try:
                        setting.current, setting.error = config.plugin_options(spec)[setting.name], None
                    except HerculesError as exc:
                        setting.current, setting.error = None, exc.message
        return rows

    def check(self, config: Config | None = None) -> list[str]:
        """Problems of the installed set: failed plugins, malformed descriptors, refused settings."""
        problems = [f"plugin {i.name!r} from {i.distribution!r} failed: {i.error}"
                    for i in self.list_plugins(config) if i.status == "failed"]
        for area in AREAS:
            for spec in self._specs(area).values():
                problems += [f"{area} {spec.name!r}: {p}" for p in descriptor_problems(spec)]
        for row in self._info.values():
            problems += [f"{s.area} {s.contribution!r} setting {s.name}: {s.error}" for s in row.settings if s.error]
        if config is not None:
            sources = config.plugin_sources
            for area, plugins in sorted(sources.tables.items()):
                problems += [f"{sources.file}: [{area}.{name}] names no installed {area.replace('_', ' ')} "
                             f"(installed: {', '.join(self.names(area)) or 'none'})"
                             for name in sorted(set(plugins) - set(self.names(area)))]
        return problems


def _check_api(module: ModuleType, distribution: str) -> None:
    """Refuse a module built for another plugin API (``HERCULES_API``, an int or a collection)."""
    wanted = getattr(module, "HERCULES_API", None)
    if wanted is None:
        return
    versions = set(wanted) if isinstance(wanted, list | tuple | set | frozenset | range) else {wanted}
    if API_VERSION not in versions:
        shown = ", ".join(str(v) for v in sorted(versions, key=str))
        raise PluginError(f"{distribution} is built for plugin API {shown}; "
                          f"this Hercules provides plugin API {API_VERSION}: install a release of it made for that")


_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*\Z")


def descriptor_problems(spec: Any) -> list[str]:
    """A descriptor's basic checks: a valid name, every factory field callable, unique settings."""
    problems = []
    if not isinstance(spec.name, str) or not _NAME.match(spec.name):
        problems.append(f"name {spec.name!r} is not lowercase letters, digits, '-', '_' or '.'")
    for field in attrs.fields(type(spec)):
        value = getattr(spec, field.name)
        if "Callable" in str(field.type) and value is not None and not callable(value):
            problems.append(f"{field.name} is {type(value).__name__}, not callable")
    names = [s.name for s in getattr(spec, "settings", ())]
    problems += [f"setting {n!r} is declared twice" for n in sorted({n for n in names if names.count(n) > 1})]
    return problems


def _setting_info(area: str, spec: Any, setting: SettingSpec) -> SettingInfo:
    return SettingInfo(area, spec.name, setting.name, setting.type.__name__, setting.default, setting.help,
                       setting_env_name(area, spec.name, setting.name), current=setting.default)


def make_plugin_manager(*, load_entrypoints: bool = True, allow: Iterable[str] | None = None,
                        block: Iterable[str] = (), strict: bool = False) -> PluginManager:
    """A fresh manager: each process (and each test) builds its own."""
    pm = PluginManager(strict=strict)
    if load_entrypoints:
        pm.load_entrypoints(allow=allow, block=block)
    return pm



__all__ = ["PluginInfo", "PluginManager", "SettingInfo", "descriptor_problems", "make_plugin_manager"]
