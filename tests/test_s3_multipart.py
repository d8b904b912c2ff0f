"""CompleteMultipartUpload without copying: parts that fill whole chunks (8 MiB parts on a cluster
of 1 MiB chunks) become the object by sharing their chunks, so no chunkserver reads or writes the
parts' bytes again; parts that do not (5.5 MiB) are copied, as before. Both give S3's ETag."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

pytest.importorskip("boto3")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from hercules_core.client import connect  # noqa: E402
from hercules_core.testing.cluster import LocalCluster  # noqa: E402
from tests.helpers import MiB, file_handles  # noqa: E402
from tests.s3_fixtures import s3, s3_cluster  # noqa: E402,F401

CHUNKSERVERS = ("chunk1", "chunk2", "chunk3")


def counted(cluster: LocalCluster, family: str) -> float:
    """The sum over the chunkservers of a counter of theirs (``hercules_chunkserver_read_bytes``...)."""
    total = 0.0
    for name in CHUNKSERVERS:
        with urllib.request.urlopen(cluster.metrics_url(name), timeout=10) as resp:
            text = resp.read().decode()
        total += sum(s.value for f in text_string_to_metric_families(text) if f.name == family for s in f.samples
                     if s.name.endswith("_total"))
    return total


def handles_of(cluster: LocalCluster, paths: list[str]) -> list[list[int]]:
    async def run() -> list[list[int]]:
        client = await connect(cluster.master_addr)
        try:
            return [await file_handles(client, path) for path in paths]
        finally:
            await client.close()

    return asyncio.run(run())


def part_files(cluster: LocalCluster, uid: str, parts: list[dict]) -> list[str]:
    """The files holding an upload's parts, as their records name them."""
    async def run() -> list[str]:
        client = await connect(cluster.master_addr)
        try:
            return [json.loads(await client.read(f"/.s3/multipart/{uid}/{p['PartNumber']:05d}.json"))["path"]
                    for p in parts]
        finally:
            await client.close()

    return asyncio.run(run())


def upload_parts(s3: Any, bucket: str, key: str, size: int, part: int) -> tuple[str, list[dict], bytes, str]:
    """An upload of ``size`` bytes in ``part``-byte parts: its id, the parts to complete it
    with, the whole body and the ETag S3 gives it."""
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts, digests, body = [], [], bytearray()
    for number, start in enumerate(range(0, size, part), 1):
        data = hashlib.sha256(f"{key}{number}".encode()).digest() * (min(part, size - start) // 32)
        body += data
        digests.append(hashlib.md5(data).digest())
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=number, Body=data)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    return uid, parts, bytes(body), f'"{hashlib.md5(b"".join(digests)).hexdigest()}-{len(parts)}"'


def test_chunk_aligned_parts_become_the_object_without_their_bytes_moving(s3: Any, s3_cluster: LocalCluster
                                                                           ) -> None:
    size = 100 * MiB
    s3.create_bucket(Bucket="aligned")
    uid, parts, body, etag = upload_parts(s3, "aligned", "big.bin", size, 8 * MiB)
    part_handles = handles_of(s3_cluster, part_files(s3_cluster, uid, parts))
    read_before = counted(s3_cluster, "hercules_chunkserver_read_bytes")
    written_before = counted(s3_cluster, "hercules_chunkserver_written_bytes")
    done = s3.complete_multipart_upload(Bucket="aligned", Key="big.bin", UploadId=uid, MultipartUpload={"Parts": parts})
    read = counted(s3_cluster, "hercules_chunkserver_read_bytes") - read_before
    written = counted(s3_cluster, "hercules_chunkserver_written_bytes") - written_before
    assert read < MiB and written < MiB, f"Complete moved the parts' bytes: {read} read, {written} written"
    assert handles_of(s3_cluster, ["/aligned/big.bin"])[0] == [h for handles in part_handles for h in handles]
    assert done["ETag"] == etag == s3.head_object(Bucket="aligned", Key="big.bin")["ETag"]
    got = hashlib.md5()
    stream = s3.get_object(Bucket="aligned", Key="big.bin")["Body"]
    for piece in iter(lambda: stream.read(4 * MiB), b""):
        got.update(piece)
    assert got.hexdigest() == hashlib.md5(body).hexdigest()
    assert "Uploads" not in s3.list_multipart_uploads(Bucket="aligned")


