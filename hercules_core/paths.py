"""Path validation: one definition of a legal Hercules path, used by every role."""

from __future__ import annotations

from hercules_core.errors import Forbidden, InvalidArgument

MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
RESERVED = "/.hercules"  # hidden from listings of /
UPLOADS = f"{RESERVED}/uploads"  # uploads in flight live here until published by rename


def normalize(path: object, *, what: str = "path") -> str:
    """An absolute path without ``.``/``..``/empty segments or NUL, at most 4096 bytes."""
    if not isinstance(path, str):
        raise InvalidArgument(f"{what} must be a string")
    if not path:
        raise InvalidArgument(f"{what} is empty")
    if "\x00" in path:
        raise InvalidArgument(f"{what} contains a NUL byte")
    if len(path.encode()) > MAX_PATH_BYTES:
        raise InvalidArgument(f"{what} is longer than {MAX_PATH_BYTES} bytes")
    if not path.startswith("/"):
        raise InvalidArgument(f"{what} {path!r} is not absolute (it must start with /)")
    parts = [p for p in path.split("/") if p]
    for part in parts:
        if part in (".", ".."):
            raise InvalidArgument(f"{what} {path!r} has a '{part}' segment")
        if len(part.encode()) > MAX_NAME_BYTES:
            raise InvalidArgument(f"{what} has a name longer than {MAX_NAME_BYTES} bytes")
    return "/" + "/".join(parts)


def split(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def parent_and_name(path: str) -> tuple[str, str]:
    head, _, name = path.rpartition("/")
    return head or "/", name


def within(path: str, ancestor: str) -> bool:
    """Whether ``path`` is ``ancestor`` or lies under it (both normalized; ``/`` holds everything)."""
    return ancestor == "/" or path == ancestor or path.startswith(ancestor + "/")


def public(path: str, action: str) -> str:
    """``path`` unless it is in the internal tree, which only the master itself may change or show."""
    if within(path, RESERVED):
        raise Forbidden(f"{path}: {RESERVED} is the internal tree (uploads in progress, the trash); "
                        f"clients may not {action} it or anything under it")
    return path
