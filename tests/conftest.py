"""Shared fixtures: fake installed distributions for plugin tests, real clusters for end to end."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from hercules_core.client import Client, connect
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST, Http


@pytest.fixture
def fake_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Install a throw-away distribution (dist-info + module) visible to entry-point discovery."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def make(dist: str, entry: str, module: str, source: str, version: str = "1.0") -> None:
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[hercules]\n{entry} = {module}\n")
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        sys.modules.pop(module, None)

    return make


@pytest.fixture
def no_leftover_modules() -> Iterator[None]:
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("thirdparty_"):
            del sys.modules[name]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One real cluster (FAST settings) shared by a module's tests."""
    with LocalCluster(tmp_path_factory.mktemp("cluster"), settings=FAST) as c:
        yield c


@pytest.fixture
def gw(cluster: LocalCluster) -> Iterator[Http]:
    h = Http(cluster.gateway_url)
    yield h
    h.close()


@pytest.fixture
async def client(cluster: LocalCluster) -> AsyncIterator[Client]:
    """A native client of the module's cluster, closed after the test."""
    c = await connect(cluster.master_addr)
    try:
        yield c
    finally:
        await c.close()
