"""fsspec filesystem for Hercules: ``hercules://HOST:PORT/path`` for pandas, pyarrow and dask.

It speaks the native protocol through the client library's blocking ``SyncClient`` (and its
streaming ``upload_stream`` for files opened for writing), so data goes straight to the chunkservers.
"""

from __future__ import annotations

import errno
import os
import posixpath
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from hercules_core.client.sync import SyncClient
from hercules_core.client.upload_stream import UploadStream
from hercules_core.errors import (
    AlreadyExists,
    Forbidden,
    HerculesError,
    InvalidArgument,
    IsADirectory,
    NotADirectory,
    NotEmpty,
    NotFound,
)
from hercules_core.messages import FileInfo

__all__ = ["HerculesFileSystem", "HerculesFile", "DEFAULT_MASTER"]

DEFAULT_MASTER = "127.0.0.1:9090"
T = TypeVar("T")

_ERRORS: list[tuple[type[HerculesError], Callable[[str], OSError]]] = [
    (NotFound, lambda msg: FileNotFoundError(errno.ENOENT, msg)),
    (AlreadyExists, lambda msg: FileExistsError(errno.EEXIST, msg)),
    (IsADirectory, lambda msg: IsADirectoryError(errno.EISDIR, msg)),
    (NotADirectory, lambda msg: NotADirectoryError(errno.ENOTDIR, msg)),
    (NotEmpty, lambda msg: OSError(errno.ENOTEMPTY, msg)),
    (Forbidden, lambda msg: PermissionError(errno.EACCES, msg)),
]


@contextmanager
def _os_errors() -> Iterator[None]:
    """Hercules errors as the builtin exceptions fsspec callers (and its test suite) catch."""
    try:
        yield
    except HerculesError as exc:
        for kind, make in _ERRORS:
            if isinstance(exc, kind):
                raise make(str(exc)) from exc
        if isinstance(exc, InvalidArgument):
            raise ValueError(str(exc)) from exc
        raise


def _split_url(path: str) -> tuple[str, str]:
    """``hercules://host:port/a/b`` as (``host:port``, ``/a/b``); a bare path has no netloc."""
    if path.startswith("hercules://"):
        netloc, slash, rest = path[len("hercules://"):].partition("/")
        return netloc, "/" + rest if slash else "/"
    if path.startswith("hercules::"):
        return "", path[len("hercules::"):]
    return "", path


