"""Logging for ``hercules serve``: plain text, or one JSON object per line (``HERCULES_LOG_FORMAT=json``).

A JSON line holds ``time`` (UTC, ISO 8601), ``level``, ``role``, ``logger``, ``message``, and when
there is one the ``request_id`` (the gateway names each HTTP request: its ``X-Request-Id`` or a new
id), the error ``code`` (a ``HerculesError``'s, or ``extra={"code": ...}``) and the ``exception``.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import uuid
from collections.abc import Iterator

from hercules_core.errors import HerculesError

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("hercules_request_id", default=None)


@contextlib.contextmanager
def request_scope(request_id: str | None = None) -> Iterator[str]:
    """Name what runs inside (in this task) with ``request_id``, or a new id; log lines carry it."""
    request_id = request_id or uuid.uuid4().hex[:16]
    token = REQUEST_ID.set(request_id)
    try:
        yield request_id
    finally:
        REQUEST_ID.reset(token)


class JsonFormatter(logging.Formatter):
    def __init__(self, role: str | None) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "role": self.role,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            line["request_id"] = request_id
        code = getattr(record, "code", None)
        if code is None and record.exc_info and isinstance(record.exc_info[1], HerculesError):
            code = record.exc_info[1].code
        if code is not None:
            line["code"] = code
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup_logging(level: str, fmt: str = "text", role: str | None = None) -> None:
    """Configure the root logger. Handlers already there (the container entry point's stderr and
    rotating file) are kept and given the chosen format; otherwise one stderr handler is added."""
    formatter = JsonFormatter(role) if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        if fmt == "json" or handler.formatter is None:
            handler.setFormatter(formatter)
    root.setLevel(level.upper())


__all__ = ["REQUEST_ID", "JsonFormatter", "request_scope", "setup_logging"]
