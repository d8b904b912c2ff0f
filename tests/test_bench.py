"""Smoke test of ``hercules bench --quick``: it runs, every read verifies, the JSON is complete.

Timings are never asserted: only that each workload produced positive numbers and verified.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RESULTS = ["large_gateway_rf3", "large_gateway_rf1", "large_client_rf3", "large_client_rf1",
           "small_gateway", "small_client", "s3_large", "s3_small", "medium_gateway", "medium_client", "metadata", "append",
           "store_fs_json", "store_fs_random", "store_zstd_json", "store_zstd_random"]
CEILINGS = {"disk_stream": "MBps", "disk_sync_ops": "ops_per_s", "loopback_socket": "MBps",
            "loopback_asyncio": "MBps", "round_trips": "per_s", "thread_hop": "per_s", "page_cache_write": "MBps"}


def _hercules() -> list[str]:
    script = shutil.which("hercules", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "hercules_core"]


@pytest.mark.timeout(330)
def test_bench_quick_writes_complete_verified_json(tmp_path: Path) -> None:
    # --time-limit only widens the run's own guard so a slow CI machine cannot cut it short
    proc = subprocess.run([*_hercules(), "bench", "--quick", "--json", "out.json", "--time-limit", "240"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    assert "all reads verified" in proc.stdout
    # the S3 rows are printed beside the REST ones, in the same units
    assert re.search(r"large object, S3, rf=3 +write +[\d,.]+ +MB/s", proc.stdout), proc.stdout
    assert re.search(r"4 KiB objects, S3, 8 clients +GetObject +[\d,.]+ +files/s", proc.stdout), proc.stdout
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["ok"] is True and doc["errors"] == [] and doc["skipped"] == {}

    for name, key in CEILINGS.items():
        assert doc["ceilings"][name][key] > 0, name

    results = doc["results"]
    assert set(RESULTS) <= set(results), sorted(set(RESULTS) - set(results))
    for name in RESULTS:
        entry = results[name]
        assert entry["verified"] is True, name
        if "write" in entry:
            for phase in ("write", "read"):
                assert all(entry[phase][k] > 0 for k in entry[phase] if k in ("MBps", "ops_per_s", "ops")), \
                    (name, phase, entry[phase])
    meta = results["metadata"]
    for op in ("mkdir", "create", "stat", "list", "rename"):
        assert meta[op]["ops"] > 0 and meta[op]["ops_per_s"] > 0 and meta[op]["p50_ms"] > 0, op
    assert results["append"]["records"] > 0 and results["append"]["records_per_s"] > 0
    for name in ("store_fs_json", "store_zstd_json", "store_fs_random", "store_zstd_random"):
        assert results[name]["disk_bytes"] > 0, name
    for name in ("large_gateway_rf3", "large_gateway_rf1"):
        assert results[name]["gateway_rss"]["write_peak_kib"] > 0, name

    # every table row (each workload's metrics against ceilings and targets) has a positive value
    rows = doc["rows"]
    assert {r["workload"] for r in rows} == set(RESULTS)
    assert all(r["value"] > 0 for r in rows), [r for r in rows if not r["value"] > 0]


def test_bench_s3_signer_signs_as_the_gateway_verifies() -> None:
    sigv4 = pytest.importorskip("hercules_s3.sigv4")
    from hercules_bench.s3 import Signer

    now = datetime.datetime(2026, 12, 2, 3, 0, 0, tzinfo=datetime.timezone.utc)
    url = "http://127.0.0.1:8333/bench-abc/s3/small/000001"
    headers = {"host": "127.0.0.1:8333", **Signer("AK", "SK").headers("PUT", url, now)}
    signed = sigv4.verify("PUT", "/bench-abc/s3/small/000001", "", headers, {"AK": sigv4.Keys("AK", "SK")}.get,
                          now=now.timestamp())
    assert signed.payload_hash == sigv4.UNSIGNED
    with pytest.raises(sigv4.S3Error):
        sigv4.verify("PUT", "/bench-abc/s3/small/000001", "", headers,
                     {"AK": sigv4.Keys("AK", "other")}.get, now=now.timestamp())
