"""The S3 API end to end through boto3, against a real cluster with signing keys set."""

from __future__ import annotations

import hashlib
import io
import os
import time
from typing import Any

import urllib.error
import urllib.request

import pytest

pytest.importorskip("boto3")
from botocore.exceptions import ClientError  # noqa: E402

from tests.helpers import MiB, Http  # noqa: E402
from tests.s3_fixtures import make_client, s3, s3_cluster  # noqa: E402,F401


def fetch(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method), timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def test_buckets_create_list_head_location_delete(s3: Any) -> None:
    s3.create_bucket(Bucket="alpha")
    assert "alpha" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.head_bucket(Bucket="alpha")
    assert s3.get_bucket_location(Bucket="alpha")["LocationConstraint"] is None
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket="alpha")
    assert code(exc) == "BucketAlreadyOwnedByYou"
    s3.put_object(Bucket="alpha", Key="x", Body=b"1")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket="alpha")
    assert code(exc) == "BucketNotEmpty"
    s3.delete_object(Bucket="alpha", Key="x")
    s3.delete_bucket(Bucket="alpha")
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket="alpha")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket="alpha")
    assert code(exc) == "NoSuchBucket"
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket="Bad_Name")
    assert code(exc) == "InvalidBucketName"
    assert ".s3" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_put_get_metadata_etag_and_the_same_bytes_through_rest(s3: Any, s3_cluster: Any) -> None:
    s3.create_bucket(Bucket="photos")
    body = os.urandom(300_000)
    put = s3.put_object(Bucket="photos", Key="2026/a.jpg", Body=body, ContentType="image/jpeg",
                        Metadata={"camera": "x100"}, CacheControl="max-age=60")
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket="photos", Key="2026/a.jpg")
    assert got["Body"].read() == body
    assert (got["ContentType"], got["Metadata"], got["CacheControl"]) == ("image/jpeg", {"camera": "x100"},
                                                                           "max-age=60")
    head = s3.head_object(Bucket="photos", Key="2026/a.jpg")
    assert head["ContentLength"] == len(body) and head["ETag"] == put["ETag"]
    gw = Http(s3_cluster.gateway_url)
    status, _, data = gw.request("GET", "/api/v1/files/photos/2026/a.jpg")
    gw.close()
    assert status == 200 and data == body
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="photos", Key="2026/missing")
    assert code(exc) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket="photos", Key="a//b", Body=b"")
    assert code(exc) == "InvalidArgument"


def test_ranges_and_conditions(s3: Any) -> None:
    s3.create_bucket(Bucket="ranges")
    body = bytes(range(256)) * 4096  # 1 MiB: crosses the 1 MiB test chunk size at its end
    etag = s3.put_object(Bucket="ranges", Key="r", Body=body)["ETag"]
    assert s3.get_object(Bucket="ranges", Key="r", Range="bytes=10-19")["Body"].read() == body[10:20]
    got = s3.get_object(Bucket="ranges", Key="r", Range="bytes=-5")
    assert got["Body"].read() == body[-5:] and got["ContentRange"] == f"bytes {len(body) - 5}-{len(body) - 1}/{len(body)}"
    assert s3.get_object(Bucket="ranges", Key="r", Range="bytes=1048570-")["Body"].read() == body[1048570:]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="ranges", Key="r", Range=f"bytes={len(body)}-")
    assert code(exc) == "InvalidRange"
    assert s3.get_object(Bucket="ranges", Key="r", IfMatch=etag)["Body"].read() == body
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="ranges", Key="r", IfMatch='"0000"')
    assert code(exc) == "PreconditionFailed"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="ranges", Key="r", IfNoneMatch=etag)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    future = time.time() + 3600
    import datetime

    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="ranges", Key="r", IfModifiedSince=datetime.datetime.fromtimestamp(future))
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304


