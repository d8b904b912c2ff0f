"""The hercules:// fsspec filesystem against a real local cluster: fsspec's own abstract suite,
the behaviours pandas and pyarrow rely on, and errors as the builtin exceptions."""

from __future__ import annotations

import errno
import os
import pickle
import uuid

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from fsspec.tests.abstract import (
    AbstractCopyTests,
    AbstractFixtures,
    AbstractGetTests,
    AbstractOpenTests,
    AbstractPipeTests,
    AbstractPutTests,
)
from hercules_fsspec import HerculesFileSystem

from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):  # noqa: ANN001, ANN201
    with LocalCluster(tmp_path_factory.mktemp("fsspec"), settings=FAST) as c:
        yield c


@pytest.fixture(scope="module")
def hfs(cluster):  # noqa: ANN001, ANN201
    fs = fsspec.filesystem("hercules", master=cluster.master_addr)
    yield fs
    fs.client.close()
    HerculesFileSystem.clear_instance_cache()


@pytest.fixture
def base(hfs):  # noqa: ANN001, ANN201
    path = f"/t-{uuid.uuid4().hex[:8]}"
    hfs.makedirs(path)
    return path


class HerculesFixtures(AbstractFixtures):
    @pytest.fixture
    def fs(self, hfs):  # noqa: ANN001, ANN201
        return hfs

    @pytest.fixture
    def fs_join(self):  # noqa: ANN201
        return lambda *parts: "/".join(p.rstrip("/") for p in parts[:-1]) + "/" + parts[-1]

    @pytest.fixture
    def fs_path(self, hfs):  # noqa: ANN001, ANN201
        path = f"/abstract-{uuid.uuid4().hex[:8]}"
        hfs.makedirs(path)
        yield path
        hfs.rm(path, recursive=True)


class TestHerculesCopy(HerculesFixtures, AbstractCopyTests):
    pass


class TestHerculesGet(HerculesFixtures, AbstractGetTests):
    pass


class TestHerculesPut(HerculesFixtures, AbstractPutTests):
    pass


class TestHerculesOpen(HerculesFixtures, AbstractOpenTests):
    pass


class TestHerculesPipe(HerculesFixtures, AbstractPipeTests):
    pass


def test_entry_point_and_url_select_the_master(cluster, hfs, base):  # noqa: ANN001
    with fsspec.open(f"hercules://{cluster.master_addr}{base}/x.txt", "wb") as f:
        f.write(b"hello")
    assert hfs.cat_file(f"{base}/x.txt") == b"hello"
    fs, path = fsspec.core.url_to_fs(f"hercules://{cluster.master_addr}{base}/x.txt")
    assert isinstance(fs, HerculesFileSystem) and fs.master == cluster.master_addr and path == f"{base}/x.txt"


def test_master_from_environment(monkeypatch, cluster):  # noqa: ANN001
    monkeypatch.setenv("HERCULES_MASTER", cluster.master_addr)
    fs = HerculesFileSystem(skip_instance_cache=True)
    try:
        assert fs.master == cluster.master_addr and fs.isdir("/")
    finally:
        fs.client.close()


def test_random_access_reads_and_ranges(hfs, base):  # noqa: ANN001
    data = os.urandom(3 * (1 << 20) + 123)  # spans four 1 MiB chunks
    hfs.pipe_file(f"{base}/r", data)
    with hfs.open(f"{base}/r", "rb", block_size=64 << 10) as f:
        f.seek(2 * (1 << 20) - 10)
        assert f.read(20) == data[2 * (1 << 20) - 10:2 * (1 << 20) + 10]
        f.seek(-5, 2)
        assert f.read() == data[-5:]
    assert hfs.cat_file(f"{base}/r", start=-100) == data[-100:]
    assert hfs.cat_file(f"{base}/r", start=10, end=-10) == data[10:-10]
    got = hfs.cat_ranges([f"{base}/r"] * 3, [0, 1 << 20, len(data) - 3], [5, (1 << 20) + 7, len(data)])
    assert got == [data[:5], data[1 << 20:(1 << 20) + 7], data[-3:]]


def test_streaming_write_publishes_on_close_only(hfs, base):  # noqa: ANN001
    block = os.urandom(1 << 20)
    path = f"{base}/deep/stream.bin"
    with hfs.open(path, "wb", block_size=1 << 20) as f:
        for _ in range(5):
            f.write(block)
        assert not hfs.exists(path)  # blocks went out, but nothing is visible before close
    assert hfs.info(path)["size"] == 5 * len(block)
    assert hfs.cat_file(path, start=4 * len(block)) == block


def test_write_abandoned_by_an_exception_publishes_nothing(hfs, base):  # noqa: ANN001
    path = f"{base}/aborted.bin"
    with pytest.raises(RuntimeError):
        with hfs.open(path, "wb", block_size=1 << 20) as f:
            f.write(os.urandom(3 << 20))
            raise RuntimeError("caller failed")
    assert not hfs.exists(path)


def test_append_mode(hfs, base):  # noqa: ANN001
    hfs.pipe_file(f"{base}/a", b"one,")
    with hfs.open(f"{base}/a", "ab") as f:
        f.write(b"two")
    assert hfs.cat_file(f"{base}/a") == b"one,two"


