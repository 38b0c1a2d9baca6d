"""Give freed heap memory back to the operating system.

glibc serves each thread from its own arena and keeps what large temporary arrays freed there for reuse. In
a long-running node whose runs, callbacks and decoders allocate on many threads, the resident size then
ratchets up run after run although nothing is kept. Fewer arenas and a trim after each run keep it at what
the node holds. Where the C library is not glibc both calls do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger("dprecon_ros")
_M_ARENA_MAX = -8  # mallopt parameter numbers (glibc malloc.h)
_M_MMAP_THRESHOLD = -3


@functools.lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 - present only in glibc
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas (0 leaves its default of 8 per core); call before worker threads start."""
    libc = _glibc()
    if libc is None or count <= 0:
        return False
    ok = bool(libc.mallopt(_M_ARENA_MAX, int(count)))
    if not ok:
        log.warning("could not limit malloc arenas to %d", count)
    return ok


def fix_mmap_threshold(kilobytes: int) -> bool:
    """Serve allocations of at least `kilobytes` with their own pages (0 leaves glibc's sliding default).

    glibc raises the threshold to the size of each large block freed, up to 32 MB: after a few freed images,
    image-sized arrays come from the heap, whose holes a trim can only partly return."""
    libc = _glibc()
    if libc is None or kilobytes <= 0:
        return False
    ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(kilobytes) * 1024))
    if not ok:
        log.warning("could not fix the mmap threshold at %d KiB", kilobytes)
    return ok


def release_free_memory() -> bool:
    """Return free heap pages of every arena to the OS; True when some were returned."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
