"""Wire messages: attrs classes, each registered under a short type tag.

Bulk data never lives in these; it travels in the frame's raw data part. The messages are split
by who serves them (``master``, ``chunkserver``; ``packs`` for packed small files, ``entries`` for leases on cached entries) and all importable from here, as ``m.Name``.
"""

from typing import Any

from hercules_core.messages.chunkserver import *  # noqa: F403
from hercules_core.messages.chunkserver import __all__ as _chunkserver
from hercules_core.messages.entries import *  # noqa: F403
from hercules_core.messages.entries import __all__ as _entries
from hercules_core.messages.master import *  # noqa: F403
from hercules_core.messages.master import __all__ as _master
from hercules_core.messages.packs import *  # noqa: F403
from hercules_core.messages.packs import __all__ as _packs
from hercules_core.messages.registry import REGISTRY, message

__all__ = ["REGISTRY", "Message", "message", *_master, *_chunkserver, *_packs, *_entries]

Message = Any  # any registered message class
