"""The client library: metadata from the master, data straight to and from chunkservers."""

from hercules_core.client.client import Client, connect
from hercules_core.client.sync import SyncClient

__all__ = ["Client", "SyncClient", "connect"]
