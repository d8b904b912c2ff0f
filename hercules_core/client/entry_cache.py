"""Cached entries of packed files, under leases from the master (docs/consistency.md, "Cached
entries"; the master's side is ``master/entry_leases``).

A gateway reads most small files it wrote or read a moment ago. With a lease, such a read is
one call to a chunkserver instead of a ``Locate`` at the master first. The cache is used only
while its session is valid: from when the poll that renewed it was sent, for 90% of the ttl
the master gave. A revocation is applied before its acknowledgement goes back, and an entry
whose ``Locate`` was on the wire while any revocation arrived is not kept (it may predate it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import secrets
import time

from hercules_core import messages as m
from hercules_core.errors import HerculesError, InvalidArgument
from hercules_core.paths import within
from hercules_core.rpc import ConnectionPool

log = logging.getLogger(__name__)

MARGIN = 0.9  # of the ttl: clocks on two hosts may run at slightly different rates
RETRY_AFTER = 0.5  # seconds between polls after one failed
POLL_SLACK = 10.0  # a poll's timeout beyond the ttl (the master holds one a third of it)
MAX_DROPPED = 4096  # evicted paths told in one poll (the master's limit too)


class EntryCache:
    """Path -> ``Located`` of packed files, at most ``capacity``, kept by ``run``'s long poll."""

    def __init__(self, pool: ConnectionPool, master: str, capacity: int) -> None:
        self.pool = pool
        self.master = master
        self.capacity = capacity
        self.holder = secrets.token_hex(12)
        self._entries: collections.OrderedDict[str, m.Located] = collections.OrderedDict()
        self._valid_until = 0.0  # monotonic
        self._session = ""
        self._ttl = 3.0  # the master's, from its last answer
        self._acked = 0
        self._polls = itertools.count(1)
        # let go of, to be told to the master (an ordered set), and told in the poll on the wire:
        # a path there is not cached again until that poll is answered, or the master, applying
        # it, would forget a lease granted after we let go
        self._dropped: dict[str, None] = {}
        self._telling: set[str] = set()
        self.revocations = 0  # how many arrived: an entry located across one is not kept
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, path: str) -> m.Located | None:
        if time.monotonic() >= self._valid_until:
            self.misses += 1
            return None
        located = self._entries.get(path)
        if located is None:
            self.misses += 1
            return None
        self._entries.move_to_end(path)
        self.hits += 1
        return located

    def put(self, path: str, located: m.Located, revocations: int) -> None:
        """Keep ``located`` (leased to us), unless a revocation arrived since it was asked for."""
        if path in self._telling:
            return
        if revocations != self.revocations:
            self._dropped[path] = None  # the master may hold the lease: tell it we let it go
            return
        self._dropped.pop(path, None)  # not told yet: the lease just granted stands
        self._entries[path] = located
        self._entries.move_to_end(path)
        while len(self._entries) > self.capacity:
            self._dropped[self._entries.popitem(last=False)[0]] = None

    def drop(self, path: str) -> bool:
        """Stop using ``path``'s entry (its read failed); whether there was one."""
        if self._entries.pop(path, None) is None:
            return False
        self._dropped[path] = None
        return True

    def _clear(self, report: bool = False) -> None:
        """Use nothing cached; ``report``: the master still knows us, so tell it what went."""
        if report:
            self._dropped.update(dict.fromkeys(self._entries))
        else:
            self._dropped.clear()
        self._entries.clear()
        self._valid_until = 0.0
        self.revocations += 1

    def _apply(self, answer: m.EntriesRevoked, sent: float) -> None:
        self._ttl = answer.ttl
        if answer.drop_all or answer.session != self._session:
            self._clear()
            self._session, self._acked = answer.session, 0
            return
        if answer.paths or answer.trees:
            self.revocations += 1
            for path in answer.paths:
                self._entries.pop(path, None)
            if answer.trees:
                for path in [p for p in self._entries if any(within(p, t) for t in answer.trees)]:
                    del self._entries[path]
            self._acked = answer.seq  # the next poll acknowledges; this one renewed nothing
            return
        self._valid_until = sent + answer.ttl * MARGIN

    async def run(self) -> None:
        """Poll the master for as long as the client lives; without a session nothing is used."""
        while True:
            dropped = list(itertools.islice(self._dropped, MAX_DROPPED))
            for path in dropped:
                del self._dropped[path]
            self._telling = set(dropped)
            sent = time.monotonic()
            try:
                answer, _ = await self.pool.call(
                    self.master, m.WatchEntries(self.holder, self._acked, self._session, dropped, next(self._polls)),
                    timeout=self._ttl + POLL_SLACK)
            except InvalidArgument as exc:  # a master that leases nothing (entry_lease 0)
                log.info("entry leases: %s; reads always ask the master", exc)
                self._clear()
                return
            except (HerculesError, OSError, asyncio.TimeoutError, EOFError) as exc:
                log.debug("entry leases: poll failed (%s); cache off until the next one answers", exc)
                self._telling = set()
                self._dropped.update(dict.fromkeys(dropped))
                self._clear(report=True)
                await asyncio.sleep(RETRY_AFTER)
                continue
            self._telling = set()
            self._apply(answer, sent)

    async def close(self, task: asyncio.Task[None] | None) -> None:
        self._clear()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
