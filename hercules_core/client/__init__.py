"""The client library: metadata from the master, data straight to and from chunkservers.

- ``client``: ``Client`` (async) and ``connect``; the data path (reads, writes, appends, uploads);
- ``namespace``: the namespace calls, one master request each;
- ``retry``: ``RetryPolicy``, the one retry loop every call goes through;
- ``locations``: ``LocationCache``, write leases, read locations and replicas to avoid;
- ``writer``: ``WindowedWriter``, the one windowed writer of ``write``, ``write_stream`` and ``upload``;
- ``pieces``: any byte source regrouped into the pieces the data path moves;
- ``sync``: ``SyncClient``, every async call as a blocking one; ``upload_stream``: a streaming
  upload fed by blocking ``write`` calls (what the fsspec plugin writes files through).
"""

from hercules_core.client.client import Client, connect
from hercules_core.client.sync import SyncClient
from hercules_core.client.upload_stream import UploadStream

__all__ = ["Client", "SyncClient", "UploadStream", "connect"]
