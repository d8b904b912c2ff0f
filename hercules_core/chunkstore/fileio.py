"""How bytes reach the disk: whole-buffer ``pwrite``/``pread``, ``fdatasync``, quiet unlinks, the
one atomic file replacement of the project, and the one thread hop per store operation.

Everything here is synchronous except ``run_in_thread``, so a store can do all of an
operation's file work in one executor call.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from hercules_core.errors import InvalidArgument
from hercules_core.fsync import fsync_dir, fsync_path
from hercules_core.plugins.types import Buffer

T = TypeVar("T")

TMP_SUFFIX = ".tmp"


def datasync(fd: int) -> None:
    """fdatasync where the OS has it: data and size reach the disk, timestamps need not."""
    getattr(os, "fdatasync", os.fsync)(fd)


def pwrite_all(fd: int, data: Buffer, offset: int) -> None:
    """All of ``data`` at ``offset`` (``os.pwrite`` may write less than it is given)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


class WouldBlock(Exception):
    """A read asked of the page cache alone needs the disk (or the OS cannot tell)."""


_thread = threading.local()
_nowait = getattr(os, "RWF_NOWAIT", None) if hasattr(os, "preadv") else None


@contextmanager
def page_cache_only() -> Iterator[None]:
    """On this thread and within this block, ``pread_upto`` takes only what the page cache holds
    (``preadv`` with ``RWF_NOWAIT``) and raises ``WouldBlock`` for anything else, so a store's
    own read code can run on the event loop without ever waiting for the disk."""
    if _nowait is None:
        raise WouldBlock("this OS cannot read from the page cache alone")
    _thread.cache_only = True
    try:
        yield
    finally:
        _thread.cache_only = False


def _pread_cached(fd: int, size: int, offset: int) -> bytes:
    global _nowait
    buf = bytearray(size)
    try:
        got = os.preadv(fd, [buf], offset, _nowait)
    except BlockingIOError:
        raise WouldBlock("not in the page cache") from None
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        _nowait = None  # this file system does not do it: never ask again
        raise WouldBlock("RWF_NOWAIT is not supported here") from None
    if got != size:  # partly cached, or the file ends first: the normal read tells which
        raise WouldBlock("a short read")
    return bytes(buf)


def pread_upto(fd: int, size: int, offset: int) -> bytes:
    """``size`` bytes from ``offset``; shorter only when the file ends first."""
    if getattr(_thread, "cache_only", False):
        return _pread_cached(fd, size, offset)
    parts: list[bytes] = []
    while size > 0:
        piece = os.pread(fd, size, offset)
        if not piece:
            break
        parts.append(piece)
        size -= len(piece)
        offset += len(piece)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def unlink_quiet(path: Path) -> int:
    """Remove ``path`` if it exists; return the bytes freed."""
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return 0
    return size


def tmp_path_for(path: Path, tag: str = "") -> Path:
    """The tmp file ``write_atomic`` fills for ``path``: ``<name>[.<tag>].tmp`` beside it."""
    return path.with_name(f"{path.name}.{tag}{TMP_SUFFIX}" if tag else f"{path.name}{TMP_SUFFIX}")


def write_atomic(path: Path, payload: Buffer, tag: str = "", mode: int = 0o644) -> None:
    """Write ``path`` so a crash leaves the old or the new content, never a mix.

    tmp file + fsync + ``os.replace`` + directory fsync. ``tag`` goes into the tmp file's name,
    so a writer (a store session) can tell its own in-flight tmp files from a previous run's;
    ``mode`` is the tmp file's from its creation (a secret is never readable by others, even
    before the rename).
    """
    os.close(write_atomic_open(path, payload, tag, mode))


def write_atomic_open(path: Path, payload: Buffer, tag: str = "", mode: int = 0o644) -> int:
    """``write_atomic``, and the new file left open for reading and writing: its descriptor
    (a log replaced this way is written on at once, with no open or read to find its end)."""
    tmp = tmp_path_for(path, tag)
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, mode)
        try:
            pwrite_all(fd, payload, 0)
            os.fsync(fd)
            os.replace(tmp, path)
        except BaseException:
            os.close(fd)
            raise
    except BaseException:
        unlink_quiet(tmp)
        raise
    try:
        fsync_dir(path.parent)
    except BaseException:
        os.close(fd)
        raise
    return fd


def replace_durably(built: Path, path: Path) -> None:
    """``write_atomic`` for a file something else filled (e.g. a SQLite backup): fsync ``built``,
    rename it over ``path``, fsync the directory. ``built`` must sit in ``path``'s directory."""
    fsync_path(built)
    os.replace(built, path)
    fsync_dir(path.parent)


def as_byte_view(data: Buffer) -> memoryview:
    """A flat unsigned-byte view of any buffer (callers may pass views of other formats)."""
    try:
        view = memoryview(data)
    except TypeError:
        raise InvalidArgument(f"chunk data must be bytes-like, not {type(data).__name__}") from None
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
    return view


async def run_in_thread(fn: Callable[..., T], /, *args: Any) -> T:
    """Run ``fn`` on the default executor: one thread hop for a whole operation.

    A thread cannot be cancelled, so a cancelled caller still waits for it before
    re-raising: a lock held around this call then really covers all of the file work.
    """
    future = asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            try:
                await asyncio.wait([future])
            except asyncio.CancelledError:
                pass
        if not future.cancelled():
            future.exception()  # retrieved: the caller's cancellation is what propagates
        raise


__all__ = [
    "TMP_SUFFIX",
    "WouldBlock",
    "as_byte_view",
    "datasync",
    "fsync_dir",
    "fsync_path",
    "page_cache_only",
    "pread_upto",
    "pwrite_all",
    "replace_durably",
    "run_in_thread",
    "tmp_path_for",
    "unlink_quiet",
    "write_atomic",
    "write_atomic_open",
]