def test_a_small_last_part_is_shared_too_not_packed(s3: Any, s3_cluster: LocalCluster) -> None:
    """A last part small enough to be a packed file would have no chunk to share, and the whole
    upload would be copied: parts get chunks of their own."""
    s3.create_bucket(Bucket="tail")
    uid, parts, body, etag = upload_parts(s3, "tail", "t.bin", 16 * MiB + 100_000, 8 * MiB)
    part_handles = handles_of(s3_cluster, part_files(s3_cluster, uid, parts))
    assert len(part_handles[-1]) == 1  # the 100 KB part, below the cluster's pack threshold
    read_before = counted(s3_cluster, "hercules_chunkserver_read_bytes")
    done = s3.complete_multipart_upload(Bucket="tail", Key="t.bin", UploadId=uid, MultipartUpload={"Parts": parts})
    assert counted(s3_cluster, "hercules_chunkserver_read_bytes") - read_before < MiB
    assert handles_of(s3_cluster, ["/tail/t.bin"])[0] == [h for handles in part_handles for h in handles]
    assert done["ETag"] == etag
    assert s3.get_object(Bucket="tail", Key="t.bin")["Body"].read() == body


def test_parts_that_end_inside_a_chunk_are_copied(s3: Any, s3_cluster: LocalCluster) -> None:
    s3.create_bucket(Bucket="unaligned")
    uid, parts, body, etag = upload_parts(s3, "unaligned", "odd.bin", 11 * MiB + 5, 5 * MiB + MiB // 2)
    part_handles = handles_of(s3_cluster, part_files(s3_cluster, uid, parts))
    read_before = counted(s3_cluster, "hercules_chunkserver_read_bytes")
    done = s3.complete_multipart_upload(Bucket="unaligned", Key="odd.bin", UploadId=uid,
                                        MultipartUpload={"Parts": parts})
    assert counted(s3_cluster, "hercules_chunkserver_read_bytes") - read_before >= len(body)  # read back
    assert not set(handles_of(s3_cluster, ["/unaligned/odd.bin"])[0]) & {h for hs in part_handles for h in hs}
    assert done["ETag"] == etag
    assert s3.get_object(Bucket="unaligned", Key="odd.bin")["Body"].read() == body


def test_a_composed_object_replaces_an_older_one_and_copies_on_write(s3: Any, s3_cluster: LocalCluster) -> None:
    s3.create_bucket(Bucket="again")
    s3.put_object(Bucket="again", Key="k", Body=b"old object")
    uid, parts, body, etag = upload_parts(s3, "again", "k", 6 * MiB + 3, 5 * MiB)
    s3.complete_multipart_upload(Bucket="again", Key="k", UploadId=uid, MultipartUpload={"Parts": parts})
    assert s3.get_object(Bucket="again", Key="k")["Body"].read() == body
    assert s3.head_object(Bucket="again", Key="k")["ETag"] == etag
    s3.copy_object(Bucket="again", Key="copy", CopySource={"Bucket": "again", "Key": "k"})  # shares the chunks
    s3.put_object(Bucket="again", Key="k", Body=b"new")
    assert s3.get_object(Bucket="again", Key="copy")["Body"].read() == body


def error_of(call: Any, **kwargs: Any) -> tuple[int, str]:
    """The status and S3 error code a boto3 call is refused with."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as refused:
        call(**kwargs)
    return refused.value.response["ResponseMetadata"]["HTTPStatusCode"], refused.value.response["Error"]["Code"]


def test_a_retried_complete_answers_as_the_first(s3: Any, s3_cluster: LocalCluster) -> None:
    """A client that lost the answer to its Complete sends it again: S3 answers the same 200 and
    ETag (for a while), not NoSuchUpload; a Complete naming other parts is refused."""
    s3.create_bucket(Bucket="retried")
    uid, parts, body, etag = upload_parts(s3, "retried", "k", 5 * MiB + 7, 5 * MiB)
    first = s3.complete_multipart_upload(Bucket="retried", Key="k", UploadId=uid, MultipartUpload={"Parts": parts})
    again = s3.complete_multipart_upload(Bucket="retried", Key="k", UploadId=uid, MultipartUpload={"Parts": parts})
    assert first["ETag"] == again["ETag"] == etag
    assert (again["Bucket"], again["Key"]) == ("retried", "k")
    assert s3.get_object(Bucket="retried", Key="k")["Body"].read() == body
    assert error_of(s3.complete_multipart_upload, Bucket="retried", Key="k", UploadId=uid,
                    MultipartUpload={"Parts": parts[:1]}) == (400, "InvalidPart")
    assert error_of(s3.complete_multipart_upload, Bucket="retried", Key="other", UploadId=uid,
                    MultipartUpload={"Parts": parts}) == (404, "NoSuchUpload")
    assert error_of(s3.list_parts, Bucket="retried", Key="k", UploadId=uid) == (404, "NoSuchUpload")
    assert "Uploads" not in s3.list_multipart_uploads(Bucket="retried")


def test_completed_uploads_are_forgotten_after_a_day(s3: Any, s3_cluster: LocalCluster) -> None:
    """A completed upload answers a retried Complete for a day after completing; then its marker
    is refused, and a later Complete sweeps it away."""
    s3.create_bucket(Bucket="forgotten")
    old_uid, old_parts, _, _ = upload_parts(s3, "forgotten", "old", 10, 10)
    s3.complete_multipart_upload(Bucket="forgotten", Key="old", UploadId=old_uid,
                                 MultipartUpload={"Parts": old_parts})
    two_days_ago = time.time() - 2 * 86400
    ancient = f"{int(two_days_ago * 1e9):x}{uuid.uuid4().hex}"  # an upload id as Create makes them

    async def age() -> None:
        client = await connect(s3_cluster.master_addr)
        try:
            path = f"/.s3/completed/{old_uid}"
            record = json.loads(await client.read(path))
            await client.upload(path, json.dumps({**record, "completed": two_days_ago}).encode(), overwrite=True)
            await client.upload(f"/.s3/completed/{ancient}", json.dumps({**record, "completed": two_days_ago}).encode())
        finally:
            await client.close()

    asyncio.run(age())
    assert error_of(s3.complete_multipart_upload, Bucket="forgotten", Key="old", UploadId=old_uid,
                    MultipartUpload={"Parts": old_parts}) == (404, "NoSuchUpload")
    uid, parts, _, _ = upload_parts(s3, "forgotten", "new", 10, 10)
    s3.complete_multipart_upload(Bucket="forgotten", Key="new", UploadId=uid, MultipartUpload={"Parts": parts})
    s3.complete_multipart_upload(Bucket="forgotten", Key="new", UploadId=uid, MultipartUpload={"Parts": parts})

    async def markers() -> list[str]:
        client = await connect(s3_cluster.master_addr)
        try:
            return [e.path.rsplit("/", 1)[1] for e in (await client.list("/.s3/completed")).entries]
        finally:
            await client.close()

    left = asyncio.run(markers())
    assert ancient not in left and uid in left


def test_a_part_sent_again_replaces_the_first(s3: Any, s3_cluster: LocalCluster) -> None:
    s3.create_bucket(Bucket="resent")
    uid = s3.create_multipart_upload(Bucket="resent", Key="k")["UploadId"]
    first = s3.upload_part(Bucket="resent", Key="k", UploadId=uid, PartNumber=1, Body=b"a" * 100)["ETag"]
    second = s3.upload_part(Bucket="resent", Key="k", UploadId=uid, PartNumber=1, Body=b"b" * 30)["ETag"]
    listed = s3.list_parts(Bucket="resent", Key="k", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [(1, second, 30)]
    assert error_of(s3.complete_multipart_upload, Bucket="resent", Key="k", UploadId=uid,
                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": first}]}) == (400, "InvalidPart")
    done = s3.complete_multipart_upload(Bucket="resent", Key="k", UploadId=uid,
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": second}]})
    assert done["ETag"] == f'"{hashlib.md5(hashlib.md5(b"b" * 30).digest()).hexdigest()}-1"'
    assert s3.get_object(Bucket="resent", Key="k")["Body"].read() == b"b" * 30


def test_a_part_listed_twice_in_complete_is_its_last_entry(s3: Any, s3_cluster: LocalCluster) -> None:
    """As s3-tests' resend_first_finishes_last sends it: the stored part's ETag last wins."""
    s3.create_bucket(Bucket="twice")
    uid = s3.create_multipart_upload(Bucket="twice", Key="k")["UploadId"]
    first = s3.upload_part(Bucket="twice", Key="k", UploadId=uid, PartNumber=1, Body=b"first")["ETag"]
    second = s3.upload_part(Bucket="twice", Key="k", UploadId=uid, PartNumber=1, Body=b"second")["ETag"]
    s3.complete_multipart_upload(Bucket="twice", Key="k", UploadId=uid, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": first}, {"PartNumber": 1, "ETag": second}]})
    assert s3.get_object(Bucket="twice", Key="k")["Body"].read() == b"second"


def test_parts_sent_at_once_under_one_number_agree_with_their_etag(s3: Any, s3_cluster: LocalCluster) -> None:
    """Whichever of concurrent uploads of one part wins, the bytes Complete uses are the ones
    whose ETag ListParts shows."""
    s3.create_bucket(Bucket="racing")
    uid = s3.create_multipart_upload(Bucket="racing", Key="k")["UploadId"]
    bodies = {hashlib.md5(bytes([n]) * 300_000).hexdigest(): bytes([n]) * 300_000 for n in range(6)}

    def send(body: bytes) -> None:
        s3.upload_part(Bucket="racing", Key="k", UploadId=uid, PartNumber=1, Body=body)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(send, bodies.values()))
    listed = s3.list_parts(Bucket="racing", Key="k", UploadId=uid)["Parts"]
    assert len(listed) == 1
    s3.complete_multipart_upload(Bucket="racing", Key="k", UploadId=uid,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": listed[0]["ETag"]}]})
    assert s3.get_object(Bucket="racing", Key="k")["Body"].read() == bodies[listed[0]["ETag"].strip('"')]


@pytest.fixture(scope="module")
def copy_target(s3: Any) -> str:
    """An upload into ``ranges/dest``, and ``ranges/src`` of 5 bytes to copy parts from."""
    s3.create_bucket(Bucket="ranges")
    s3.put_object(Bucket="ranges", Key="src", Body=b"12345")
    return s3.create_multipart_upload(Bucket="ranges", Key="dest")["UploadId"]


def copy_part(s3: Any, uid: str, spec: str) -> Any:
    return s3.upload_part_copy(Bucket="ranges", Key="dest", UploadId=uid, PartNumber=1,
                               CopySource={"Bucket": "ranges", "Key": "src"}, CopySourceRange=spec)


@pytest.mark.parametrize("spec", ["0-2", "bytes=0", "bytes=hello-world", "bytes=0-bar", "bytes=hello-",
                                  "bytes=0-2,3-5", "bytes= 0-2", "bytes=+0-2", "bytes=0-1_0", "bytes=3-1"])
def test_a_malformed_copy_source_range_is_invalid_argument(s3: Any, copy_target: str, spec: str) -> None:
    assert error_of(copy_part, s3=s3, uid=copy_target, spec=spec) == (400, "InvalidArgument")


def test_a_copy_source_range_past_the_end_is_invalid_range(s3: Any, copy_target: str) -> None:
    for spec in ("bytes=0-5", "bytes=5-5", "bytes=0-21"):
        assert error_of(copy_part, s3=s3, uid=copy_target, spec=spec) == (416, "InvalidRange")
    assert copy_part(s3, copy_target, "bytes=1-3")["CopyPartResult"]["ETag"] == f'"{hashlib.md5(b"234").hexdigest()}"'