def test_listing_pagination_over_2500_keys_prefixes_and_start_after(s3: Any) -> None:
    s3.create_bucket(Bucket="many")
    from concurrent.futures import ThreadPoolExecutor

    keys = [f"d{i % 5}/k{i:04d}" for i in range(2500)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket="many", Key=k, Body=k.encode()), keys))
    listed, pages = [], 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="many", PaginationConfig={"PageSize": 1000}):
        listed += [o["Key"] for o in page["Contents"]]
        pages += 1
    assert listed == sorted(keys) and pages == 3
    v1 = [o["Key"] for page in s3.get_paginator("list_objects").paginate(Bucket="many") for o in page["Contents"]]
    assert v1 == sorted(keys)
    top = s3.list_objects_v2(Bucket="many", Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == [f"d{i}/" for i in range(5)] and "Contents" not in top
    some = s3.list_objects_v2(Bucket="many", Prefix="d3/", MaxKeys=7, StartAfter="d3/k1000")
    assert [o["Key"] for o in some["Contents"]] == sorted(k for k in keys if k.startswith("d3/") and k > "d3/k1000")[:7]
    assert some["IsTruncated"] and some["KeyCount"] == 7
    page = s3.list_objects_v2(Bucket="many", Delimiter="/", MaxKeys=2)
    rest = s3.list_objects_v2(Bucket="many", Delimiter="/", ContinuationToken=page["NextContinuationToken"])
    assert [p["Prefix"] for p in page["CommonPrefixes"] + rest["CommonPrefixes"]] == [f"d{i}/" for i in range(5)]


def test_copy_and_batch_delete(s3: Any) -> None:
    s3.create_bucket(Bucket="copies")
    s3.put_object(Bucket="copies", Key="src", Body=b"original", ContentType="text/plain", Metadata={"a": "1"})
    s3.copy_object(Bucket="copies", Key="deep/dst", CopySource={"Bucket": "copies", "Key": "src"})
    got = s3.get_object(Bucket="copies", Key="deep/dst")
    assert got["Body"].read() == b"original" and got["Metadata"] == {"a": "1"} and got["ContentType"] == "text/plain"
    s3.copy_object(Bucket="copies", Key="src", CopySource="copies/src", MetadataDirective="REPLACE",
                   Metadata={"b": "2"}, ContentType="text/csv")
    head = s3.head_object(Bucket="copies", Key="src")
    assert head["Metadata"] == {"b": "2"} and head["ContentType"] == "text/csv"
    s3.put_object(Bucket="copies", Key="src", Body=b"changed")  # copy-on-write: the copy keeps its bytes
    assert s3.get_object(Bucket="copies", Key="deep/dst")["Body"].read() == b"original"
    for i in range(10):
        s3.put_object(Bucket="copies", Key=f"batch/{i}", Body=b"x")
    result = s3.delete_objects(Bucket="copies", Delete={"Objects": [{"Key": f"batch/{i}"} for i in range(10)]
                                                        + [{"Key": "never-was"}]})
    assert sorted(d["Key"] for d in result["Deleted"]) == sorted([f"batch/{i}" for i in range(10)] + ["never-was"])
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="copies")["Contents"]] == ["deep/dst", "src"]


