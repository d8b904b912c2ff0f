"""HTTP limits of the gateway's listeners: what a hostile or broken client may hold, and for how long.

aiohttp bounds a request line and a header line, but a connection that never completes a request
head is held until its keep-alive timer (an hour by default), any number of connections per address
are served, and its parser's own refusals are plain text. The listener here adds a head timeout
(slowloris and idle connections are cut off), a connection count per client address (429), and
answers every parser refusal in the gateway's JSON error shape (414 for a request line, 431 for a
header, else 400); an application may answer them in a shape of its own (``REFUSAL_KEY``: the S3
port's XML). Body and response timeouts are the handlers' (``rest_v1``); each value is a
``Config`` field (``HERCULES_HTTP_*``), see docs/security.md.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from hercules_core.config import Config
from hercules_core.paths import split

log = logging.getLogger(__name__)
REFUSED_LINGER = 1.0  # seconds a refused connection stays open for its answer to be read


@attrs.frozen
class HttpLimits:
    max_body: int
    max_header: int
    max_url: int
    max_path_depth: int
    max_connections_per_client: int
    head_timeout: float
    idle_timeout: float
    body_timeout: float
    write_timeout: float

    @classmethod
    def of(cls, config: Config) -> "HttpLimits":
        return cls(**{f.name: getattr(config, f"http_{f.name}") for f in attrs.fields(cls)})

    def runner_args(self) -> dict[str, Any]:
        """aiohttp's own bounds: its parser refuses longer lines, its keep-alive timer closes idle ones."""
        return {"max_line_size": self.max_url, "max_field_size": self.max_header,
                "keepalive_timeout": self.idle_timeout}


def json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


# (status, our error code, message) -> the answer: an application's shape for the refusals made
# outside its handlers (parser, unknown Expect, connections per address); ``json_error`` if unset.
Refusal = Callable[[int, str, str], web.Response]
REFUSAL_KEY = web.AppKey("hercules.refusal", Refusal)  # type: ignore[arg-type]


def parser_refusal(exc: BaseException | None, status: int, message: str | None,
                   in_headers: bool = True, render: Refusal = json_error) -> web.Response:
    """The answer to a request aiohttp's parser refused (or a handler failure past every middleware);
    a line too long is the request line's unless ``in_headers`` (its message does not say which)."""
    if status >= 500:
        return render(500, "internal", "the gateway failed to answer this request (logged)")
    text = (getattr(exc, "message", None) or message or "malformed request").removeprefix("400, message: ")
    text = " ".join(str(text).split())
    if isinstance(exc, LineTooLong):
        if in_headers:
            return render(431, "header_too_large", f"a request header is too long: {text}")
        return render(414, "uri_too_long", f"the request line is too long: {text}")
    if "too many headers" in text.lower():
        return render(431, "header_too_large", f"the request has too many headers: {text}")
    return render(status, "bad_request", f"malformed HTTP request: {text}")


