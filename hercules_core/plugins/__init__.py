"""The plugin core: hook specs, descriptor types and the plugin manager facade."""

from hercules_core.plugins.manager import PluginManager, make_plugin_manager
from hercules_core.plugins.types import hookimpl

__all__ = ["PluginManager", "hookimpl", "make_plugin_manager"]
