"""HTTP limits of the gateway (docs/security.md): slowloris and idle connections are cut off while
other clients keep being served, connections per address (429), body, header, URL and path-depth
limits (413/431/414/400), body and response timeouts freeing transfer slots, and every refusal of
aiohttp's own (400/405/417...) in our JSON error shape."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator

import pytest

from hercules_core.testing.cluster import LocalCluster
from tests.helpers import FAST, Http, read_http_answer

HEAD_TIMEOUT = 2.0
PER_CLIENT = 50
LIMITS = {
    "HERCULES_HTTP_HEAD_TIMEOUT": str(HEAD_TIMEOUT),
    "HERCULES_HTTP_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT),
    "HERCULES_HTTP_MAX_BODY": "64KiB",
    "HERCULES_HTTP_MAX_HEADER": "16KiB",
    "HERCULES_HTTP_MAX_URL": "32KiB",
    "HERCULES_HTTP_MAX_PATH_DEPTH": "100",
    "HERCULES_HTTP_BODY_TIMEOUT": "2",
    "HERCULES_HTTP_WRITE_TIMEOUT": "2",
    "HERCULES_GATEWAY_MAX_INFLIGHT": "2",
}
WAIT = 60.0  # a socket read that never ends fails the test instead of hanging it
BIG = 24 << 20  # far more than the socket buffers of a client that never reads


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("limits"), settings={**FAST, **LIMITS}) as c:
        h = Http(c.gateway_url)
        assert h.request("PUT", "/api/v1/files/big.bin", bytes(BIG))[0] == 201
        h.close()
        yield c


@pytest.fixture
def http(limited: LocalCluster) -> Iterator[Http]:
    h = Http(limited.gateway_url)
    yield h
    h.close()


def _connect(cluster: LocalCluster, source: str = "127.0.0.1", rcvbuf: int | None = None,
             port: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.settimeout(WAIT)
    sock.connect(("127.0.0.1", port or cluster.gateway_port))
    return sock


def _raw(cluster: LocalCluster, data: bytes) -> tuple[int, dict[str, str], dict]:
    """Send ``data`` as is; the status, headers and JSON body of the answer."""
    with _connect(cluster) as sock:
        sock.sendall(data)
        status, headers, body = read_http_answer(sock)
    return status, headers, json.loads(body)


def _closed(sock: socket.socket) -> bool:
    """Whether the gateway closed ``sock`` (waiting at most ``WAIT``)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _our_error(body: dict) -> str:
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"]


def test_idle_and_slowloris_connections_are_cut_off_while_others_are_served(limited: LocalCluster,
                                                                            http: Http) -> None:
    idle = [_connect(limited, f"127.0.0.{10 + i // PER_CLIENT}") for i in range(1000)]
    slow = _connect(limited, "127.0.0.9")
    slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    try:
        served = 0
        deadline = time.monotonic() + 4 * HEAD_TIMEOUT
        while time.monotonic() < deadline:  # the slow client trickles its head; others are answered
            try:
                slow.sendall(b"X-a: b\r\n")
            except OSError:
                break
            status, body = http.json("GET", "/api/v1/fileinfo?path=/big.bin")
            assert status == 200 and body["size"] == BIG
            served += 1
            time.sleep(0.2)
        assert served > 0
        assert _closed(slow)
        assert all(_closed(sock) for sock in idle)
        assert http.json("GET", "/health")[0] == 200
    finally:
        for sock in [*idle, slow]:
            sock.close()


def test_connections_past_the_limit_per_address_get_429(limited: LocalCluster, http: Http) -> None:
    held = [_connect(limited, "127.0.0.5") for _ in range(PER_CLIENT)]
    try:
        extra = _connect(limited, "127.0.0.5")
        extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := extra.recv(65536):
            answer += chunk
        extra.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 429")
        assert _our_error(json.loads(body)) == "too_many_connections"
        assert http.json("GET", "/health")[0] == 200  # another address is served
    finally:
        for sock in held:
            sock.close()


