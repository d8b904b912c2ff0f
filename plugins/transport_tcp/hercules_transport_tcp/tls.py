"""TLS for the native transport: the plugin's settings and the ``ssl`` contexts built from them.

Every role both listens and dials, so one certificate and key serve both ends: a listener
presents it, a dialler presents it when the listener asks (mutual TLS, ``tls_client_auth``).
Peers are verified against ``tls_ca`` (the system's CAs when empty), host names included.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import attrs

from hercules_core.errors import ConfigError
from hercules_core.plugins.types import SettingSpec

SETTINGS = (
    SettingSpec("tls", bool, False, help="frames over TLS (every role and client of the cluster alike)"),
    SettingSpec("tls_cert", str, "", help="PEM certificate chain this process presents (listeners need one)"),
    SettingSpec("tls_key", str, "", help="PEM private key of tls_cert"),
    SettingSpec("tls_ca", str, "", help="PEM CA bundle peers are verified against (empty: the system's)"),
    SettingSpec("tls_client_auth", bool, False,
                help="listeners require a client certificate signed by tls_ca (mutual TLS)"),
)


@attrs.frozen
class TlsOptions:
    enabled: bool = False
    cert: str = ""
    key: str = ""
    ca: str = ""
    client_auth: bool = False

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "TlsOptions":
        return cls(options["tls"], options["tls_cert"], options["tls_key"], options["tls_ca"],
                   options["tls_client_auth"])


def _load(ctx: ssl.SSLContext, tls: TlsOptions, verify: bool) -> ssl.SSLContext:
    """Load this process's certificate (if any) and, when it verifies peers, the CAs."""
    try:
        if verify and tls.ca:
            ctx.load_verify_locations(cafile=tls.ca)
        elif verify:
            ctx.load_default_certs()
        if tls.cert:
            ctx.load_cert_chain(tls.cert, tls.key or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"transport tcp TLS files (cert {tls.cert!r}, key {tls.key!r}, ca {tls.ca!r}): {exc}") \
            from None
    return ctx


@functools.lru_cache(maxsize=8)
def server_context(tls: TlsOptions) -> ssl.SSLContext:
    if not tls.cert:
        raise ConfigError("transport tcp: tls is on but tls_cert is empty (HERCULES_TRANSPORT_TCP_TLS_CERT)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.client_auth:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return _load(ctx, tls, verify=tls.client_auth)


@functools.lru_cache(maxsize=8)
def client_context(tls: TlsOptions) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and the host name
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return _load(ctx, tls, verify=True)
