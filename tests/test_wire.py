"""Codec round trips and frame parsing limits."""

from __future__ import annotations

import pytest

from hercules_core import codec, messages as m
from hercules_core.errors import ProtocolError
from hercules_core.framing import HEADER_SIZE, Frame, FrameLimits, Kind, parse_header

SAMPLES = [
    m.Ok(),
    m.ErrorReply("not_found", "gone"),
    m.Create("/a/b", 2, True),
    m.ListDir("/a", recursive=True, limit=10, cursor="x"),
    m.Register("abc", "127.0.0.1:8081", 10, 5, [m.ChunkReport(1, 2, 3), m.ChunkReport(4, 5, 6)]),
    m.Heartbeat("abc", 1, 2, 3, added=[m.ChunkReport(7, 1, 0)], removed=[9], lease_extensions=[7]),
    m.HeartbeatReply(True, [1, 2], [m.LeaseExtension(7, 3, 60.0)]),
    m.ChunkLocation(12, 0, 3, ["a:1", "b:2"], "a:1", 123.5),
    m.Listing([m.FileInfo("/x", 2, False, 10, 3, 1, 1.0, 2.0)], "x"),
    m.Pong("master", {"chunk_size": 1 << 20}),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda msg: type(msg).__name__)
def test_round_trip(msg: object) -> None:
    assert codec.decode(codec.encode(msg)) == msg


@pytest.mark.parametrize("raw", [b"\x00", b"\x92\xa4nope\x80", b"\x92\xa4stat\x80", b"\x92\xa4stat\x81\xa4path\x05",
                                 b"\xc1", b""])
def test_malformed_messages_raise_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        codec.decode(raw)


def test_header_round_trip_and_limits() -> None:
    limits = FrameLimits(max_meta=100, max_data=1000)
    frame = Frame(Kind.REQUEST, 7, b"x" * 10, b"y" * 1000)
    header = parse_header(frame.header(), limits)
    assert (header.kind, header.request_id, header.meta_len, header.data_len) == (Kind.REQUEST, 7, 10, 1000)
    with pytest.raises(ProtocolError, match="exceeds the 1000-byte frame limit"):
        parse_header(Frame(Kind.REQUEST, 1, b"x", b"y" * 1001).header(), limits)
    with pytest.raises(ProtocolError, match="outside 1..100"):
        parse_header(Frame(Kind.REQUEST, 1, b"x" * 101).header(), limits)
    with pytest.raises(ProtocolError, match="bad frame magic"):
        parse_header(b"GET / HTTP/1.1\r\n"[:HEADER_SIZE], limits)
