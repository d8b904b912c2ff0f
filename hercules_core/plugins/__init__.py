"""The plugin core: hook specs, descriptor types and the plugin manager facade.

``API_VERSION`` is the plugin API this core provides; a plugin module that sets
``HERCULES_API`` to another one is refused at loading (see ``types.API_VERSION``).
"""

from hercules_core.plugins.manager import PluginManager, make_plugin_manager
from hercules_core.plugins.types import API_VERSION, SettingSpec, hookimpl

__all__ = ["API_VERSION", "PluginManager", "SettingSpec", "hookimpl", "make_plugin_manager"]
