"""Keeping freed message buffers mapped (glibc only).

libzmq's I/O thread allocates a fresh buffer for each large received frame (5.3 MB per 96³
patch) and the reader frees it a moment later. With glibc's default, dynamic thresholds the
freed memory at the top of the I/O thread's heap is often handed back to the kernel and the next
patch faults it in again: measured 65–240 page faults per patch, up to a fifth of the receive time
at 1+ GB/s. Fixing the thresholds keeps up to `trim_threshold` bytes of freed memory for reuse.
It is process-wide, so it is opt-in (PatchStream(keep_freed_memory=True), on by default in
TumorStreamDataset)."""

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(trim_threshold: int = 256 << 20, mmap_threshold: int = 32 << 20) -> bool:
    """Sets glibc's M_TRIM_THRESHOLD and M_MMAP_THRESHOLD (32 MB is glibc's largest allowed
    mmap threshold: allocations below it come from the heap and are reused). Returns False where
    mallopt is unavailable (not glibc)."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold)) and bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
