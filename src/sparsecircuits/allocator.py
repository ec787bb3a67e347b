"""How this process's C allocator hands memory back: a setting that sparse execution needs.

glibc's malloc returns large freed blocks to the system at once (they were mmapped, or they
sit above the trim threshold), so the next activation tensor of that size faults its pages in
again. In a virtual machine a fault costs microseconds, and a sparse mask-training step, whose
matrix products are cheap, spent a fifth of its time there (docs/sparse-execution.md).
`retain_freed_memory` lets malloc keep freed memory for reuse instead. It is process-wide, so
the CLI calls it for its own process and a library user decides for theirs. Torch-free: the
CLI calls it before a command imports torch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

RETAINED_BYTES = 1 << 30  # the largest block malloc serves from its heap, and the free memory it keeps
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def retain_freed_memory() -> bool:
    """Let glibc's malloc keep up to RETAINED_BYTES of freed memory for reuse; returns whether
    it applied (False off glibc, where the allocator's own policy stays)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, RETAINED_BYTES) and libc.mallopt(_M_TRIM_THRESHOLD, RETAINED_BYTES))
    except (OSError, AttributeError):
        return False
