"""Plugin loading (guarded per entry point), selection by name, and listing.

Core code asks this facade for ``plugins.chunk_store("zstd")``; it never calls
``pm.hook`` itself, and hooks run once per area, at assembly.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
from collections.abc import Iterable
from types import ModuleType
from typing import Any, TypeVar

import attrs
import pluggy

from hercules_core.errors import PluginError
from hercules_core.plugins import hookspecs
from hercules_core.plugins.types import (
    PROJECT,
    ChunkStoreSpec,
    MetadataStoreSpec,
    PlacementSpec,
    RouteSetSpec,
    TransportSpec,
)

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = PROJECT
Spec = TypeVar("Spec", TransportSpec, ChunkStoreSpec, PlacementSpec, RouteSetSpec, MetadataStoreSpec)

AREAS: dict[str, tuple[str, type]] = {
    "transport": ("hercules_transports", TransportSpec),
    "chunk_store": ("hercules_chunk_stores", ChunkStoreSpec),
    "placement": ("hercules_placement_policies", PlacementSpec),
    "routes": ("hercules_gateway_routes", RouteSetSpec),
    "metadata_store": ("hercules_metadata_stores", MetadataStoreSpec),
}


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
            except Exception as exc:  # noqa: BLE001 - one broken plugin must not crash the host
                error = f"{type(exc).__name__}: {exc}"
                log.warning("plugin %s (%s) failed to load: %s", ep.name, dist, error)
                if self._strict:
                    raise PluginError(f"plugin {ep.name!r} from {dist!r} failed to load: {error}") from exc
                self._info[ep.name] = PluginInfo(ep.name, dist, version, "failed", error=error)
                continue
            self.register(module, ep.name, distribution=dist, version=version)

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

    # -- listing ----------------------------------------------------------------

    def list_plugins(self) -> list[PluginInfo]:
        for area in AREAS:
            self._specs(area)
        return sorted(self._info.values(), key=lambda i: i.name)


def make_plugin_manager(*, load_entrypoints: bool = True, allow: Iterable[str] | None = None,
                        block: Iterable[str] = (), strict: bool = False) -> PluginManager:
    """A fresh manager: each process (and each test) builds its own."""
    pm = PluginManager(strict=strict)
    if load_entrypoints:
        pm.load_entrypoints(allow=allow, block=block)
    return pm



__all__ = ["PluginInfo", "PluginManager", "make_plugin_manager"]
