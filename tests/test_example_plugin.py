"""The example third-party plugin (examples/rack_placement) works from a fresh install.

A plain virtual environment (no system or project site-packages) gets the core, the tcp
transport, the fs store and the example, each pip-installed from a copy of its directory (so
no build leftovers land in the working tree, and nothing stale from it is packaged). Then, in
that environment: the example's own tests pass, ``hercules plugins`` lists it, and a cluster
whose config file names ``placement = "rack"`` puts every chunk's replicas on distinct racks.
Nothing in the core imports the example; the project's own .venv never has it installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST, Http

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "rack_placement"
LEFTOVERS = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".pytest_cache", "*.pyc")
MiB = 1 << 20


def copy_sources(dest: Path) -> list[Path]:
    """The four distributions' sources, copied to ``dest``; returns their directories."""
    core = dest / "hercules"
    core.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, core / name)
    shutil.copytree(ROOT / "hercules_core", core / "hercules_core", ignore=LEFTOVERS)
    dirs = [core]
    for source in (ROOT / "plugins" / "transport_tcp", ROOT / "plugins" / "store_fs", EXAMPLE):
        dirs.append(dest / source.name)
        shutil.copytree(source, dirs[-1], ignore=LEFTOVERS)
    return dirs


def run(args: list[str | Path], cwd: Path, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
           and not k.startswith("HERCULES_")}
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new plain venv with the core, tcp, fs and the example installed from copies (pip's cache
    keeps this to seconds after the first run); returns its ``python``."""
    work = tmp_path_factory.mktemp("fresh")
    sources = copy_sources(work / "src")
    base = getattr(sys, "_base_executable", sys.executable)  # not the project's venv interpreter
    run([base, "-m", "venv", work / "venv"], cwd=work)
    python = work / "venv" / "bin" / "python"
    run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *sources, "pytest>=8"], cwd=work)
    return python


@pytest.mark.timeout(240)
def test_the_example_plugin_installs_and_passes_its_own_tests(fresh_venv: Path, tmp_path: Path) -> None:
    venv = fresh_venv.parent.parent
    where = run([fresh_venv, "-c", "import hercules_core, hercules_rack_placement as r; "
                 "print(hercules_core.__file__); print(r.__file__)"], cwd=tmp_path)
    assert all(Path(line).is_relative_to(venv) for line in where.split()), where  # no project files
    example_copy = venv.parent / "src" / EXAMPLE.name
    assert "passed" in run([fresh_venv, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=example_copy)
    rows = {row["name"]: row for row in json.loads(run([venv / "bin" / "hercules", "plugins", "--json"], tmp_path))}
    row = rows["rack_placement"]
    assert (row["distribution"], row["status"]) == ("hercules-rack-placement", "active")
    assert row["contributes"] == {"placement": ["rack"]}


@pytest.mark.timeout(240)
def test_a_cluster_configured_with_the_rack_policy_spreads_every_chunk_over_racks(
        fresh_venv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # ``python -m`` puts the working directory first: not the project's
    # Rebalancing off: what is checked here is where allocation puts replicas.
    cluster = LocalCluster(tmp_path / "cluster", chunkservers=4, python=str(fresh_venv),
                           settings={**FAST, "HERCULES_REBALANCE_INTERVAL": "3600"})
    racks = {cluster.chunk_addr(0): "r1", cluster.chunk_addr(1): "r1",  # two servers share r1
             cluster.chunk_addr(2): "r2", cluster.chunk_addr(3): "r3"}
    config = tmp_path / "hercules.toml"
    config.write_text('replication = 3\n\n[placement]\nuse = "rack"\n\n[placement.rack]\n'
                      f'racks = "{", ".join(f"{addr}={rack}" for addr, rack in racks.items())}"\n'
                      "strict = true\n")
    cluster.settings["HERCULES_CONFIG"] = str(config)
    with cluster:
        gw = Http(cluster.gateway_url)
        try:
            seen = []
            for n, size in enumerate([6 * MiB + 5, MiB, 3 * MiB]):
                path = f"/racks/file{n}.bin"
                status, body = gw.json("PUT", f"/api/v1/files{path}", os.urandom(size))
                assert status == 201, body
                for index in range(body["chunk_count"]):
                    status, loc = gw.json("GET", f"/api/v1/chunk/handle?path={path}&index={index}")
                    assert status == 200, loc
                    seen.append((path, index, sorted(loc["replicas"])))
        finally:
            gw.close()
    assert len(seen) == 7 + 1 + 3
    # With spread, r1's two servers would hold a chunk together about half the time; here never.
    for path, index, replicas in seen:
        assert len(replicas) == 3, (path, index, replicas)
        assert sorted(racks[r] for r in replicas) == ["r1", "r2", "r3"], (path, index, replicas)