class HerculesFileSystem(AbstractFileSystem):
    """Files and directories of one Hercules cluster, reached at its master.

    The master is the URL's ``host:port``, else ``master=`` (``storage_options``), else
    ``HERCULES_MASTER``, else ``127.0.0.1:9090``. Paths are absolute (``/data/x.csv``).
    """

    protocol = "hercules"
    root_marker = "/"
    DEFAULT_BLOCK_SIZE = 4 << 20  # one piece of the data path: a write mutation or a read request

    def __init__(self, master: str | None = None, transport: str = "tcp", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.master = master or os.environ.get("HERCULES_MASTER") or DEFAULT_MASTER
        self.client = SyncClient(self.master, transport)

    # -- paths ----------------------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        _, path = _split_url(str(os.fspath(path)))
        path = "/" + path.strip("/")
        return path

    @staticmethod
    def _get_kwargs_from_urls(path: str) -> dict[str, Any]:
        netloc, _ = _split_url(path)
        return {"master": netloc} if netloc else {}

    def unstrip_protocol(self, name: str) -> str:
        return name if name.startswith("hercules://") else f"hercules://{self.master}{self._strip_protocol(name)}"

    # -- running the client ---------------------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with _os_errors():
            return fn(*args, **kwargs)

    # -- metadata -------------------------------------------------------------------------------

    def _entry(self, info: FileInfo) -> dict[str, Any]:
        return {
            "name": info.path,
            "size": 0 if info.is_dir else info.size,
            "type": "directory" if info.is_dir else "file",
            "created": info.ctime,
            "mtime": info.mtime,
            "replication": info.replication,
            "file_id": info.file_id,
        }

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._entry(self._call(self.client.stat, self._strip_protocol(path)))

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        info = self._call(self.client.stat, path)
        if info.is_dir:
            entries = [self._entry(e) for e in self._call(self.client.list, path).entries]
        else:
            entries = [self._entry(info)]
        entries.sort(key=lambda e: e["name"])
        return entries if detail else [e["name"] for e in entries]

    def created(self, path: str) -> datetime:
        return datetime.fromtimestamp(self.info(path)["created"], tz=UTC)

    def modified(self, path: str) -> datetime:
        return datetime.fromtimestamp(self.info(path)["mtime"], tz=UTC)

    # -- namespace ------------------------------------------------------------------------------

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        if self.exists(path):
            raise FileExistsError(errno.EEXIST, f"{path}: already exists")
        parent = posixpath.dirname(path)
        if create_parents:
            self.makedirs(parent, exist_ok=True)
        elif not self.isdir(parent):  # a file parent, or a missing one
            raise (NotADirectoryError(errno.ENOTDIR, f"{parent}: not a directory") if self.exists(parent)
                   else FileNotFoundError(errno.ENOENT, f"{parent}: no such directory"))
        self._call(self.client.mkdir, path)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        path = self._strip_protocol(path)
        try:
            info = self.info(path)
        except FileNotFoundError:
            pass
        else:
            if info["type"] != "directory":
                raise FileExistsError(errno.EEXIST, f"{path}: exists and is not a directory")
            if not exist_ok:
                raise FileExistsError(errno.EEXIST, f"{path}: already exists")
            return
        self.makedirs(posixpath.dirname(path), exist_ok=True)
        try:
            self._call(self.client.mkdir, path)
        except FileExistsError:  # made meanwhile by someone else
            if not (exist_ok and self.isdir(path)):
                raise

    def rmdir(self, path: str) -> None:
        path = self._strip_protocol(path)
        if self.info(path)["type"] != "directory":
            raise NotADirectoryError(errno.ENOTDIR, f"{path}: not a directory")
        self._call(self.client.delete, path, False)

    def _rm(self, path: str) -> None:
        self._call(self.client.delete, self._strip_protocol(path), False)

    def rm_file(self, path: str) -> None:
        self._rm(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        """A whole tree goes in one master call (into the trash, as every deletion)."""
        if recursive and maxdepth is None and isinstance(path, str) and not any(c in path for c in "*?["):
            self._call(self.client.delete, self._strip_protocol(path), True)
            self.invalidate_cache()
            return
        super().rm(path, recursive=recursive, maxdepth=maxdepth)

    def mv(self, path1: Any, path2: Any, recursive: bool = False, maxdepth: int | None = None,
           **kwargs: Any) -> None:
        """One atomic rename on the master for a single path; globs and lists as fsspec does."""
        if not (isinstance(path1, str) and isinstance(path2, str)) or any(c in path1 for c in "*?["):
            return super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)
        source, target = self._strip_protocol(path1), self._strip_protocol(path2)
        info = self.info(source)
        if info["type"] == "directory" and not recursive:
            raise IsADirectoryError(errno.EISDIR, f"{source}: is a directory (use recursive=True)")
        if self.isdir(target):
            target = posixpath.join(target, posixpath.basename(source))
        else:
            self.makedirs(posixpath.dirname(target), exist_ok=True)
        self._call(self.client.rename, source, target, info["type"] == "file")

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """A copy-on-write snapshot of the file, renamed over the target: no bytes move, and
        readers of ``path2`` see the old file or the complete copy. A directory (``copy`` walks
        a tree) becomes an empty one, as in fsspec's own local and memory filesystems."""
        source, target = self._strip_protocol(path1), self._strip_protocol(path2)
        if self.info(source)["type"] == "directory":
            self.makedirs(target, exist_ok=True)
            return
        parent, name = posixpath.split(target)
        self.makedirs(parent, exist_ok=True)
        temp = posixpath.join(parent, f".{name}.copy-{uuid.uuid4().hex}")
        self._call(self.client.snapshot, source, temp)
        try:
            self._call(self.client.rename, temp, target, True)
        except BaseException:
            try:
                self._call(self.client.delete, temp, False)
            except OSError:
                pass
            raise

    # -- data -----------------------------------------------------------------------------------

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        path = self._strip_protocol(path)
        if (start is not None and start < 0) or (end is not None and end < 0):
            size = self.size(path)
            start = max(0, size + start) if start is not None and start < 0 else start
            end = max(0, size + end) if end is not None and end < 0 else end
        start = start or 0
        length = -1 if end is None else max(0, end - start)
        return self._call(self.client.read, path, start, length)

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        """One whole-file upload: published atomically, parents made as needed."""
        if mode not in ("overwrite", "create"):
            raise ValueError(f"pipe mode {mode!r} is not 'overwrite' or 'create'")
        self._call(self.client.upload, self._strip_protocol(path), value, overwrite=mode == "overwrite")

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, autocommit: bool = True,
              cache_options: dict[str, Any] | None = None, **kwargs: Any) -> "HerculesFile":
        path = self._strip_protocol(path)
        if mode == "xb" and self.exists(path):
            raise FileExistsError(errno.EEXIST, f"{path}: already exists")
        if mode == "rb" and self.isdir(path):
            raise IsADirectoryError(errno.EISDIR, f"{path}: is a directory")
        return HerculesFile(self, path, mode, block_size or self.DEFAULT_BLOCK_SIZE, autocommit,
                            cache_options=cache_options, **kwargs)


class HerculesFile(AbstractBufferedFile):
    """Reads fetch ranges through the cache fsspec chose; writes stream as blocks fill.

    ``wb``/``xb``: one upload fed block by block (at most one block queued, a few pieces in
    flight), published atomically on ``close``; a ``with`` block left by an exception publishes
    nothing. ``ab``: blocks are written at the file's end as they fill (not atomic).
    """

    fs: HerculesFileSystem

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.fs._call(self.fs.client.read, self.path, start, end - start)

    def _initiate_upload(self) -> None:
        fs = self.fs
        if self.mode == "ab":
            try:
                self._append_at = fs.info(self.path)["size"]
            except FileNotFoundError:
                fs.makedirs(posixpath.dirname(self.path), exist_ok=True)
                fs._call(fs.client.create, self.path)
                self._append_at = 0
            return
        with _os_errors():
            self._upload = fs.client.upload_stream(self.path, overwrite=self.mode == "wb")

    def _upload_chunk(self, final: bool = False) -> bool:
        data = self.buffer.getvalue()
        if self.mode == "ab":
            if data:
                self.fs._call(self.fs.client.write, self.path, self._append_at, data)
                self._append_at += len(data)
            return True
        with _os_errors():
            self._upload.write(data)
            if final:
                self._upload.close()
        return True

    def discard(self) -> None:
        upload: UploadStream | None = getattr(self, "_upload", None)
        if upload is not None:
            upload.abort()

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is not None and self.writable():
            self.discard()
            self.closed = True
            return
        self.close()
