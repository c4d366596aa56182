"""Memory the process frees is kept for reuse, as ONNX Runtime's arena keeps it, instead of going back
to the system after each map.

A forward pass allocates every map fresh, and glibc's malloc hands big blocks back to the system
when they are freed (maps over its mmap threshold, and the top of the heap over its trim
threshold), so the next image's maps are fresh pages again: a page fault and a zeroed page per
4 KiB, 19,000 of them and a fifth of the time of a ResNet-50 forward at 224 x 224 on this
project's 2-core machine. Raising both thresholds keeps freed blocks of up to 32 MiB (glibc's
largest mmap threshold) in the heap, where the next map reuses them. The process keeps its peak
heap until it exits, which a `cnn` run (one command, then exit) or a batch (image after image of
the same shapes) wants anyway.

Only on glibc; elsewhere (musl, macOS, Windows) nothing is changed. ctypes is imported only here,
on the first call.
"""

from __future__ import annotations

import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # the most glibc accepts on 64-bit systems
TRIM_THRESHOLD = 1 << 30

_done = False


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse (once a process); whether it took."""
    global _done
    if _done:
        return True
    _done = True
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):  # musl has no mallopt knobs
            return False
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD,
                                                                                            TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False