def test_multipart_100_mib_in_8_mib_parts(s3: Any) -> None:
    s3.create_bucket(Bucket="multi")
    upload = s3.create_multipart_upload(Bucket="multi", Key="big.bin", ContentType="application/x-big")
    uid = upload["UploadId"]
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="multi")["Uploads"]] == [uid]
    whole, parts, digests = hashlib.md5(), [], []
    size = 100 * MiB
    for number, start in enumerate(range(0, size, 8 * MiB), 1):
        data = hashlib.sha256(str(number).encode()).digest() * ((min(8 * MiB, size - start)) // 32)
        whole.update(data)
        digests.append(hashlib.md5(data).digest())
        etag = s3.upload_part(Bucket="multi", Key="big.bin", UploadId=uid, PartNumber=number, Body=data)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    listed = s3.list_parts(Bucket="multi", Key="big.bin", UploadId=uid)["Parts"]
    assert [p["PartNumber"] for p in listed] == list(range(1, 14)) and listed[-1]["Size"] == 4 * MiB
    done = s3.complete_multipart_upload(Bucket="multi", Key="big.bin", UploadId=uid,
                                        MultipartUpload={"Parts": parts})
    assert done["ETag"] == f'"{hashlib.md5(b"".join(digests)).hexdigest()}-13"'
    head = s3.head_object(Bucket="multi", Key="big.bin")
    assert head["ContentLength"] == size and head["ContentType"] == "application/x-big"
    got, body = hashlib.md5(), s3.get_object(Bucket="multi", Key="big.bin")["Body"]
    for piece in iter(lambda: body.read(MiB), b""):
        got.update(piece)
    assert got.hexdigest() == whole.hexdigest()
    assert "Uploads" not in s3.list_multipart_uploads(Bucket="multi")


def test_multipart_copy_abort_and_refusals(s3: Any) -> None:
    s3.create_bucket(Bucket="multi2")
    source = os.urandom(6 * MiB)
    s3.put_object(Bucket="multi2", Key="source", Body=source)
    uid = s3.create_multipart_upload(Bucket="multi2", Key="joined")["UploadId"]
    first = s3.upload_part_copy(Bucket="multi2", Key="joined", UploadId=uid, PartNumber=1,
                                CopySource={"Bucket": "multi2", "Key": "source"})["CopyPartResult"]["ETag"]
    second = s3.upload_part_copy(Bucket="multi2", Key="joined", UploadId=uid, PartNumber=2,
                                 CopySource="multi2/source", CopySourceRange="bytes=0-99")["CopyPartResult"]["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket="multi2", Key="joined", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": second}]})
    assert code(exc) == "InvalidPart"
    s3.complete_multipart_upload(Bucket="multi2", Key="joined", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": first}, {"PartNumber": 2, "ETag": second}]})
    assert s3.get_object(Bucket="multi2", Key="joined")["Body"].read() == source + source[:100]
    uid = s3.create_multipart_upload(Bucket="multi2", Key="small")["UploadId"]
    tags = [s3.upload_part(Bucket="multi2", Key="small", UploadId=uid, PartNumber=n, Body=b"tiny")["ETag"]
            for n in (1, 2)]
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket="multi2", Key="small", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": t} for n, t in zip((1, 2), tags)]})
    assert code(exc) == "EntityTooSmall"
    s3.abort_multipart_upload(Bucket="multi2", Key="small", UploadId=uid)
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket="multi2", Key="small", UploadId=uid)
    assert code(exc) == "NoSuchUpload"


def test_upload_fileobj_streams_and_chunked_payload(s3: Any, s3_cluster: Any) -> None:
    s3.create_bucket(Bucket="streams")
    data = os.urandom(20 * MiB)  # above boto3's 8 MiB threshold: a managed multipart upload
    s3.upload_fileobj(io.BytesIO(data), "streams", "managed")
    out = io.BytesIO()
    s3.download_fileobj("streams", "managed", out)
    assert out.getvalue() == data


def test_presigned_get_and_put(s3: Any, s3_cluster: Any) -> None:
    s3.create_bucket(Bucket="signed")
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": "signed", "Key": "p"}, ExpiresIn=300)
    assert fetch(put_url, "PUT", b"by url")[0] == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": "signed", "Key": "p"}, ExpiresIn=300)
    assert fetch(get_url) == (200, b"by url")
    status, body = fetch(get_url.replace("/signed/p", "/signed/q"))
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body
    status, body = fetch(f"{s3_cluster.s3_url}/signed/p")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body


def test_wrong_secret_and_unknown_key_are_refused(s3_cluster: Any) -> None:
    with pytest.raises(ClientError) as exc:
        make_client(s3_cluster.s3_url, secret="wrong").list_buckets()
    assert code(exc) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as exc:
        make_client(s3_cluster.s3_url, access="NOBODY").put_object(Bucket="signed", Key="z", Body=b"z")
    assert code(exc) == "InvalidAccessKeyId"


def test_virtual_host_style(s3: Any, s3_cluster: Any) -> None:
    """bucket.localhost: signed for that host, sent to the loopback address (no resolver needed)."""
    import http.client
    from urllib.parse import urlsplit

    s3.create_bucket(Bucket="vhost")
    s3.put_object(Bucket="vhost", Key="v/1", Body=b"virtual")
    vs = make_client(f"http://localhost:{s3_cluster.s3_port}", style="virtual")
    url = urlsplit(vs.generate_presigned_url("get_object", Params={"Bucket": "vhost", "Key": "v/1"}))
    assert url.hostname == "vhost.localhost"
    conn = http.client.HTTPConnection("127.0.0.1", s3_cluster.s3_port, timeout=30)
    conn.request("GET", f"{url.path}?{url.query}", headers={"Host": url.netloc})
    resp = conn.getresponse()
    assert (resp.status, resp.read()) == (200, b"virtual")
    conn.close()
