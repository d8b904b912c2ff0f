"""Sharing chunks between files: the step snapshots and compositions have in common, and the
``Compose`` handler.

A chunk may be shared only while no lease on it is live: a write through such a lease after the
metadata commit would land in both files. ``sharing`` ends those leases first and keeps new ones
(and new chunks in the sources) from starting until the commit is made; after it, the first
write to a shared chunk copies it (the authority's copy-on-write). docs/consistency.md,
"Snapshots" and "Composition", says what a client sees.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from typing import TypeVar

from hercules_core import messages as m
from hercules_core.errors import InvalidArgument, IsADirectory, NotFound
from hercules_core.master.authority import AuthorityPart, ChunkAuthority
from hercules_core.paths import normalize, public
from hercules_core.rpc import CallContext, Handler

T = TypeVar("T")
MAX_SOURCES = 10_000  # S3's most parts of one upload


async def sharing(authority: ChunkAuthority, sources: Sequence[str], target: str,
                  apply: Callable[[], Awaitable[T]], replayable: bool = False) -> T:
    """Run ``apply``, the store mutation that makes ``target`` share the chunks of the trees at
    ``sources``, once no lease on those chunks is live: leases end first, and until it returns
    no lease starts on them, nor a new chunk in the sources. A chunk that reached ``target``
    some other way meanwhile (a file renamed or published into it) has its lease ended before
    the answer. ``replayable``: a request id makes a source that is gone (a first attempt
    removed it) no error here; the store answers the replay."""
    store = authority.store
    with ExitStack() as stack:
        for source in sources:
            stack.enter_context(authority.snapshotting(source))
        frozen: list[int] = []
        try:
            handles: set[int] = set()
            try:
                for source in sources:
                    handles.update(await store.handles_under(source))
            except NotFound:
                if not replayable:
                    raise
                return await apply()  # a replay answers; anything else fails there as it must
            frozen = authority.freeze(handles)
            await asyncio.gather(*(authority.revoke(h) for h in handles))
            result = await apply()
            try:
                late = set(await store.handles_under(target)) - handles
            except NotFound:  # already removed again
                late = set()
            frozen += authority.freeze(late)
            await asyncio.gather(*(authority.revoke(h) for h in late))
            return result
        finally:
            authority.thaw(frozen)


class Composition(AuthorityPart):
    def handlers(self) -> dict[type, Handler]:
        return {m.Compose: self.compose}

    async def compose(self, msg: m.Compose, data: memoryview, ctx: CallContext) -> m.FileInfo:
        """Refused before any lease ends where the request is wrong on its face (a directory as a
        source would freeze its whole tree); the store checks everything again inside its
        commit, so nothing can change between the check and the use."""
        target = public(normalize(msg.target, what="target"), "compose into")
        if not 1 <= len(msg.sources) <= MAX_SOURCES:
            raise InvalidArgument(f"compose takes 1 to {MAX_SOURCES} sources, not {len(msg.sources)}")
        sources = [public(normalize(s, what="source"), "compose from") for s in msg.sources]
        chunk_size = self.config.chunk_size

        async def apply() -> m.FileInfo:
            async with self.leases.mutating([target, *(sources if msg.remove_sources else [])]):
                info, freed = await self.store.compose(target, sources, chunk_size, overwrite=msg.overwrite,
                                                       remove_sources=msg.remove_sources,
                                                       request_id=msg.request_id)
            self.cluster.forget(freed.handles)
            return info

        try:
            found = [await self.store.stat(source) for source in sources]
        except NotFound:
            if not msg.request_id:
                raise
            return await apply()  # sources a first attempt removed: the store answers the replay
        for n, info in enumerate(found):
            if info.is_dir:
                raise IsADirectory(f"{info.path}: is a directory; compose takes files")
            if n < len(found) - 1 and info.size % chunk_size:
                raise InvalidArgument(f"{info.path}: its length {info.size} is not a whole number of "
                                      f"{chunk_size}-byte chunks (only the last source may end inside one)")
        return await sharing(self.authority, sources, target, apply, replayable=bool(msg.request_id))