class LimitedHandler(RequestHandler):
    """aiohttp's connection handler, with a head timeout, a per-address count and JSON refusals."""

    def __init__(self, manager: web.Server, gate: "ConnectionGate", render: Refusal = json_error,
                 **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.gate, self.render = gate, render
        self.peer: str | None = None
        self.refused = False
        self.head_timer: asyncio.TimerHandle | None = None
        self.line_done = False  # the current request's line has ended: a line too long is a header
        self.refused_in_headers = False  # line_done as it was when the last head was parsed (or refused)
        self.line_bytes = 0  # of the current request line, so far

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else "?"
        if not self.gate.admit(self.peer):
            self.refused = True
            limit = self.gate.limits.max_connections_per_client
            answer = self.render(429, "too_many_connections", f"at most {limit} connections per client address")
            body = answer.body if isinstance(answer.body, bytes) else b""
            transport.write(b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: %s\r\n"  # type: ignore[attr-defined]
                            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
                            % (answer.content_type.encode(), len(body), body))
            # Closed a moment later, its request read and dropped meanwhile: closing with unread bytes
            # would reset the connection and lose the answer before the client read it.
            self._loop.call_later(REFUSED_LINGER, transport.close)
            return
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.refused:
            return
        self.gate.release(self.peer or "?")
        if self.head_timer is not None:
            self.head_timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        count = self._request_count
        self._track_line(data)
        super().data_received(data)
        if self._request_count != count:
            self.refused_in_headers, self.line_done, self.line_bytes = self.line_done, False, 0
        if self._request_count != count and self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None
        elif self.head_timer is None and not self._request_in_progress:  # the start of a next head
            self._start_head_timer()

    def _track_line(self, data: bytes) -> None:
        """Whether the request line ended within its limit (then a line too long is a header)."""
        if self.line_done or self._request_in_progress:
            return
        end = data.find(b"\n")
        if end < 0:
            self.line_bytes += len(data)
        else:
            self.line_done = self.line_bytes + end <= self.gate.limits.max_url

    def _start_head_timer(self) -> None:
        self.head_timer = self._loop.call_later(self.gate.limits.head_timeout, self._head_expired,
                                                self._request_count)

    def _head_expired(self, count: int) -> None:
        """A request head not complete in time: nothing was being served, so the connection goes."""
        self.head_timer = None
        if self._request_count == count and not self._request_in_progress and not self._messages:
            log.debug("closing a connection from %s: no complete request head in %.0f s", self.peer,
                      self.gate.limits.head_timeout)
            self.force_close()

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            log.error("error handling a request from %s", self.peer, exc_info=exc)
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already being sent")
        response = parser_refusal(exc, status, message, self.refused_in_headers, self.render)
        response.force_close()
        return response


@attrs.define
class ConnectionGate:
    """Counts each client address's open connections, refusing those past the limit."""

    limits: HttpLimits
    open: Counter[str] = attrs.field(factory=Counter)

    def admit(self, peer: str) -> bool:
        if self.open[peer] >= self.limits.max_connections_per_client:
            return False
        self.open[peer] += 1
        return True

    def release(self, peer: str) -> None:
        self.open[peer] -= 1
        if self.open[peer] <= 0:
            del self.open[peer]


class LimitedSite(web.TCPSite):
    """A TCP site whose connections are ``LimitedHandler`` s sharing one gate."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, limits: HttpLimits,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context, reuse_address=True)
        self.gate = ConnectionGate(limits)

    async def start(self) -> None:
        self._runner._reg_site(self)  # what BaseSite.start does; TCPSite.start's own server is replaced
        server = self._runner.server
        assert server is not None
        app = self._runner.app if isinstance(self._runner, web.AppRunner) else None
        render = app.get(REFUSAL_KEY, json_error) if app is not None else json_error
        if not isinstance(server.request_handler, _JsonHttpErrors):
            server.request_handler = _JsonHttpErrors(server.request_handler, render)

        def handler() -> LimitedHandler:
            return LimitedHandler(server, self.gate, render, loop=server._loop, **server._kwargs)

        self._server = await asyncio.get_running_loop().create_server(
            handler, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
            reuse_address=self._reuse_address)


@attrs.frozen
class _JsonHttpErrors:
    """The application's handler, with the HTTP errors aiohttp raises before any middleware runs
    (an ``Expect`` it does not know: 417) answered in our shape instead of plain text."""

    handler: Any
    render: Refusal = json_error

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await self.handler(request)
        except web.HTTPException as exc:
            if exc.status < 400 or exc.content_type == "application/json":
                raise
            code = {417: "expectation_failed"}.get(exc.status, "http_error")
            return self.render(exc.status, code, f"{request.method} {request.path}: {exc.text or exc.reason}")


def url_middleware(limits: HttpLimits):  # type: ignore[no-untyped-def]
    """414 for a request target past ``max_url``, 400 for a path deeper than ``max_path_depth``."""

    @web.middleware
    async def check_url(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if len(request.raw_path) > limits.max_url:
            return json_error(414, "uri_too_long", f"the request target is longer than {limits.max_url} bytes")
        for path in (request.path, request.query.get("path", "")):
            if len(split(path)) > limits.max_path_depth:
                return json_error(400, "invalid_argument",
                                  f"a path may have at most {limits.max_path_depth} segments")
        return await handler(request)

    return check_url
