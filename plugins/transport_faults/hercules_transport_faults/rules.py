"""The fault rules one process obeys, read from a small JSON control file it polls cheaply.

The file (written atomically by whoever injects faults, e.g. ``LocalCluster``) names the
processes and the rules between them::

    {"peers": {"master": "127.0.0.1:9090", "chunk1": "127.0.0.1:8081"},
     "rules": [{"from": "gateway", "to": "chunk1", "action": "drop"},
               {"from": "*", "to": "master", "action": "delay", "seconds": 0.2}]}

A rule applies to the connections its ``from`` process dials to its ``to`` process, in both
directions of those connections; ``*`` means any process. The file is looked at (one ``stat``) at most every
``POLL_SECONDS``; between looks a frame costs one clock read and one dict lookup.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import attrs

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05
ACTIONS = ("drop", "delay", "refuse")


@attrs.frozen
class Rule:
    """What happens to traffic on connections to one peer.

    ``drop``: frames vanish both ways and new connections hang (a partition);
    ``refuse``: new connections fail and open ones are reset (a dead port or a firewall's RST);
    ``delay``: every frame sent waits ``seconds`` first.
    """

    action: str
    seconds: float = 0.0


def parse_rules(text: str, me: str) -> dict[str, Rule]:
    """The rules for process ``me``, keyed by the peer address they apply to; ``ValueError`` if malformed."""
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("the control file must hold a JSON object")
    peers = doc.get("peers", {})
    if not isinstance(peers, dict) or not all(isinstance(v, str) for v in peers.values()):
        raise ValueError("'peers' must map process names to host:port addresses")
    table: dict[str, Rule] = {}
    for i, raw in enumerate(doc.get("rules", [])):
        if not isinstance(raw, dict):
            raise ValueError(f"rule {i} is not an object")
        action, seconds = raw.get("action"), raw.get("seconds", 0.0)
        if action not in ACTIONS:
            raise ValueError(f"rule {i}: action {action!r} is not one of {', '.join(ACTIONS)}")
        if not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError(f"rule {i}: seconds must be a non-negative number, got {seconds!r}")
        source, target = raw.get("from"), raw.get("to")
        if source not in ("*", me):
            continue
        if target != "*" and target not in peers:
            raise ValueError(f"rule {i}: 'to' names {target!r}, which is not in 'peers'")
        for address in peers.values() if target == "*" else [peers[target]]:
            table[address] = Rule(action, float(seconds))  # a later rule for the same peer wins
    return table


class Rules:
    """This process's current rules; ``lookup`` is cheap enough to call for every frame."""

    def __init__(self, control: Path | None, me: str) -> None:
        self.control = control
        self.me = me
        self._table: dict[str, Rule] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._next_check = 0.0

    def lookup(self, peer: str) -> Rule | None:
        """The rule for traffic to ``peer`` (``host:port``) now, or ``None``."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + POLL_SECONDS
            self._refresh()
        if not self._table:
            return None
        return self._table.get(peer)

    def _refresh(self) -> None:
        if self.control is None:
            return
        try:
            st = os.stat(self.control)
        except FileNotFoundError:
            self._table, self._stamp = {}, None
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._table = parse_rules(self.control.read_text(), self.me)
        except (OSError, ValueError) as exc:  # keep the previous rules: a bad file is a test's mistake
            log.error("fault control file %s ignored: %s", self.control, exc)
