"""S3 keys of the gateway's principals (HERCULES_AUTH_FILE), with their scopes, through boto3 against a
real cluster; the settings' key pair keeps working beside them."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("boto3")
from botocore.exceptions import ClientError  # noqa: E402

from hercules_core.testing.cluster import LocalCluster  # noqa: E402
from tests.helpers import FAST  # noqa: E402
from tests.s3_fixtures import ACCESS, SECRET, make_client  # noqa: E402

KEYS = {"writer": ("HKWRITER", "writer-secret"), "reader": ("HKREADER", "reader-secret"),
        "photos": ("HKPHOTOS", "photos-secret"), "deep": ("HKDEEP", "deep-secret")}
SCOPES = {"writer": ("write", "/"), "reader": ("read", "/"), "photos": ("write", "/photos"),
          "deep": ("write", "/photos/2026")}
CREDENTIALS = "".join(
    f'\n[[principal]]\nname = "{name}"\ntoken = "tok-{name}"\naccess = "{SCOPES[name][0]}"\n'
    f'prefix = "{SCOPES[name][1]}"\ns3_access_key = "{access}"\ns3_secret_key = "{secret}"\n'
    for name, (access, secret) in KEYS.items())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("s3auth")
    creds = root / "credentials.toml"
    creds.write_text(CREDENTIALS)
    settings = {**FAST, "HERCULES_AUTH_FILE": str(creds),
                "HERCULES_S3_ACCESS_KEY": ACCESS, "HERCULES_S3_SECRET_KEY": SECRET}
    with LocalCluster(root / "cluster", settings=settings) as c:
        s3 = make_client(c.s3_url)
        for bucket in ("photos", "docs"):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket="photos", Key="2026/a.jpg", Body=b"a")
        s3.put_object(Bucket="photos", Key="2025/b.jpg", Body=b"b")
        s3.put_object(Bucket="docs", Key="readme", Body=b"docs")
        yield c


def client(cluster: LocalCluster, name: str) -> Any:
    access, secret = KEYS[name]
    return make_client(cluster.s3_url, access=access, secret=secret)


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def status(exc: pytest.ExceptionInfo[ClientError]) -> int:
    return exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_the_settings_key_pair_still_works(cluster: LocalCluster) -> None:
    s3 = make_client(cluster.s3_url)
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} >= {"photos", "docs"}
    s3.put_object(Bucket="docs", Key="settings", Body=b"s")


def test_a_write_key_reads_writes_and_makes_buckets(cluster: LocalCluster) -> None:
    s3 = client(cluster, "writer")
    s3.create_bucket(Bucket="made")
    s3.put_object(Bucket="made", Key="x/1", Body=b"one")
    assert s3.get_object(Bucket="made", Key="x/1")["Body"].read() == b"one"
    upload = s3.create_multipart_upload(Bucket="made", Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket="made", Key="mp", UploadId=upload, PartNumber=1, Body=b"part")["ETag"]
    s3.complete_multipart_upload(Bucket="made", Key="mp", UploadId=upload,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    s3.delete_object(Bucket="made", Key="x/1")
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} >= {"photos", "docs", "made"}


def test_a_read_key_reads_but_may_not_write(cluster: LocalCluster) -> None:
    s3 = client(cluster, "reader")
    assert s3.get_object(Bucket="docs", Key="readme")["Body"].read() == b"docs"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="photos")["Contents"]] == ["2025/b.jpg", "2026/a.jpg"]
    refused = [
        lambda: s3.put_object(Bucket="docs", Key="new", Body=b"n"),
        lambda: s3.delete_object(Bucket="docs", Key="readme"),
        lambda: s3.create_bucket(Bucket="nope"),
        lambda: s3.delete_bucket(Bucket="docs"),
        lambda: s3.create_multipart_upload(Bucket="docs", Key="mp"),
        lambda: s3.copy_object(Bucket="docs", Key="copy", CopySource={"Bucket": "docs", "Key": "readme"}),
        lambda: s3.delete_objects(Bucket="docs", Delete={"Objects": [{"Key": "readme"}]}),
    ]
    for call in refused:
        with pytest.raises(ClientError) as exc:
            call()
        assert (code(exc), status(exc)) == ("AccessDenied", 403)
    assert make_client(cluster.s3_url).get_object(Bucket="docs", Key="readme")["Body"].read() == b"docs"


def test_a_prefix_key_stays_in_its_bucket(cluster: LocalCluster) -> None:
    s3 = client(cluster, "photos")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["photos"]
    s3.put_object(Bucket="photos", Key="2027/c.jpg", Body=b"c")
    assert s3.get_object(Bucket="photos", Key="2026/a.jpg")["Body"].read() == b"a"
    s3.head_bucket(Bucket="photos")
    refused = [
        lambda: s3.get_object(Bucket="docs", Key="readme"),
        lambda: s3.put_object(Bucket="docs", Key="new", Body=b"n"),
        lambda: s3.list_objects_v2(Bucket="docs"),
        lambda: s3.create_bucket(Bucket="photos2"),
        lambda: s3.copy_object(Bucket="photos", Key="stolen", CopySource={"Bucket": "docs", "Key": "readme"}),
    ]
    for call in refused:
        with pytest.raises(ClientError) as exc:
            call()
        assert (code(exc), status(exc)) == ("AccessDenied", 403)


def test_a_deeper_prefix_key_sees_only_its_keys(cluster: LocalCluster) -> None:
    s3 = client(cluster, "deep")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["photos"]
    s3.put_object(Bucket="photos", Key="2026/d.jpg", Body=b"d")
    listed = s3.list_objects_v2(Bucket="photos", Prefix="2026/")["Contents"]
    assert [o["Key"] for o in listed] == ["2026/a.jpg", "2026/d.jpg"]
    s3.list_multipart_uploads(Bucket="photos", Prefix="2026/")
    refused = [
        lambda: s3.get_object(Bucket="photos", Key="2025/b.jpg"),
        lambda: s3.put_object(Bucket="photos", Key="2025/x.jpg", Body=b"x"),
        lambda: s3.list_objects_v2(Bucket="photos"),
        lambda: s3.list_objects_v2(Bucket="photos", Prefix="2026"),  # would show 2026x/... too
        lambda: s3.list_multipart_uploads(Bucket="photos"),
        lambda: s3.delete_bucket(Bucket="photos"),
    ]
    for call in refused:
        with pytest.raises(ClientError) as exc:
            call()
        assert (code(exc), status(exc)) == ("AccessDenied", 403)
    result = s3.delete_objects(Bucket="photos", Delete={"Objects": [{"Key": "2026/d.jpg"}, {"Key": "2025/b.jpg"}]})
    assert [d["Key"] for d in result["Deleted"]] == ["2026/d.jpg"]
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("2025/b.jpg", "AccessDenied")]


def test_an_unknown_key_and_a_wrong_secret_are_refused_as_s3_does(cluster: LocalCluster) -> None:
    with pytest.raises(ClientError) as exc:
        make_client(cluster.s3_url, access="HKNOBODY", secret="x").list_buckets()
    assert (code(exc), status(exc)) == ("InvalidAccessKeyId", 403)
    with pytest.raises(ClientError) as exc:
        make_client(cluster.s3_url, access=KEYS["writer"][0], secret="wrong").get_object(Bucket="docs", Key="readme")
    assert (code(exc), status(exc)) == ("SignatureDoesNotMatch", 403)
    # another principal's secret does not sign for this key
    with pytest.raises(ClientError) as exc:
        make_client(cluster.s3_url, access=KEYS["reader"][0], secret=KEYS["writer"][1]).list_buckets()
    assert code(exc) == "SignatureDoesNotMatch"


def test_refusals_are_s3_xml(cluster: LocalCluster) -> None:
    url = client(cluster, "reader").generate_presigned_url(
        "put_object", Params={"Bucket": "docs", "Key": "presigned"})
    try:
        urllib.request.urlopen(urllib.request.Request(url, data=b"p", method="PUT"), timeout=30)
    except urllib.error.HTTPError as err:
        body = err.read()
        assert err.code == 403 and err.headers["Content-Type"].startswith("application/xml")
        assert b"<Code>AccessDenied</Code>" in body and b"secret" not in body
    else:
        pytest.fail("a read key's presigned PUT was accepted")
