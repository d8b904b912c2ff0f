"""Request rates per principal (``rate``/``burst`` in HERCULES_AUTH_FILE): past its burst a principal
is answered 429 ``rate_limited`` with ``Retry-After`` on REST and S3's ``SlowDown`` on the S3 port,
one bucket for both; other principals are not slowed; the bucket refills; a reload applies a new rate.
The token bucket itself runs against a clock of the test's."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from hercules_core.errors import ConfigError
from hercules_core.gateway.auth import load_principals
from hercules_core.gateway.rates import Rate, RateLimiter
from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST, Http, wait_until

SLOW = 0.001  # requests per second: a spent burst does not come back within a test
CREDENTIALS = f"""
[[principal]]
name = "limited"
token = "tok-limited"
access = "write"
rate = {SLOW}
burst = 3

[[principal]]
name = "shared"
token = "tok-shared"
access = "write"
rate = {SLOW}
burst = 4
s3_access_key = "HKSHARED"
s3_secret_key = "shared-secret"

[[principal]]
name = "refilled"
token = "tok-refilled"
access = "read"
rate = 1
burst = 1

[[principal]]
name = "reloaded"
token = "tok-reloaded"
access = "read"
rate = 0.001
burst = 1

[[principal]]
name = "free"
token = "tok-free"
access = "write"
s3_access_key = "HKFREE"
s3_secret_key = "free-secret"
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, Path]]:
    root = tmp_path_factory.mktemp("rates")
    creds = root / "credentials.toml"
    creds.write_text(CREDENTIALS)
    with LocalCluster(root / "cluster", settings={**FAST, "HERCULES_AUTH_FILE": str(creds)}) as c:
        yield c, creds


@pytest.fixture
def http(cluster: tuple[LocalCluster, Path]) -> Iterator[Http]:
    with closing(Http(cluster[0].gateway_url)) as h:
        yield h


def _as(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer tok-{name}"}


def _s3(cluster: LocalCluster, access: str, secret: str) -> Any:
    from tests.s3_fixtures import make_client

    return make_client(cluster.s3_url, access=access, secret=secret)  # no retries: SlowDown is seen


def test_past_its_burst_a_principal_gets_429_with_retry_after(http: Http) -> None:
    for _ in range(3):
        assert http.json("GET", "/api/v1/list?path=/", headers=_as("limited"))[0] == 200
    status, headers, data = http.request("GET", "/api/v1/list?path=/", headers=_as("limited"))
    assert status == 429
    body = json.loads(data)
    assert set(body) == {"error"} and body["error"]["code"] == "rate_limited"
    message = body["error"]["message"]
    assert "'limited'" in message and f"{SLOW:g} requests per second (burst 3)" in message
    assert int(headers["retry-after"]) >= 1
    assert "tok-limited" not in message
    # another principal is not slowed, nor is the open health check
    for _ in range(10):
        assert http.json("GET", "/api/v1/list?path=/", headers=_as("free"))[0] == 200
    assert http.json("GET", "/health")[0] == 200


def test_the_bucket_refills_at_the_rate(http: Http) -> None:
    def status() -> int:
        return http.request("GET", "/api/v1/list?path=/", headers=_as("refilled"))[0]

    wait_until(lambda: status() == 200 and status() == 429, 30, "two requests at once past a burst of 1")
    wait_until(lambda: status() == 200, 30, "the bucket to refill")


def test_s3_keys_of_a_limited_principal_get_slowdown(cluster: tuple[LocalCluster, Path], http: Http) -> None:
    from botocore.exceptions import ClientError

    c, _ = cluster
    s3 = _s3(c, "HKSHARED", "shared-secret")
    s3.create_bucket(Bucket="rated")
    s3.put_object(Bucket="rated", Key="k", Body=b"v")
    # the same principal's REST token spends the same bucket
    assert http.json("GET", "/api/v1/list?path=/", headers=_as("shared"))[0] == 200
    assert s3.get_object(Bucket="rated", Key="k")["Body"].read() == b"v"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="rated", Key="k")
    error = exc.value.response["Error"]
    assert error["Code"] == "SlowDown" and exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert "'shared'" in error["Message"]
    assert http.request("GET", "/api/v1/list?path=/", headers=_as("shared"))[0] == 429
    free = _s3(c, "HKFREE", "free-secret")
    for _ in range(10):
        assert free.get_object(Bucket="rated", Key="k")["Body"].read() == b"v"


