"""Leases on cached entries (docs/consistency.md, "Cached entries"): a client that holds one may
answer reads of a packed file without asking the master, and no mutation of that entry is
acknowledged until every holder has dropped it or its session has run out.

A holder (a gateway's client) keeps a session by long-polling ``WatchEntries``; each poll that
finds nothing left to revoke renews it for ``ttl`` seconds. A path is leased to a holder by a
``Locate`` or by its own ``PublishPacked``. A mutation first marks the paths it touches (no new
lease is granted on them), then sends each holder of one of them a revocation in its poll's
answer and waits for the next poll to acknowledge it. A holder with a revocation outstanding is
not renewed, so a silent holder costs a mutation at most what is left of its session. The
holder counts its session from when it sent the poll, the master from when it received it: the
holder's bound always ends first.

A lease is registered before the entry is read, so a mutation that starts later finds it; a
``Locate`` while the path is marked gets no lease. A publish leases its own file after its
commit, and only if no other mutation of that path began meanwhile (``generation``). A
restarted master knows no holder: every mutation waits one ``ttl`` from start-up, by when the
sessions of the master before have run out, and a holder it does not know is told to drop all.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Iterable

import attrs
from sortedcontainers import SortedDict

from hercules_core import messages as m
from hercules_core.paths import within

POLL_HOLD = 3  # a poll with nothing to revoke is answered after ttl / POLL_HOLD seconds
MAX_DROPPED = 4096  # paths a poll may report dropped


@attrs.define(eq=False)
class Holder:
    name: str
    expires: float  # monotonic: the session ends here unless renewed
    paths: set[str] = attrs.field(factory=set)
    sent: int = 0  # sequence number of the last revocation queued
    acked: int = 0
    last_poll: int = 0  # the holder's number of the latest poll seen
    pending: list[tuple[int, list[str], list[str]]] = attrs.field(factory=list)  # (seq, paths, trees)
    wake: asyncio.Event = attrs.field(factory=asyncio.Event)
    acks: list[tuple[int, asyncio.Future[None]]] = attrs.field(factory=list)


class EntryLeases:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.session = secrets.token_hex(8)  # this master's run: a holder it never saw drops all
        self.grace_until = time.monotonic() + ttl  # holders of a master before may still be serving
        self._holders: dict[str, Holder] = {}
        self._leased: SortedDict[str, set[str]] = SortedDict()  # path -> names; a tree's paths are one range
        self._marked: collections.Counter[str] = collections.Counter()  # paths being mutated
        self._marked_trees: collections.Counter[str] = collections.Counter()
        self._generation: dict[str, int] = {}  # per marked path: mutations begun on it
        self._tree_generation = 0

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def holders(self) -> int:
        return len(self._holders)

    def leased(self) -> int:
        return len(self._leased)

    # -- granting ---------------------------------------------------------------------------------

    def _live(self, name: str) -> Holder | None:
        holder = self._holders.get(name)
        if holder is not None and holder.expires <= time.monotonic():
            self._forget(holder)
            return None
        return holder

    def _covered(self, path: str) -> bool:
        return path in self._marked or any(within(path, tree) for tree in self._marked_trees)

    def register(self, name: str, path: str) -> bool:
        """Lease ``path`` to holder ``name`` before its entry is read: refused (``False``) while a
        mutation of it runs, or when the holder has no live session."""
        holder = self._live(name) if name and self.enabled else None
        if holder is None or self._covered(path):
            return False
        self._add(holder, path)
        return True

    def release(self, name: str, path: str) -> None:
        """Undo ``register`` (the entry turned out to be no packed file)."""
        holder = self._holders.get(name)
        if holder is not None:
            self._remove(holder, [path])

    def _add(self, holder: Holder, path: str) -> None:
        holder.paths.add(path)
        self._leased.setdefault(path, set()).add(holder.name)

    def _remove(self, holder: Holder, paths: Iterable[str]) -> None:
        for path in paths:
            holder.paths.discard(path)
            names = self._leased.get(path)
            if names is not None:
                names.discard(holder.name)
                if not names:
                    del self._leased[path]

    def _under(self, tree: str) -> list[str]:
        """The leased paths ``within`` ``tree``, found without scanning the others."""
        if tree == "/":
            return list(self._leased)
        found = [tree] if tree in self._leased else []
        found.extend(self._leased.irange(tree + "/", tree + "0", inclusive=(True, False)))  # "0" follows "/"
        return found

    def _forget(self, holder: Holder) -> None:
        """The session ended: whatever the holder cached it may no longer use."""
        self._remove(holder, list(holder.paths))
        self._holders.pop(holder.name, None)
        for _, fut in holder.acks:
            if not fut.done():
                fut.set_result(None)
        holder.wake.set()

    # -- mutating ---------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def mutating(self, paths: Iterable[str] = (), trees: Iterable[str] = (), *,
                       fresh: bool = False) -> AsyncIterator[Mutation]:
        """Around a mutation of ``paths`` (and of everything under ``trees``): no lease on them is
        granted meanwhile, and the body runs once every holder of one has dropped it. ``fresh``:
        the paths hold nothing yet (the body fails if they do), so nobody can hold them."""
        paths, trees = list(paths), list(trees)
        if not self.enabled:
            yield Mutation(self, {}, -1)
            return
        for path in paths:
            self._marked[path] += 1
            self._generation[path] = self._generation.get(path, 0) + 1
        for tree in trees:
            self._marked_trees[tree] += 1
        if trees:
            self._tree_generation += 1
        mutation = Mutation(self, {p: self._generation[p] for p in paths}, self._tree_generation)
        try:
            if not fresh:
                await self._revoke(paths, trees)
            yield mutation
        finally:
            for path in paths:
                self._marked[path] -= 1
                if not self._marked[path]:
                    del self._marked[path]
                    del self._generation[path]
            for tree in trees:
                self._marked_trees[tree] -= 1
                if not self._marked_trees[tree]:
                    del self._marked_trees[tree]

    def grant_after(self, mutation: Mutation, name: str, path: str) -> bool:
        """Lease ``path``, just written by ``mutation``, to its writer ``name``: refused when another
        mutation of it began since (its lease is not this one's to give) or the holder owes an ack."""
        if not name or not self.enabled or mutation.generations.get(path) != self._generation.get(path) \
                or mutation.tree_generation != self._tree_generation:
            return False
        holder = self._live(name)
        if holder is None or holder.pending:
            return False
        self._add(holder, path)
        return True

    async def _revoke(self, paths: list[str], trees: list[str]) -> None:
        if (wait := self.grace_until - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        affected: dict[str, tuple[list[str], list[str]]] = {}
        for path in paths:
            for name in self._leased.get(path, ()):
                affected.setdefault(name, ([], []))[0].append(path)
        for tree in trees:
            for path in self._under(tree):
                for name in self._leased[path]:
                    affected.setdefault(name, ([], []))[1].append(tree)
        waits = []
        for name, (exact, under) in affected.items():
            holder = self._live(name)
            if holder is None:
                continue
            holder.sent += 1
            holder.pending.append((holder.sent, exact, sorted(set(under))))
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            holder.acks.append((holder.sent, fut))
            holder.wake.set()
            waits.append(self._acknowledged(holder, fut))
        if waits:
            await asyncio.gather(*waits)

    async def _acknowledged(self, holder: Holder, fut: asyncio.Future[None]) -> None:
        """Until the holder acknowledged, or its session (not renewed while this is due) ran out."""
        try:
            await asyncio.wait_for(asyncio.shield(fut), max(0.0, holder.expires - time.monotonic()))
        except asyncio.TimeoutError:
            self._forget(holder)

    # -- the holders' polls -----------------------------------------------------------------------

    async def watch(self, msg: m.WatchEntries) -> m.EntriesRevoked:
        """Acknowledge what the holder applied, forget what it dropped, and answer with what it
        must drop now: at once if anything, else after a while (its session renewed)."""
        holder = self._live(msg.holder)
        if holder is None:  # new, or its session ran out: whatever it cached goes
            holder = self._holders[msg.holder] = Holder(msg.holder, time.monotonic() + self.ttl,
                                                        last_poll=msg.poll)
            return m.EntriesRevoked(0, [], [], self.ttl, self.session, drop_all=True)
        if msg.poll and msg.poll <= holder.last_poll:  # overtaken (its holder gave up on it): no effect
            return m.EntriesRevoked(0, [], [], self.ttl, self.session, drop_all=True)
        holder.last_poll = msg.poll
        if msg.session != self.session:
            self._forget(holder)
            holder = self._holders[msg.holder] = Holder(msg.holder, time.monotonic() + self.ttl,
                                                        last_poll=msg.poll)
            return m.EntriesRevoked(0, [], [], self.ttl, self.session, drop_all=True)
        self._remove(holder, msg.dropped[:MAX_DROPPED])
        self._acknowledge(holder, msg.acked)
        if not holder.pending:
            holder.expires = time.monotonic() + self.ttl
            holder.wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(holder.wake.wait(), self.ttl / POLL_HOLD)
        if self._holders.get(holder.name) is not holder:
            return m.EntriesRevoked(0, [], [], self.ttl, self.session, drop_all=True)
        paths = [p for _, exact, _ in holder.pending for p in exact]
        trees = [t for _, _, under in holder.pending for t in under]
        return m.EntriesRevoked(holder.sent if holder.pending else holder.acked, paths, trees, self.ttl,
                                self.session)

    def _acknowledge(self, holder: Holder, acked: int) -> None:
        if acked <= holder.acked or acked > holder.sent:
            return
        holder.acked = acked
        done = [entry for entry in holder.pending if entry[0] <= acked]
        holder.pending = [entry for entry in holder.pending if entry[0] > acked]
        for _, exact, under in done:
            self._remove(holder, exact)
            for tree in under:
                self._remove(holder, [p for p in self._under(tree) if p in holder.paths])
        for seq, fut in holder.acks:
            if seq <= acked and not fut.done():
                fut.set_result(None)
        holder.acks = [(seq, fut) for seq, fut in holder.acks if not fut.done()]


@attrs.define
class Mutation:
    """What ``EntryLeases.mutating`` yields: lets a publish lease its own file after its commit."""

    leases: EntryLeases
    generations: dict[str, int]
    tree_generation: int

    def grant(self, name: str, path: str) -> bool:
        return self.leases.grant_after(self, name, path)
