"""CRC32C per fixed-size block: computed on write, verified on every read."""

from __future__ import annotations

import crc32c

from hercules_core.errors import ChecksumMismatch
from hercules_core.plugins.types import Buffer

BLOCK_SIZE = 64 * 1024


def crc(data: Buffer, value: int = 0) -> int:
    """CRC32C of ``data``; ``value``: the CRC of bytes before it (a checksum taken in parts)."""
    return crc32c.crc32c(data, value)


def block_crcs(data: Buffer, block_size: int = BLOCK_SIZE) -> list[int]:
    """Checksums of consecutive ``block_size`` blocks of ``data`` (the last may be short)."""
    view = memoryview(data)
    return [crc32c.crc32c(view[i:i + block_size]) for i in range(0, len(view), block_size)]


def verify_blocks(data: Buffer, expected: list[int], *, first_block: int = 0,
                  block_size: int = BLOCK_SIZE, what: str = "chunk") -> None:
    """Raise ``ChecksumMismatch`` naming the first block whose CRC32C differs."""
    view = memoryview(data)
    for n, start in enumerate(range(0, len(view), block_size)):
        index = first_block + n
        if index >= len(expected) or crc32c.crc32c(view[start:start + block_size]) != expected[index]:
            raise ChecksumMismatch(f"{what}: block {index} fails its CRC32C check")
