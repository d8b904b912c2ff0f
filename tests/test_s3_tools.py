"""The S3 API through other people's tools: s3fs with pandas, the aws CLI, rclone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.s3_fixtures import ACCESS, SECRET, s3, s3_cluster  # noqa: F401


def make_tree(root: Path) -> dict[str, bytes]:
    files = {"a.txt": b"alpha\n", "sub/b.bin": os.urandom(3 << 20), "sub/deeper/c.csv": b"x,y\n1,2\n",
             "sub/deeper/empty": b"", "with space/d e.txt": b"spaced"}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_s3fs_and_pandas_read_a_csv(s3: Any, s3_cluster: Any) -> None:
    import pandas as pd
    import s3fs

    s3.create_bucket(Bucket="frames")
    fs = s3fs.S3FileSystem(key=ACCESS, secret=SECRET, client_kwargs={"endpoint_url": s3_cluster.s3_url})
    frame = pd.DataFrame({"n": range(1000), "sq": [i * i for i in range(1000)]})
    options = {"key": ACCESS, "secret": SECRET, "client_kwargs": {"endpoint_url": s3_cluster.s3_url}}
    frame.to_csv("s3://frames/2026/squares.csv", index=False, storage_options=options)
    assert fs.ls("frames/2026") == ["frames/2026/squares.csv"]
    back = pd.read_csv("s3://frames/2026/squares.csv", storage_options=options)
    pd.testing.assert_frame_equal(back, frame)
    with fs.open("frames/2026/squares.csv", "rb") as f:
        f.seek(2)
        assert f.read(5) == b"sq\n0,"


def _aws(url: str, *args: str) -> str:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    aws = Path(sys.executable).with_name("aws")
    done = subprocess.run([str(aws), "--endpoint-url", url, *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_aws_cli_cp_sync_ls_round_trip(s3: Any, s3_cluster: Any, tmp_path: Path) -> None:
    s3.create_bucket(Bucket="cli")
    files = make_tree(tmp_path / "up")
    _aws(s3_cluster.s3_url, "s3", "cp", str(tmp_path / "up" / "a.txt"), "s3://cli/single/a.txt")
    _aws(s3_cluster.s3_url, "s3", "sync", str(tmp_path / "up"), "s3://cli/tree")
    listing = _aws(s3_cluster.s3_url, "s3", "ls", "--recursive", "s3://cli/tree/")
    assert sorted(line.split(maxsplit=3)[3] for line in listing.splitlines()) == sorted(f"tree/{n}" for n in files)
    assert "PRE tree/" in _aws(s3_cluster.s3_url, "s3", "ls", "s3://cli/")
    _aws(s3_cluster.s3_url, "s3", "sync", "s3://cli/tree", str(tmp_path / "down"))
    assert read_tree(tmp_path / "down") == files
    _aws(s3_cluster.s3_url, "s3", "cp", "s3://cli/single/a.txt", str(tmp_path / "one.txt"))
    assert (tmp_path / "one.txt").read_bytes() == files["a.txt"]


def test_rclone_sync_there_and_back(s3: Any, s3_cluster: Any, tmp_path: Path) -> None:
    rclone = shutil.which("rclone")
    assert rclone, "rclone is not installed: make venv installs it (apt-get install rclone)"
    s3.create_bucket(Bucket="rclone")
    files = make_tree(tmp_path / "up")
    # No AWS_* of the caller's (AWS_CA_BUNDLE makes rclone refuse its own HTTP transport).
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "RCLONE_CONFIG": "/dev/null", "RCLONE_CONFIG_HS3_TYPE": "s3",
           "RCLONE_CONFIG_HS3_PROVIDER": "Other", "RCLONE_CONFIG_HS3_ACCESS_KEY_ID": ACCESS,
           "RCLONE_CONFIG_HS3_SECRET_ACCESS_KEY": SECRET, "RCLONE_CONFIG_HS3_ENDPOINT": s3_cluster.s3_url,
           "RCLONE_CONFIG_HS3_REGION": "us-east-1"}

    def run(*args: str) -> None:
        done = subprocess.run([rclone, *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr

    run("sync", str(tmp_path / "up"), "hs3:rclone/tree")
    run("sync", "hs3:rclone/tree", str(tmp_path / "down"))
    assert read_tree(tmp_path / "down") == files
    run("check", str(tmp_path / "up"), "hs3:rclone/tree")
