"""Progress bars for transfers: bytes, rate and time left, drawn by rich on stderr.

Only on a terminal, and only once a transfer has run for ``HERCULES_PROGRESS_AFTER`` seconds
(1 by default): a quick copy stays silent, as ``cp`` is, and a pipe never sees control codes.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

AFTER = 1.0


class Transfer:
    """Counts one transfer's bytes; shows a bar once it has lasted long enough on a terminal."""

    def __init__(self, label: str, total: int | None, enabled: bool = True) -> None:
        self.label, self.total, self.done = label, total, 0
        self.started = time.monotonic()
        self.after = float(os.environ.get("HERCULES_PROGRESS_AFTER", AFTER))
        self.enabled = enabled and sys.stderr.isatty()
        self.bar: Any = None
        self.task: Any = None

    def advance(self, n: int) -> None:
        self.done += n
        if self.bar is None and self.enabled and time.monotonic() - self.started >= self.after:
            self._show()
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)

    def _show(self) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                            TransferSpeedColumn(), TimeRemainingColumn(),
                            console=Console(stderr=True), transient=False)
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=self.total, completed=self.done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)
            self.bar.stop()
            self.bar = None

    def __enter__(self) -> Transfer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def counting(self, pieces: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """``pieces`` passed through, each counted as it goes."""
        async for piece in pieces:
            yield piece
            self.advance(len(piece))
