"""Every error on the S3 port is S3's XML (``<Error><Code>..</Code><Message>..</Message>..``), those
aiohttp's parser and server answer before a handler runs included (a bad request line, a header or
request line too long, an unknown ``Expect``, too many connections); the REST port keeps its JSON.
Raw sockets, so that nothing between the test and the gateway tidies a request up."""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST, read_http_answer
from tests.s3_fixtures import ACCESS, SECRET

PER_CLIENT = 8
LIMITS = {"HERCULES_HTTP_MAX_HEADER": "16KiB", "HERCULES_HTTP_MAX_URL": "32KiB",
          "HERCULES_HTTP_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT)}
WAIT = 60.0  # a read that never ends fails the test instead of hanging it


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    settings = {**FAST, **LIMITS, "HERCULES_S3_ACCESS_KEY": ACCESS, "HERCULES_S3_SECRET_KEY": SECRET}
    with LocalCluster(tmp_path_factory.mktemp("s3errors"), settings=settings) as c:
        yield c


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(WAIT)
    sock.connect(("127.0.0.1", port))
    return sock


def _raw(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as is; the status, headers and body of the answer."""
    with _connect(port) as sock:
        sock.sendall(data)
        return read_http_answer(sock)


def _s3_error(headers: dict[str, str], body: bytes) -> tuple[str, str]:
    """The (Code, Message) of an S3 XML error body; fails if the body is anything else."""
    assert headers["content-type"].startswith("application/xml"), (headers, body[:200])
    root = ET.fromstring(body)
    assert root.tag == "Error", body[:200]
    code, message = root.findtext("Code"), root.findtext("Message")
    assert code and message and root.findtext("RequestId"), body[:200]
    return code, message


@pytest.mark.parametrize(("request_bytes", "status", "code"), [
    (b"GARBAGE\r\n\r\n", 400, "BadRequest"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", 400, "BadRequest"),
    (b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n", 400, "BadRequest"),
    (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400, "BadRequest"),
    (b"PUT /b/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n",
     400, "BadRequest"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (17 << 10) + b"\r\n\r\n", 431,
     "RequestHeaderSectionTooLarge"),
    (b"GET /b?prefix=" + b"a" * (33 << 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "InvalidURI"),
    (b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 42-elephants\r\nConnection: close\r\n"
     b"\r\nab", 417, "NotImplemented"),
], ids=["garbage", "bad-length", "bad-header", "bad-version", "bad-chunk", "header-431", "line-414", "expect"])
def test_aiohttps_own_refusals_are_s3_xml(cluster: LocalCluster, request_bytes: bytes, status: int,
                                          code: str) -> None:
    got, headers, body = _raw(cluster.s3_port, request_bytes)
    assert got == status
    assert _s3_error(headers, body)[0] == code


def _signed(cluster: LocalCluster, method: str, path: str, headers: dict[str, str]) -> bytes:
    """A request head signed with SigV4 for the cluster's key, the body left to the caller."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=f"{cluster.s3_url}{path}",
                         headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD", **headers})
    SigV4Auth(Credentials(ACCESS, SECRET), "s3", "us-east-1").add_auth(request)
    lines = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{cluster.s3_port}\r\n{lines}Connection: close\r\n\r\n".encode()


def test_a_method_s3_does_not_know_is_405_method_not_allowed(cluster: LocalCluster) -> None:
    got, headers, body = _raw(cluster.s3_port, _signed(cluster, "PATCH", "/b/k", {"Content-Length": "0"}))
    assert got == 405 and _s3_error(headers, body)[0] == "MethodNotAllowed"


def test_an_unsigned_request_is_403_access_denied(cluster: LocalCluster) -> None:
    got, headers, body = _raw(cluster.s3_port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert got == 403 and _s3_error(headers, body)[0] == "AccessDenied"


def test_a_body_past_s3s_object_size_is_entity_too_large(cluster: LocalCluster) -> None:
    """S3 refuses an object over 5 TiB from its Content-Length, before reading a byte of it."""
    assert _raw(cluster.s3_port, _signed(cluster, "PUT", "/big", {"Content-Length": "0"}))[0] == 200
    got, headers, body = _raw(cluster.s3_port, _signed(cluster, "PUT", "/big/huge", {"Content-Length": str(6 << 40)}))
    assert got == 400 and _s3_error(headers, body)[0] == "EntityTooLarge"


def test_too_many_connections_is_s3_xml_slow_down(cluster: LocalCluster) -> None:
    held = [_connect(cluster.s3_port, "127.0.0.9") for _ in range(PER_CLIENT)]
    try:
        for sock in held:  # each connection counted before the next is opened
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.recv(1)
        with _connect(cluster.s3_port, "127.0.0.9") as extra:
            extra.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            got, headers, body = read_http_answer(extra)
        assert got == 429 and _s3_error(headers, body)[0] == "SlowDown"
    finally:
        for sock in held:
            sock.close()


def test_the_rest_port_keeps_its_json(cluster: LocalCluster) -> None:
    got, headers, body = _raw(cluster.gateway_port, b"GARBAGE\r\n\r\n")
    assert got == 400 and headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "bad_request"


def _boto(cluster: LocalCluster) -> object:
    from tests.s3_fixtures import make_client

    return make_client(cluster.s3_url)


def _code(call: object, *args: object, **kwargs: object) -> tuple[int, str]:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as exc:
        call(*args, **kwargs)  # type: ignore[operator]
    return exc.value.response["ResponseMetadata"]["HTTPStatusCode"], exc.value.response["Error"]["Code"]


@pytest.mark.parametrize("name", ["foo.-bar", "foo-.bar", "a..b", "-ab", "AB1"])
def test_a_bucket_name_s3_refuses_is_invalid_bucket_name(cluster: LocalCluster, name: str) -> None:
    s3 = _boto(cluster)
    from botocore.exceptions import ParamValidationError

    try:
        status, code = _code(s3.create_bucket, Bucket=name)  # type: ignore[attr-defined]
    except ParamValidationError:  # botocore refuses some names itself
        return
    assert (status, code) == (400, "InvalidBucketName")


def test_ranges_and_part_numbers_past_the_object(cluster: LocalCluster) -> None:
    s3 = _boto(cluster)
    s3.create_bucket(Bucket="parts")  # type: ignore[attr-defined]
    s3.put_object(Bucket="parts", Key="k", Body=b"testcontent")  # type: ignore[attr-defined]
    assert _code(s3.get_object, Bucket="parts", Key="k", Range="bytes=40-50") == (416, "InvalidRange")  # type: ignore[attr-defined]
    assert s3.get_object(Bucket="parts", Key="k", PartNumber=1)["Body"].read() == b"testcontent"  # type: ignore[attr-defined]
    assert _code(s3.get_object, Bucket="parts", Key="k", PartNumber=2) == (400, "InvalidPart")  # type: ignore[attr-defined]


def test_a_presigned_url_valid_past_a_week_is_refused(cluster: LocalCluster) -> None:
    import urllib.error
    import urllib.request

    s3 = _boto(cluster)
    s3.create_bucket(Bucket="presign")  # type: ignore[attr-defined]
    s3.put_object(Bucket="presign", Key="k", Body=b"x")  # type: ignore[attr-defined]
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "presign", "Key": "k"},  # type: ignore[attr-defined]
                                    ExpiresIn=7 * 24 * 3600 + 1)
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(url, timeout=WAIT)
    assert exc.value.code == 403 and ET.fromstring(exc.value.read()).findtext("Code") == "AccessDenied"


def test_options_without_an_origin_is_400_and_needs_no_signature(cluster: LocalCluster) -> None:
    """A CORS preflight is never signed; without Origin S3 answers 400, with one 403 (no CORS here)."""
    got, headers, body = _raw(cluster.s3_port, b"OPTIONS /b/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert got == 400 and _s3_error(headers, body)[0] == "BadRequest"
    got, headers, body = _raw(cluster.s3_port, b"OPTIONS /b/k HTTP/1.1\r\nHost: x\r\nOrigin: http://a.example\r\n"
                                               b"Access-Control-Request-Method: GET\r\nConnection: close\r\n\r\n")
    assert got == 403 and _s3_error(headers, body)[0] == "CORSResponse"


def test_conditional_puts_are_412_precondition_failed(cluster: LocalCluster) -> None:
    """PutObject with If-Match (the current ETag, or ``*``: it exists) or If-None-Match (``*``: it does not)."""
    s3 = _boto(cluster)
    s3.create_bucket(Bucket="cond")  # type: ignore[attr-defined]

    def put(body: bytes, **condition: str) -> object:
        def add(params: dict, **_: object) -> None:
            params["headers"].update(condition)

        s3.meta.events.register("before-call.s3.PutObject", add)  # type: ignore[attr-defined]
        try:
            return s3.put_object(Bucket="cond", Key="k", Body=body)  # type: ignore[attr-defined]
        finally:
            s3.meta.events.unregister("before-call.s3.PutObject", add)  # type: ignore[attr-defined]

    assert _code(put, b"x", **{"If-Match": "*"}) == (404, "NoSuchKey")
    etag = put(b"one", **{"If-None-Match": "*"})["ETag"]  # type: ignore[index]
    assert _code(put, b"two", **{"If-None-Match": "*"}) == (412, "PreconditionFailed")
    assert _code(put, b"two", **{"If-None-Match": etag}) == (412, "PreconditionFailed")
    assert _code(put, b"two", **{"If-Match": '"0000"'}) == (412, "PreconditionFailed")
    put(b"two", **{"If-Match": etag})
    assert s3.get_object(Bucket="cond", Key="k")["Body"].read() == b"two"  # type: ignore[attr-defined]
