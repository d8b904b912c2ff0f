"""Errors as coreutils words them: ``hercules: cannot stat '/x': No such file or directory``.

A command names what it was doing (``failing("cannot stat", path)``); the error code the
cluster sent becomes the errno text a shell user knows. ``main`` prints one line, exit 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hercules_core import errors as e

ERRNO_TEXT: dict[type[e.HerculesError], str] = {
    e.NotFound: "No such file or directory",
    e.AlreadyExists: "File exists",
    e.NotEmpty: "Directory not empty",
    e.NotADirectory: "Not a directory",
    e.IsADirectory: "Is a directory",
    e.Forbidden: "Permission denied",
    e.NoSpace: "No space left on device",
}


class Unreachable(e.HerculesError):
    """The cluster's front door (master or gateway) does not answer: one line, exit 1."""

    code = "unreachable"
    http_status = 503


class CommandError(Exception):
    """A failed operation (exit 1) or a misuse (exit 2), already worded for the user."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message, self.exit_code = message, exit_code


def errno_text(exc: e.HerculesError) -> str:
    for kind, text in ERRNO_TEXT.items():
        if isinstance(exc, kind):
            return text
    return exc.message


@contextmanager
def failing(what: str, path: str, hint: dict[type[e.HerculesError], str] | None = None) -> Iterator[None]:
    """Turn a cluster error inside into ``<what> '<path>': <errno text>[ (hint)]``."""
    try:
        yield
    except (CommandError, Unreachable):
        raise
    except e.HerculesError as exc:
        if isinstance(exc, e.Unavailable):  # the cluster's trouble, not this path's
            raise CommandError(exc.message) from None
        hints = {**(hint or {}), e.Unauthenticated: "give the gateway a token: --token or HERCULES_TOKEN"}
        extra = next((f" ({text})" for kind, text in hints.items() if isinstance(exc, kind)), "")
        raise CommandError(f"{what} '{path}': {errno_text(exc)}{extra}") from None
    except OSError as exc:  # the local side: a file to read or a directory to write
        name = exc.filename if exc.filename is not None else path
        raise CommandError(f"{what} '{name}': {exc.strerror or exc}") from None
