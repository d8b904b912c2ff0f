"""Freed memory kept for reuse (``hercules_core.heap``), in a fresh process each: glibc's malloc
without it maps a 4 MiB buffer on its own and unmaps it when freed; with it, the buffer comes
from the heap and its memory stays there for the next one."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
from hercules_core.heap import keep_freed

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
kept = keep_freed(int(sys.argv[1]))
buffer = bytearray(4 << 20)
mapped = libc.mallinfo2().hblkhd
del buffer
print(kept, mapped >= 4 << 20, libc.mallinfo2().fordblks >= 4 << 20)
"""


def probe(keep: int) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(keep)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_a_freed_buffer_stays_in_the_heap_for_the_next_one() -> None:
    if not sys.platform.startswith("linux") or probe(0)[1] != "True":
        pytest.skip("not glibc's malloc")
    assert probe(0) == ["False", "True", "False"]  # malloc's defaults: mapped, and unmapped when freed
    assert probe(32 << 20) == ["True", "False", "True"]  # from the heap, and kept there


def test_roles_keep_32_mib_unless_told_otherwise() -> None:
    from hercules_core.config import load_config

    assert load_config(environ={}).heap_keep == 32 << 20
    assert load_config(environ={"HERCULES_HEAP_KEEP": "0"}).heap_keep == 0
