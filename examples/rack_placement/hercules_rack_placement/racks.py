"""Which rack a chunkserver sits in: a mapping from the settings, else derived from its address."""

from __future__ import annotations

import ipaddress

import attrs

from hercules_core.plugins.types import ServerView

DERIVATIONS = ("host", "subnet")


def parse_racks(text: str) -> dict[str, str]:
    """``"10.0.0.5:8081=r1, 10.0.1.7=r2"`` as ``{"10.0.0.5:8081": "r1", "10.0.1.7": "r2"}``.

    ``ValueError`` names the piece that is not ``server=rack``: the master then refuses to start
    with the setting's name in the message, instead of placing replicas on a guess.
    """
    racks: dict[str, str] = {}
    for piece in text.replace("\n", ",").split(","):
        if not piece.strip():
            continue
        server, sep, rack = (part.strip() for part in piece.partition("="))
        if not sep or not server or not rack:
            raise ValueError(f"racks: {piece.strip()!r} is not server=rack (server as host:port, host or id)")
        if racks.get(server, rack) != rack:
            raise ValueError(f"racks: {server} is put in both {racks[server]!r} and {rack!r}")
        racks[server] = rack
    return racks


def subnet_of(host: str) -> str:
    """An IPv4 host's /24 (``10.0.3``), an IPv6 host's /64; any other name stands for itself."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


@attrs.frozen
class RackMap:
    """A server's rack: by ``host:port``, then host, then server id in ``racks``; else derived."""

    racks: dict[str, str] = attrs.field(factory=dict)
    derive: str = attrs.field(default="host", validator=attrs.validators.in_(DERIVATIONS))

    def rack_of(self, server: ServerView) -> str:
        for key in (str(server.address), server.address.host, server.server_id):
            if key in self.racks:
                return self.racks[key]
        host = server.address.host
        return subnet_of(host) if self.derive == "subnet" else host
