"""The C allocator's settings for a long-running server process.

By default glibc returns a freed block of a few megabytes to the kernel and maps fresh pages for the next one,
so every full-size array of a request (the decoded image, the watermark's pattern, the PNG's scanlines) is
paid for again in page faults. On the 2-core reference machine that was about a third of the watermark's time
(11 ms against 7 ms for a 1024 px image) and of the PNG encoder's. Keeping freed blocks of up to 32 MB in the
process's heap reuses the same pages instead; the cost is resident memory that stays near the peak of the
requests in flight rather than falling back between them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # the largest glibc accepts on 64-bit
TRIM_THRESHOLD = 64 * 1024 * 1024  # per arena (glibc keeps one per busy thread, up to 8 a core)


def keep_freed_memory() -> bool:
    """Ask glibc to serve blocks under 32 MB from the heap and keep up to 64 MB freed at the top of each arena; False
    where the C library is not glibc (nothing changes there)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    kept = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not kept:
        log.info("the C library did not take the allocator settings; freed memory goes back as before")
    return kept
