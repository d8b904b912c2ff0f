"""Messages of leases on cached entries (docs/consistency.md, "Cached entries"): the long poll
by which a holder keeps its session and learns which entries to drop."""

from __future__ import annotations

import attrs

from hercules_core.messages.registry import message

__all__ = ["WatchEntries", "EntriesRevoked"]


@message("watchentries")
class WatchEntries:
    """Keep ``holder``'s session: ``acked`` is the last revocation it applied, ``dropped`` the
    entries it stopped caching on its own; ``session`` the master run it learnt them from."""

    holder: str
    acked: int = 0
    session: str = ""
    dropped: list[str] = attrs.field(factory=list)
    poll: int = 0  # counts the holder's polls: one overtaken by a later one is ignored


@message("entriesrevoked")
class EntriesRevoked:
    """Drop ``paths`` and every entry under ``trees`` (``drop_all``: everything), then acknowledge
    ``seq``. An answer with nothing to drop renewed the session for ``ttl`` seconds."""

    seq: int
    paths: list[str]
    trees: list[str]
    ttl: float
    session: str
    drop_all: bool = False
