"""host:port parsing shared by config, transports and the client."""

from __future__ import annotations

import ipaddress

import attrs


@attrs.frozen(order=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str, default_host: str = "127.0.0.1") -> "Address":
        """Accept ``host:port``, ``[v6]:port``, ``:port`` or a bare ``port``."""
        text = text.strip()
        if not text:
            raise ValueError("empty address")
        if text.isdigit():
            host, port_text = default_host, text
        elif text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port_text = rest.removeprefix(":")
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise ValueError(f"{text!r} is not host:port")
            host = host or default_host
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r}: port must be a number from 1 to 65535")
        return cls(host, int(port_text))

    @property
    def is_ip_literal(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return self.host == "localhost"
        return True

    def bind_host(self) -> str:
        """Listen on the named IP; a DNS name (as in docker-compose) means every interface."""
        return self.host if self.is_ip_literal else "0.0.0.0"
