"""What the ops share besides their arithmetic: work buffers kept per thread and reused across calls
(and relu's block of zeros), row strips run on threads, and the bytes that every ``*_workspace`` and
``*_kept`` formula adds for a call, a thread or a library.

Apart so that the convolutions, pooling and the activations draw on one set of buffers, which
``release_buffers`` lets go in one place, and count their memory by the same rules.
"""

from __future__ import annotations

import os
import threading

import numpy as np

# An im2col block stays small enough that a huge image never needs more than a few tens of MB on
# top of its output; no work buffer above it is kept. The GEMM paths read it here at each call
# (``scratch.IM2COL_ELEMENTS``), so that one setting governs their blocks and what is kept.
IM2COL_ELEMENTS = 1 << 23
_THREADED_ELEMENTS = 1 << 20
# Bytes of small things one call allocates besides its arrays: views, shapes, and the buffers of
# NumPy's iterator, which a ufunc over strided views may fill (up to getbufsize() values for each
# of three operands); per thread for threaded calls.
CALL_BYTES = 16 << 10


def _call_bytes(itemsize: int, threads: int = 1) -> int:
    return threads * (CALL_BYTES + 3 * np.getbufsize() * itemsize)


# What stays allocated in libraries once an op has used them (``*_kept``), counted once a run:
# OpenBLAS packs blocks of both operands of a product into buffers it keeps per thread, touched
# the first time a product runs (measured 0.2-3 MiB after the products that conv2d's "gemm" and
# linear make, 2.9 MiB for 512 x 4608 x 1820); importing the thread pool costs 0.8 MiB.
BLAS_BYTES = 4 << 20
THREAD_POOL_BYTES = 1 << 20
# What a thread of _run_strips adds besides its arrays: the pages of its stack it touches and its
# malloc arena, which keeps the thread's freed strips after it ends (measured: 0.1 MiB a thread).
THREAD_BYTES = 256 << 10


def _strip_workers(strips: int, size: int) -> int:
    """Threads that ``_run_strips`` uses for ``strips`` strips of an output of ``size`` elements."""
    workers = min(os.cpu_count() or 1, strips)
    return 1 if size < _THREADED_ELEMENTS or workers < 2 else workers


def _run_strips(total_rows: int, rows: int, work, size: int) -> None:
    """Run ``work(r0, r1)`` over row strips; big outputs are split in one run of strips per core
    and run on threads (NumPy releases the GIL inside its loops)."""
    bounds = [(r0, min(r0 + rows, total_rows)) for r0 in range(0, total_rows, rows)]
    workers = _strip_workers(len(bounds), size)
    if workers == 1:
        for r0, r1 in bounds:
            work(r0, r1)
        return
    from concurrent.futures import ThreadPoolExecutor  # only big maps pay for the import

    def run(share):
        for r0, r1 in share:
            work(r0, r1)

    shares = [bounds[w::workers] for w in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(run, share) for share in shares]:
            future.result()


_scratch = threading.local()


def _buffer(name: str, size: int, dtype: np.dtype) -> np.ndarray:
    """A 1-D work buffer of at least ``size`` elements, kept per thread and reused across calls.

    Fresh large arrays cost a page fault per 4 KiB on first touch, which made a 56 x 56 layer up
    to 5x slower in a new process; reuse pays that once. Only buffers up to the im2col block are
    kept, so a huge image does not leave its padded copy held after the call. ``release_buffers``
    lets them go (``Network.forward`` does after each layer, so a layer's buffers are its own).
    """
    if size > IM2COL_ELEMENTS:
        return np.empty(size, dtype=dtype)
    buffers = _scratch.__dict__.setdefault("buffers", {})
    held = buffers.get(name)
    if held is None or held.size < size or held.dtype != dtype:
        buffers.pop(name, None)  # the old one goes before the new one comes, so that both are never held
        held = buffers[name] = np.empty(size, dtype=dtype)
    return held[:size]


def release_buffers() -> None:
    """Free what this thread keeps between calls: the work buffers (``_buffer``) and relu's zeros."""
    _scratch.__dict__.pop("buffers", None)
    _scratch.__dict__.pop("zeros", None)


def _zeros(size: int, dtype: np.dtype) -> np.ndarray:
    held = _scratch.__dict__.setdefault("zeros", {})
    key = np.dtype(dtype).str
    if key not in held or held[key].size < size:
        held[key] = np.zeros(size, dtype=dtype)
    return held[key]
