"""Loaded by a process whose PYTHONPATH starts with this folder (bench_soak.py --memtrace DIR): traces Python
and numpy allocations with tracemalloc and, every DPRECON_MEMTRACE_EVERY_S seconds, writes what grew since the
first snapshot (by source line) and the process's memory split from /proc/self/smaps_rollup to
DPRECON_MEMTRACE_DIR/memtrace_<pid>.txt. For finding what grows in a soak; never used by the product."""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from pathlib import Path

_DIR = os.environ.get("DPRECON_MEMTRACE_DIR")


def _rollup() -> str:
    keep = ("Rss", "Anonymous", "Shared_Clean", "Private_Dirty")
    lines = Path("/proc/self/smaps_rollup").read_text().splitlines()
    return ", ".join(" ".join(line.split()[:2]) for line in lines if line.split(":")[0] in keep)


def _trace(out: Path, every_s: float) -> None:
    filters = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap*")]
    first = None
    start = time.monotonic()
    while True:
        time.sleep(every_s)
        snap = tracemalloc.take_snapshot().filter_traces(filters)
        traced, peak = tracemalloc.get_traced_memory()
        with out.open("a") as f:
            f.write(f"\n== t={time.monotonic() - start:.0f}s traced={traced / 2**20:.1f} MiB peak={peak / 2**20:.1f} MiB; {_rollup()}\n")
            if first is None:
                first = snap
                for stat in snap.statistics("lineno")[:15]:
                    f.write(f"  {stat}\n")
                continue
            for stat in snap.compare_to(first, "lineno")[:20]:
                f.write(f"  {stat}\n")


if _DIR:
    tracemalloc.start(int(os.environ.get("DPRECON_MEMTRACE_FRAMES", "1")))
    path = Path(_DIR) / f"memtrace_{os.getpid()}.txt"
    threading.Thread(target=_trace, args=(path, float(os.environ.get("DPRECON_MEMTRACE_EVERY_S", "60"))), daemon=True).start()
