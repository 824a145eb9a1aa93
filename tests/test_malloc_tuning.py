"""The allocator tuning the node and the CLI apply at start-up."""
import platform

import pytest

from vlm_node import malloc_tuning


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_thresholds():
    assert malloc_tuning.keep_large_buffers() is True
    assert malloc_tuning.MMAP_THRESHOLD >= 1920 * 1080 * 3 * 4  # a 4K bgr8 frame fits
