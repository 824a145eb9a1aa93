"""Keep glibc malloc from returning every large frame buffer to the kernel.

glibc serves allocations above its mmap threshold (128 KiB, raised dynamically only in some
cases) with a fresh mmap and unmaps them on free, so a process that allocates and frees a 6 MB
1080p image per frame page-faults all 1500 pages of every frame; keeping the buffers in the
heap brings the node's per-frame CPU down to that of a bare rclpy echo node (`vlm-node bench
node`; figures in README, Node overhead). The cost is that freed frame memory stays in the
process (RSS stays at its peak, which for a node processing a steady stream is its working set
anyway).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc caps the mmap threshold at 32 MiB on 64-bit: buffers up to a 4K bgr8 frame (24 MiB)
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 256 * 1024 * 1024


def keep_large_buffers() -> bool:
    """Raise glibc's mmap and trim thresholds; True when applied, False where the C library is
    not glibc (nothing to tune there; the reason is logged)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.info("C library %r has no mallopt (not glibc): malloc left as it is", name)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not ok:
        log.warning("mallopt refused the thresholds: large frame buffers are still unmapped")
    return ok