def test_namespace_operations(hfs, base):  # noqa: ANN001
    hfs.pipe({f"{base}/d/a.csv": b"1", f"{base}/d/sub/b.csv": b"22", f"{base}/d/c.txt": b"333"})
    assert hfs.ls(f"{base}/d", detail=False) == [f"{base}/d/a.csv", f"{base}/d/c.txt", f"{base}/d/sub"]
    assert hfs.find(f"{base}/d") == [f"{base}/d/a.csv", f"{base}/d/c.txt", f"{base}/d/sub/b.csv"]
    assert hfs.glob(f"{base}/d/**/*.csv") == [f"{base}/d/a.csv", f"{base}/d/sub/b.csv"]
    assert hfs.du(f"{base}/d") == 6
    info = hfs.info(f"{base}/d/c.txt")
    assert info["type"] == "file" and info["size"] == 3
    assert hfs.created(f"{base}/d/c.txt") <= hfs.modified(f"{base}/d/c.txt")
    hfs.cp_file(f"{base}/d/c.txt", f"{base}/copy/c.txt")
    hfs.pipe_file(f"{base}/d/c.txt", b"changed")
    assert hfs.cat_file(f"{base}/copy/c.txt") == b"333"  # the copy shares chunks copy-on-write
    hfs.mv(f"{base}/d/sub", f"{base}/moved", recursive=True)
    assert hfs.cat_file(f"{base}/moved/b.csv") == b"22" and not hfs.exists(f"{base}/d/sub")
    hfs.rm(f"{base}/d", recursive=True)
    assert not hfs.exists(f"{base}/d")
    hfs.mkdir(f"{base}/e/f")
    assert hfs.isdir(f"{base}/e/f")
    hfs.rmdir(f"{base}/e/f")
    assert not hfs.exists(f"{base}/e/f")


def test_errors_are_builtin_exceptions(hfs, base):  # noqa: ANN001
    hfs.pipe_file(f"{base}/file", b"x")
    hfs.makedirs(f"{base}/dir")
    with pytest.raises(FileNotFoundError):
        hfs.info(f"{base}/missing")
    with pytest.raises(FileNotFoundError):
        hfs.cat_file(f"{base}/missing")
    with pytest.raises(FileExistsError):
        hfs.mkdir(f"{base}/dir")
    with pytest.raises(FileExistsError):
        hfs.makedirs(f"{base}/file", exist_ok=True)
    with pytest.raises(FileExistsError):
        hfs.pipe_file(f"{base}/file", b"y", mode="create")
    with pytest.raises(IsADirectoryError):
        hfs.open(f"{base}/dir", "rb")
    with pytest.raises(IsADirectoryError):
        hfs.cat_file(f"{base}/dir")
    with pytest.raises(NotADirectoryError):
        hfs.rmdir(f"{base}/file")
    with pytest.raises(NotADirectoryError):
        hfs.mkdir(f"{base}/file/sub", create_parents=False)
    with pytest.raises(OSError) as raised:
        hfs.rmdir(f"{base}")
    assert raised.value.errno == errno.ENOTEMPTY


def test_pandas_csv_roundtrip(cluster, hfs, base):  # noqa: ANN001
    frame = pd.DataFrame({"id": range(1000), "name": [f"n{i}" for i in range(1000)]})
    url = f"hercules://{cluster.master_addr}{base}/data/x.csv"
    frame.to_csv(url, index=False)
    pd.testing.assert_frame_equal(pd.read_csv(url), frame)
    same = pd.read_csv(f"hercules:///{base}/data/x.csv", storage_options={"master": cluster.master_addr})
    pd.testing.assert_frame_equal(same, frame)


def test_pyarrow_partitioned_parquet(hfs, base):  # noqa: ANN001
    table = pa.table({"year": [2024, 2024, 2025, 2025, 2026], "value": [1.0, 2.0, 3.0, 4.0, 5.0]})
    root = f"{base}/parquet"
    pq.write_to_dataset(table, root, partition_cols=["year"], filesystem=hfs)
    assert sorted(hfs.ls(root, detail=False)) == [f"{root}/year=2024", f"{root}/year=2025", f"{root}/year=2026"]
    read = ds.dataset(root, filesystem=hfs, format="parquet", partitioning="hive").to_table()
    assert sorted(read.column("value").to_pylist()) == [1.0, 2.0, 3.0, 4.0, 5.0]
    frame = pd.read_parquet(f"hercules://{hfs.master}{root}", filters=[("year", "=", 2025)])
    assert sorted(frame["value"].tolist()) == [3.0, 4.0]


def test_filesystem_pickles_for_workers(cluster, hfs, base):  # noqa: ANN001
    hfs.pipe_file(f"{base}/p", b"pickled")
    again = pickle.loads(pickle.dumps(hfs))  # dask ships the filesystem to its workers this way
    assert again.master == cluster.master_addr and again.cat_file(f"{base}/p") == b"pickled"


def test_bad_paths_name_the_problem(hfs):  # noqa: ANN001
    with pytest.raises(PermissionError, match="hercules"):
        hfs.ls("/.hercules")
    with pytest.raises(ValueError, match="'..'"):
        hfs.info("/a/../b")
    with pytest.raises(ValueError, match="pipe mode"):
        hfs.pipe_file("/x", b"", mode="append")


def test_refused_upload_fails_the_writer(hfs):  # noqa: ANN001
    with pytest.raises(PermissionError, match="hercules"):
        with hfs.open("/.hercules/x", "wb", block_size=1 << 20) as f:
            for _ in range(4):  # more blocks than the queue holds: the writer learns of the refusal
                f.write(os.urandom(1 << 20))


def test_open_missing_file_for_reading(hfs, base):  # noqa: ANN001
    with pytest.raises(FileNotFoundError):
        hfs.open(f"{base}/missing", "rb")