def test_a_json_body_past_the_limit_is_413(http: Http, limited: LocalCluster) -> None:
    status, body = http.json("POST", "/api/v1/mkdir", {"path": "/x", "pad": "p" * (65 << 10)})
    assert status == 413 and _our_error(body) == "too_large"
    chunked = b"10000\r\n" + b" " * 0x10000 + b"\r\n" + b"10\r\n" + b" " * 16 + b"\r\n0\r\n\r\n"
    status, _, body = _raw(limited, b"POST /api/v1/mkdir HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                    b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
    assert status == 413 and _our_error(body) == "too_large"


def test_a_header_past_the_limit_is_431(limited: LocalCluster) -> None:
    status, _, body = _raw(limited, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (17 << 10) + b"\r\n\r\n")
    assert status == 431 and _our_error(body) == "header_too_large"


def test_a_request_line_past_the_limit_is_414(limited: LocalCluster) -> None:
    status, _, body = _raw(limited, b"GET /api/v1/list?path=/" + b"a" * (33 << 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 414 and _our_error(body) == "uri_too_long"


def test_a_path_deeper_than_the_limit_is_400(http: Http) -> None:
    status, body = http.json("GET", "/api/v1/list?path=" + "/a" * 101)
    assert status == 400 and _our_error(body) == "invalid_argument" and "100 segments" in body["error"]["message"]
    status, body = http.json("GET", "/api/v1/files" + "/a" * 101)
    assert status == 400 and _our_error(body) == "invalid_argument"


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", 400),
    (b"GET /health HTTP/1.1\r\nHo st: x\r\n\r\n", 400),
    (b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    (b"POST /api/v1/mkdir HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 42-elephants\r\n"
     b"Connection: close\r\n\r\n{}", 417),
    (b"PUT /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 405),
    (b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
    (b"POST /api/v1/mkdir HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
     b"zz\r\n", 400),
], ids=["garbage", "bad-length", "bad-header", "bad-version", "expect", "method", "not-found", "bad-chunk"])
def test_aiohttps_own_refusals_are_our_json(limited: LocalCluster, request_bytes: bytes, status: int) -> None:
    got, headers, body = _raw(limited, request_bytes)
    assert got == status
    assert headers["content-type"].startswith("application/json")
    _our_error(body)


def test_a_body_that_stops_is_cut_off(limited: LocalCluster, http: Http) -> None:
    status, _, body = _raw(limited, b"POST /api/v1/write?path=/big.bin HTTP/1.1\r\nHost: x\r\n"
                                    b"Content-Length: 1000\r\n\r\nonly this")
    assert status == 400 and _our_error(body) == "invalid_argument" and "sent nothing" in body["error"]["message"]
    assert http.json("GET", "/health")[0] == 200


def test_clients_that_never_read_do_not_hold_the_transfer_slots(limited: LocalCluster, http: Http) -> None:
    _never_reading_clients_are_cut_off(limited, limited.gateway_port, "/api/v1/files/big.bin", http)


def test_s3_clients_that_never_read_do_not_hold_the_transfer_slots(limited: LocalCluster) -> None:
    s3 = Http(limited.s3_url)  # unsigned: no S3 keys are set for this cluster
    try:
        assert s3.request("PUT", "/stuck")[0] == 200
        assert s3.request("PUT", "/stuck/big.bin", bytes(BIG))[0] == 200
        _never_reading_clients_are_cut_off(limited, limited.s3_port, "/stuck/big.bin", s3)
    finally:
        s3.close()


def _never_reading_clients_are_cut_off(cluster: LocalCluster, port: int, path: str, http: Http) -> None:
    """Six GETs of BIG bytes that are never read, three times the transfer slots: each is cut off
    unread, and a client that reads is served meanwhile."""
    stuck = [_connect(cluster, "127.0.0.7", rcvbuf=4096, port=port) for _ in range(6)]
    try:
        for sock in stuck:
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        status, _, data = http.request("GET", path)
        assert status == 200 and len(data) == BIG
        assert all(_cut_while_unread(sock) for sock in stuck)
    finally:
        for sock in stuck:
            sock.close()


def _cut_while_unread(sock: socket.socket) -> bool:
    """Whether the gateway ends ``sock`` 's response (within ``WAIT``) while nothing of it is read.

    Reading first would make a stuck client a reading one: a request still waiting for its slot
    (the slots are given in the order each request's ``open`` returns, not the order of arrival)
    would then be served whole, which is right, and prove nothing."""
    poll = select.poll()
    poll.register(sock, select.POLLRDHUP)  # POLLHUP and POLLERR (a reset) are reported anyway
    if not poll.poll(WAIT * 1000):
        return False
    return _closed_after_draining(sock)


def _closed_after_draining(sock: socket.socket) -> bool:
    """Whether the gateway cut the response short: what is buffered, then the end, before BIG bytes."""
    received = 0
    try:
        while chunk := sock.recv(1 << 20):
            received += len(chunk)
    except ConnectionResetError:
        return True
    return received < BIG
