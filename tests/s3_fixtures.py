"""A cluster whose S3 port requires signatures, and boto3 clients for it (shared by the S3 tests)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST

ACCESS, SECRET = "HERCULESTESTKEY", "hercules-test-secret"


@pytest.fixture(scope="module")
def s3_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    settings = {**FAST, "HERCULES_S3_ACCESS_KEY": ACCESS, "HERCULES_S3_SECRET_KEY": SECRET}
    with LocalCluster(tmp_path_factory.mktemp("s3"), settings=settings) as c:
        yield c


def make_client(url: str, secret: str = SECRET, access: str = ACCESS, style: str = "path") -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=url, aws_access_key_id=access, aws_secret_access_key=secret,
                        region_name="us-east-1",
                        config=Config(s3={"addressing_style": style}, retries={"max_attempts": 1},
                                      signature_version="s3v4"))


@pytest.fixture(scope="module")
def s3(s3_cluster: LocalCluster) -> Any:
    return make_client(s3_cluster.s3_url)