def test_a_reload_applies_a_new_rate(cluster: tuple[LocalCluster, Path], http: Http) -> None:
    c, creds = cluster
    http.request("GET", "/api/v1/list?path=/", headers=_as("reloaded"))
    assert http.request("GET", "/api/v1/list?path=/", headers=_as("reloaded"))[0] == 429
    creds.write_text(CREDENTIALS.replace("rate = 0.001\nburst = 1", "rate = 1000\nburst = 1000", 1))
    try:
        c.process("gateway").signal(signal.SIGHUP)
        wait_until(lambda: http.request("GET", "/api/v1/list?path=/", headers=_as("reloaded"))[0] == 200, 30,
                   "the reloaded rate to let the principal through")
    finally:
        creds.write_text(CREDENTIALS)
        c.process("gateway").signal(signal.SIGHUP)


def test_a_token_bucket_allows_its_burst_then_its_rate() -> None:
    now = [100.0]
    limiter, rate = RateLimiter(clock=lambda: now[0]), Rate(2.0, 3.0)
    assert [limiter.delay("a", rate) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.delay("a", rate) == pytest.approx(0.5)
    assert limiter.delay("b", rate) == 0.0  # one bucket per principal
    now[0] += 0.5
    assert limiter.delay("a", rate) == 0.0
    assert limiter.delay("a", rate) == pytest.approx(0.5)
    now[0] += 60  # a long pause refills up to the burst, no further
    assert [limiter.delay("a", rate) for _ in range(4)][-1] > 0
    limiter.keep({"b"})
    assert set(limiter.buckets) == {"b"}


@pytest.mark.parametrize(("fields", "error"), [
    ("rate = 0", "rate must be a positive number"),
    ("rate = -2", "rate must be a positive number"),
    ('rate = "fast"', "rate must be a positive number"),
    ("rate = true", "rate must be a positive number"),
    ("rate = 5\nburst = 0.5", "burst must be a number of requests, at least 1"),
    ("burst = 10", "burst needs a rate"),
])
def test_an_unusable_rate_is_refused_naming_the_principal(tmp_path: Path, fields: str, error: str) -> None:
    path = tmp_path / "creds.toml"
    path.write_text(f'[[principal]]\nname = "p"\ntoken = "t"\n{fields}\n')
    with pytest.raises(ConfigError) as exc:
        load_principals(path)
    assert error in exc.value.message and "'p'" in exc.value.message


def test_a_rate_without_burst_allows_one_seconds_worth(tmp_path: Path) -> None:
    path = tmp_path / "creds.toml"
    path.write_text('[[principal]]\nname = "p"\ntoken = "t"\nrate = 0.5\n\n'
                    '[[principal]]\nname = "q"\ntoken = "u"\nrate = 20\n')
    assert [p.rate for p in load_principals(path)] == [Rate(0.5, 1.0), Rate(20.0, 20.0)]


def test_token_create_writes_a_rate(tmp_path: Path) -> None:
    path = tmp_path / "creds.toml"
    command = [sys.executable, "-m", "hercules_core", "token", "create", "--file", str(path)]
    subprocess.run([*command, "p", "--rate", "2.5", "--burst", "10"], capture_output=True, check=True)
    assert load_principals(path)[0].rate == Rate(2.5, 10.0)
    refused = subprocess.run([*command, "q", "--rate", "-1"], capture_output=True, text=True)
    assert refused.returncode == 1 and "rate must be a positive number" in refused.stderr
    assert [p.name for p in load_principals(path)] == ["p"]
