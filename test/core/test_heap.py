"""Freed heap memory goes back to the OS on request (the node trims after each run)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from dprecon_ros.core.heap import _glibc, limit_arenas

SCRIPT = textwrap.dedent(
    """
    from pathlib import Path
    from dprecon_ros.core.heap import release_free_memory

    def rss_mb():
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    blocks, pins = [], []
    for _ in range(3200):  # 200 MB in blocks below the mmap threshold, each followed by a small live one
        blocks.append(bytearray(64 * 1024))
        pins.append(bytearray(1024))  # above pymalloc's limit, so on the same heap: freed blocks cannot merge
    del blocks
    before = rss_mb()
    released = release_free_memory()
    print(released, before, rss_mb())
    """
)


def test_release_free_memory_gives_freed_heap_pages_back():
    if _glibc() is None:
        return  # not glibc: the call does nothing, by design
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout.split()
    released, before, after = out[0] == "True", float(out[1]), float(out[2])
    assert released and before - after > 150, (before, after)


def test_limit_arenas_is_a_no_op_when_asked_for_the_default():
    assert limit_arenas(0) is False


SLIDING = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from dprecon_ros.core.heap import fix_mmap_threshold

    def rss_mb():
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    if sys.argv[1] == "fixed":
        fix_mmap_threshold(128)
    first = bytearray(16 * 2**20)
    del first  # glibc's default now serves blocks up to 16 MB from the heap
    blocks, pins = [], []
    for _ in range(20):  # 160 MB of image-sized blocks, each followed by a small live one
        blocks.append(bytearray(8 * 2**20))
        pins.append(bytearray(1024))
    before = rss_mb()
    del blocks
    print(before - rss_mb())
    """
)


def test_a_fixed_mmap_threshold_returns_freed_image_sized_blocks_at_once():
    if _glibc() is None:
        return
    freed = {
        mode: float(subprocess.run([sys.executable, "-c", SLIDING, mode], capture_output=True, text=True, check=True).stdout)
        for mode in ("fixed", "default")
    }
    assert freed["fixed"] > 150 and freed["default"] < 50, freed
