"""Folder markers: a zero-byte ``dir/`` object is a directory here, listed as the key ``dir/`` while it
holds nothing (as S3 lists the marker), and gone from listings once keys live below it."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("boto3")
from tests.s3_fixtures import s3, s3_cluster  # noqa: E402,F401


def _keys(s3: Any, **kwargs: Any) -> tuple[list[str], list[str]]:
    got = s3.list_objects_v2(Bucket="markers", **kwargs)
    return [c["Key"] for c in got.get("Contents", [])], [p["Prefix"] for p in got.get("CommonPrefixes", [])]


def test_an_empty_folder_marker_is_listed_as_its_key(s3: Any) -> None:
    s3.create_bucket(Bucket="markers")
    s3.put_object(Bucket="markers", Key="asdf/", Body=b"")
    s3.put_object(Bucket="markers", Key="top", Body=b"t")
    assert _keys(s3) == (["asdf/", "top"], [])
    assert _keys(s3, Prefix="asdf/", Delimiter="/") == (["asdf/"], [])
    assert _keys(s3, Delimiter="/") == (["top"], ["asdf/"])
    listed = s3.list_objects_v2(Bucket="markers", Prefix="asdf/")["Contents"][0]
    assert listed["Size"] == 0 and listed["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    s3.put_object(Bucket="markers", Key="asdf/inner", Body=b"i")
    assert _keys(s3, Prefix="asdf/") == (["asdf/inner"], [])
    s3.delete_object(Bucket="markers", Key="asdf/inner")
    s3.delete_object(Bucket="markers", Key="asdf/")
    assert _keys(s3) == (["top"], [])
