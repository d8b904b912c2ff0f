"""Small record appends queued on one chunk go as one mutation (chunkserver/appends.py): every
record still lands whole, at the offset its append returned, on every replica, never across a
chunk's end; and queued records really share mutations."""

from __future__ import annotations

import asyncio
import random
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from hercules_core.client import connect
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import GFS, MiB, file_handles, replica_contents

APPENDERS, EACH = 16, 40
CHUNKS = ("chunk1", "chunk2", "chunk3")


def counter(url: str, name: str) -> float:
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def test_queued_appends_share_mutations_and_each_lands_whole_within_one_chunk(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, settings=GFS) as c:  # 1 MiB chunks: many chunk ends fall inside a batch
        found: dict[int, bytes] = {}

        async def appender(n: int) -> None:
            rng = random.Random(n)
            client = await connect(c.master_addr)
            try:
                for i in range(EACH):
                    data = f"<{n}:{i}>".encode() + rng.randbytes(rng.randrange(1000, 60_000))
                    offset = await client.append("/log", data)
                    assert offset not in found
                    found[offset] = data
            finally:
                await client.close()

        async def main() -> tuple[bytes, dict[int, dict[str, bytes]]]:
            client = await connect(c.master_addr)
            try:
                await client.create("/log")
                await asyncio.gather(*(appender(n) for n in range(APPENDERS)))
                content = await client.read("/log")
                replicas = {h: await replica_contents(client, h) for h in await file_handles(client, "/log")}
                return content, replicas
            finally:
                await client.close()

        content, replicas = asyncio.run(main())
        assert len(found) == APPENDERS * EACH
        for offset, data in found.items():
            assert content[offset:offset + len(data)] == data, f"record at {offset} is not what was appended"
            assert offset % MiB + len(data) <= MiB, f"record at {offset} crosses a chunk's end"
        spans = sorted((o, o + len(d)) for o, d in found.items())
        assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:])), "records overlap"
        assert len(replicas) >= 20
        for handle, contents in replicas.items():
            assert len(contents) == 3 and len(set(contents.values())) == 1, f"replicas of chunk {handle} differ"

        records = sum(counter(c.metrics_url(n), "hercules_chunkserver_appended_records_total") for n in CHUNKS)
        mutations = sum(counter(c.metrics_url(n), "hercules_chunkserver_append_mutations_total") for n in CHUNKS)
        assert records >= APPENDERS * EACH
        assert mutations < records / 2, f"{records} records took {mutations} mutations: queued appends went one by one"
