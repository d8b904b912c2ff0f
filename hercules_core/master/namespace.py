"""The master's namespace handlers: directories, files, uploads, renames, deletes, the trash
and snapshots. Paths are checked here (``public``: clients never touch the internal tree);
chunks, leases and the snapshot's freezing belong to the chunk authority."""

from __future__ import annotations

import re
import time
import uuid

from hercules_core import messages as m
from hercules_core.config import check_file_end
from hercules_core.errors import AlreadyExists, InvalidArgument, IsADirectory, NotFound
from hercules_core.master.authority import MAX_REPLICATION, AuthorityPart
from hercules_core.master.compose import sharing
from hercules_core.paths import UPLOADS, normalize, parent_and_name, public, within
from hercules_core.rpc import CallContext, Handler

LIST_PAGE = 1000  # entries in one listing reply at most (the store also keeps it under a byte budget)
UPLOAD_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def upload_in_progress(path: str) -> str:
    temp = normalize(path, what="temp")
    if parent_and_name(temp)[0] != UPLOADS:
        raise InvalidArgument(f"{temp} is not an upload in progress")
    return temp


class Namespace(AuthorityPart):
    def handlers(self) -> dict[type, Handler]:
        return {m.Mkdir: self.mkdir, m.Create: self.create, m.Stat: self.stat, m.ListDir: self.list_dir,
                m.Rename: self.rename, m.BeginUpload: self.begin_upload, m.PublishUpload: self.publish,
                m.AbortUpload: self.abort_upload, m.Delete: self.delete, m.Undelete: self.undelete,
                m.ListTrash: self.list_trash, m.PurgeTrash: self.purge_trash, m.Snapshot: self.snapshot}

    def _replication(self, asked: int | None) -> int:
        if asked is None or asked == 0:
            return self.config.replication
        if not 1 <= asked <= MAX_REPLICATION:
            raise InvalidArgument(f"replication must be between 1 and {MAX_REPLICATION}, not {asked}")
        return asked

    async def mkdir(self, msg: m.Mkdir, data: memoryview, ctx: CallContext) -> m.FileInfo:
        return await self.store.mkdir(public(normalize(msg.path), "make"))

    async def create(self, msg: m.Create, data: memoryview, ctx: CallContext) -> m.FileInfo:
        return await self.store.create(public(normalize(msg.path), "create"), self._replication(msg.replication),
                                       msg.exclusive,
                                       request_id=msg.request_id)

    async def stat(self, msg: m.Stat, data: memoryview, ctx: CallContext) -> m.FileInfo:
        return await self.store.stat(public(normalize(msg.path), "look into"))

    async def list_dir(self, msg: m.ListDir, data: memoryview, ctx: CallContext) -> m.Listing:
        if msg.limit < 0:
            raise InvalidArgument("limit must not be negative")
        limit = min(msg.limit or LIST_PAGE, LIST_PAGE)  # every reply fits in one frame; a cursor for more
        entries, cursor = await self.store.list(public(normalize(msg.path), "list"), msg.recursive, limit,
                                                msg.cursor)
        return m.Listing(entries, cursor)

    async def rename(self, msg: m.Rename, data: memoryview, ctx: CallContext) -> m.Ok:
        source = public(normalize(msg.source, what="source"), "rename")
        target = public(normalize(msg.target, what="target"), "rename into")
        async with self.leases.mutating(trees=[source, target]):
            freed = await self.store.rename(source, target, msg.overwrite, request_id=msg.request_id)
        self.cluster.forget(freed.handles)
        return m.Ok()

    # -- uploads ---------------------------------------------------------------------------------

    async def begin_upload(self, msg: m.BeginUpload, data: memoryview, ctx: CallContext) -> m.UploadStarted:
        path = public(normalize(msg.path), "upload into")
        temp = await self._begin_upload(path, msg.replication, msg.overwrite, msg.request_id,
                                        first_chunk=msg.size_hint > 0)
        if msg.size_hint <= 0:
            return m.UploadStarted(temp)
        ref, lease = await self.authority.allocate(temp.file_id, 0)  # saves the first GetChunk round trip
        return m.UploadStarted(temp, self.authority.location(ref, lease))

    async def _begin_upload(self, path: str, replication: int | None, overwrite: bool,
                            request_id: str, first_chunk: bool) -> m.FileInfo:
        """Refuse a taken path before any data moves; create the hidden file the data goes into
        (named after the request id, so a retried request finds the same file), with its first
        chunk's handle in the same commit when data will follow."""
        try:
            existing = await self.store.stat(path)
        except NotFound:
            existing = None
        if existing is not None and existing.is_dir:
            raise IsADirectory(f"{path}: already exists and is a directory")
        if existing is not None and not overwrite:
            raise AlreadyExists(f"{path}: already exists")
        if request_id and not UPLOAD_NAME.fullmatch(request_id):
            raise InvalidArgument("an upload's request id must be 1-64 letters, digits, '-' or '_'")
        temp = f"{UPLOADS}/{request_id or uuid.uuid4().hex}"
        replication = self._replication(replication)
        try:
            return await self.store.create(temp, replication, request_id=request_id, first_chunk=first_chunk)
        except NotFound:  # no uploads directory yet (or it was removed)
            await self.store.mkdir(UPLOADS)
            return await self.store.create(temp, replication, request_id=request_id, first_chunk=first_chunk)

    async def publish(self, msg: m.PublishUpload, data: memoryview, ctx: CallContext) -> m.FileInfo:
        temp = upload_in_progress(msg.temp)
        if msg.size < 0:
            raise InvalidArgument("size must not be negative")
        check_file_end(msg.size, "the upload")
        target = public(normalize(msg.path), "upload into")
        async with self.leases.mutating([target] if msg.overwrite else []):
            info, freed = await self.store.publish(temp, target, msg.size, msg.overwrite, request_id=msg.request_id)
        self.cluster.forget(freed.handles)
        return info

    async def abort_upload(self, msg: m.AbortUpload, data: memoryview, ctx: CallContext) -> m.Ok:
        try:
            freed = await self.store.delete(upload_in_progress(msg.temp), True)
        except NotFound:  # already published, aborted or swept: nothing left to drop
            return m.Ok()
        self.cluster.forget(freed.handles)
        return m.Ok()

    # -- delete, trash, snapshot -----------------------------------------------------------------

    async def delete(self, msg: m.Delete, data: memoryview, ctx: CallContext) -> m.Ok:
        path = public(normalize(msg.path), "delete")
        async with self.leases.mutating(trees=[path]):
            freed = await self.store.delete(path, msg.recursive, request_id=msg.request_id)
        self.cluster.forget(freed.handles)
        return m.Ok()

    async def undelete(self, msg: m.Undelete, data: memoryview, ctx: CallContext) -> m.FileInfo:
        path = public(normalize(msg.path), "restore into")
        async with self.leases.mutating([path]):
            return await self.store.undelete(path, request_id=msg.request_id)

    async def list_trash(self, msg: m.ListTrash, data: memoryview, ctx: CallContext) -> m.TrashList:
        if msg.limit < 0:
            raise InvalidArgument("limit must not be negative")
        rows, cursor = await self.store.trash(min(msg.limit or LIST_PAGE, LIST_PAGE), msg.cursor)
        return m.TrashList([m.TrashEntry(path, at, at + self.config.trash_grace, info)
                            for path, at, info in rows], cursor)

    async def purge_trash(self, msg: m.PurgeTrash, data: memoryview, ctx: CallContext) -> m.TrashPurged:
        """Everything in the trash now, as the grace period would later: what it held is gone for good."""
        freed = await self.store.purge_trash(time.time())
        self.cluster.forget(freed.handles)
        return m.TrashPurged(len(freed.handles))

    async def snapshot(self, msg: m.Snapshot, data: memoryview, ctx: CallContext) -> m.FileInfo:
        source = public(normalize(msg.source, what="source"), "snapshot")
        target = public(normalize(msg.target, what="target"), "snapshot into")
        if within(target, source):  # checked before any lease is revoked or metadata copied
            raise InvalidArgument(f"cannot snapshot {source} into itself ({target})")
        return await self.take_snapshot(source, target, msg.request_id)

    async def take_snapshot(self, source: str, target: str, request_id: str = "") -> m.FileInfo:
        """Share ``source``'s chunks with ``target`` once no lease on them is live (``sharing``)."""
        async with self.leases.mutating(trees=[target]):
            return await sharing(self.authority, [source], target,
                                 lambda: self.store.snapshot(source, target, request_id=request_id),
                                 replayable=bool(request_id))
