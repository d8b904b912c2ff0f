"""What every S3 handler shares: the cluster client, the settings and the transfer limit."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs

from hercules_s3.access import KeyRing


@attrs.define
class S3Context:
    client: Any  # hercules_core.client.Client
    keys: KeyRing  # neither settings nor principals: every request is accepted unsigned
    region: str
    domains: tuple[str, ...]  # virtual-host style: bucket.<domain>
    transfers: asyncio.Semaphore  # uploads and downloads moving data at once (the gateway's limit)
