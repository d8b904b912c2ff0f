"""``hercules backup`` and ``hercules restore``, for whichever metadata store config names.

The core knows nothing of a store's files: each metadata-store plugin may provide
``backup`` and ``restore`` on its ``MetadataStoreSpec`` (the built-in ``sqlite`` store
does, see ``hercules_core/builtin/metadata_sqlite/backup.py``), and these functions call
them with the same ``MetadataContext`` the master opens the store with. A store without
them gets a clear error instead of a copy of the wrong files.
"""

from __future__ import annotations

from pathlib import Path

from hercules_core.chunkstore.fileio import write_atomic
from hercules_core.config import Config
from hercules_core.errors import ConfigError
from hercules_core.plugins import make_plugin_manager
from hercules_core.plugins.types import MetadataContext, MetadataStoreSpec


def configured_store(config: Config) -> tuple[MetadataStoreSpec, MetadataContext]:
    """The metadata store config names, and the context the master opens it with."""
    spec = make_plugin_manager().metadata_store(config.metadata_store)
    return spec, MetadataContext(config.data_dir(), config.plugin_options(spec))


async def backup(spec: MetadataStoreSpec, ctx: MetadataContext, out: Path) -> int:
    """A consistent copy of the store's metadata in ``out`` (a master may be running); its size."""
    if spec.backup is None:
        raise ConfigError(f"metadata store {spec.name!r} cannot be backed up by hercules: its plugin provides "
                          f"no backup (MetadataStoreSpec.backup); use the store's own tools")
    return await spec.backup(ctx, Path(out))


async def restore(spec: MetadataStoreSpec, ctx: MetadataContext, archive: Path, force: bool = False) -> None:
    """Install a copy ``backup`` made as the metadata of a stopped master."""
    if spec.restore is None:
        raise ConfigError(f"metadata store {spec.name!r} cannot be restored by hercules: its plugin provides "
                          f"no restore (MetadataStoreSpec.restore); use the store's own tools")
    await spec.restore(ctx, Path(archive), force)
    # The next master start adopts replica versions newer than the restored metadata (only then).
    from hercules_core.master.reports import RESTORED_MARKER

    write_atomic(ctx.root_dir / RESTORED_MARKER, b"")
