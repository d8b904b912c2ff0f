"""Freed memory kept for reuse, instead of handed back to the kernel after every request.

glibc's malloc gives a large block back as soon as it is freed: from ``mmap`` beyond a threshold
that adapts to the sizes seen, else by trimming the heap top (``brk``). A storage process frees
megabyte buffers constantly (a 1 MiB packed record, a 4 MiB read piece), so each request paid a
``brk`` or ``munmap``, then page faults to map the memory again on the next one (1.6 ``brk`` per
1 MiB GET in the gateway, a fifth of its system-call time; docs/performance.md). Keeping up to
``heap_keep`` bytes freed at the heap's top, and serving blocks below half of it from the heap,
ends that; the memory stays reusable by the next request rather than returned.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # <malloc.h>: free top memory kept before the heap is trimmed
M_MMAP_THRESHOLD = -3  # blocks at least this big are mapped on their own
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling for it on 64-bit systems


def keep_freed(keep: int) -> bool:
    """Let this process keep up to ``keep`` bytes of freed heap for reuse; 0 leaves malloc's
    defaults. False where the C library has no ``mallopt`` (not glibc) or refused."""
    if keep <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = bool(mallopt(M_TRIM_THRESHOLD, keep)) and bool(mallopt(M_MMAP_THRESHOLD, min(keep // 2, MMAP_THRESHOLD_MAX)))
    if not ok:
        log.warning("malloc refused to keep %d bytes of freed memory: its defaults stay", keep)
    return ok
