"""Memory soak: the simulator streams at camera rate with the camera circling the room, dprecon_node keeps
a bounded keyframe buffer (evicting as the camera comes round again) and reconstructs periodically. Samples
the node's resident memory (RSS) and keyframe count; prints a table and the verdict on the last half, and
writes JSON to bench/results/.

    .venv/bin/python bench/bench_soak.py                 # 10 minutes at 30 Hz
    .venv/bin/python bench/bench_soak.py --minutes 2     # a quick look (too short for a verdict)

RSS rises during each run (its working set) and falls after it, so samples are compared like with like: per
--window-s window (several runs), the lowest sample (the floor between runs) and the highest (a run's peak).
"Flat" means: over the second half of the run, the least-squares slopes of both the floors and the peaks are
below --max-slope-mb-per-min (2 MB/min is 120 MB an hour), and no window's peak exceeds the half's first peak
by more than --max-rise-mb. A second half of fewer than 3 windows gets no verdict (exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dprecon_ros.testing.ros_graph import RosGraph, params  # noqa: E402

MIN_WINDOWS = 3  # windows in the second half needed for a verdict


def rss_mb(pid: int) -> float:
    """Resident set size of a process from /proc (MiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def slope_per_min(times_s: list[float], values: list[float]) -> float:
    """Least-squares slope of values over time, per minute."""
    mt, mv = statistics.fmean(times_s), statistics.fmean(values)
    var = sum((t - mt) ** 2 for t in times_s)
    return 60.0 * sum((t - mt) * (v - mv) for t, v in zip(times_s, values)) / var if var > 0 else 0.0


def floors_and_peaks(samples: list[dict], window_s: float) -> list[dict]:
    """Per window: its middle time, the lowest RSS (between runs) and the highest (a run's working set)."""
    out = []
    end = samples[-1]["t_s"]
    start = 0.0
    while start < end:
        rss = [s["rss_mb"] for s in samples if start <= s["t_s"] < start + window_s]
        if rss:
            out.append({"t_s": start + window_s / 2, "floor_mb": min(rss), "peak_mb": max(rss)})
        start += window_s
    return out


def counters_of(status) -> dict[str, int]:
    return dict(zip(status.counter_names, (int(v) for v in status.counter_values)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--rate-hz", type=float, default=30.0, help="frames per second the simulator publishes")
    p.add_argument("--views", type=int, default=900, help="views on the camera's full circle (one lap = views / rate s)")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--max-keyframes", type=int, default=16, help="below one lap's keyframes, so eviction runs all the time")
    p.add_argument("--period-s", type=float, default=20.0, help="periodic reconstruction period")
    p.add_argument("--sample-s", type=float, default=5.0)
    p.add_argument("--max-slope-mb-per-min", type=float, default=2.0)
    p.add_argument("--max-rise-mb", type=float, default=50.0)
    p.add_argument("--window-s", type=float, default=60.0, help="floors and peaks are taken per window of this length")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--memtrace", type=Path, help="trace the node's Python/numpy allocations (bench/_memtrace) into this folder")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="dprecon_soak_") as tmp:
        graph = RosGraph(Path(tmp))
        plain_env = dict(graph.env)
        if args.memtrace:
            args.memtrace.mkdir(parents=True, exist_ok=True)
            graph.env = {
                **plain_env,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "bench" / "_memtrace"), plain_env.get("PYTHONPATH")])),
                "DPRECON_MEMTRACE_DIR": str(args.memtrace.resolve()),
            }
        try:
            node = graph.start(
                "dprecon_node",
                *params(
                    {
                        "reconstruction.period_s": args.period_s,
                        "reconstruction.min_keyframes": 3,
                        "keyframes.max_keyframes": args.max_keyframes,
                        "compute.device": "cpu",
                    }
                ),
            )
            graph.env = plain_env  # the simulator is not traced
            sim = graph.start(
                "dprecon_sim",
                *params(
                    {
                        "rate_hz": args.rate_hz,
                        "loop": True,
                        "start_delay_s": 1.0,
                        "wait_for_subscribers_s": 30.0,
                        "sim.num_views": args.views,
                        "sim.arc_deg": 360.0,
                        "sim.height_jitter_m": 0.02,  # the jitter is per view: at camera rate keep it below a pose jump
                        "sim.width": args.width,
                        "sim.height": args.height,
                    }
                ),
            )
            client = graph.client()
            if not client.spin_until(lambda: client.status is not None and client.status.keyframes > 0, 120):
                print(graph.logs())
                return 1
            samples = []
            start = time.monotonic()
            next_sample = start
            while (now := time.monotonic()) - start < args.minutes * 60:
                if node.poll() is not None or sim.poll() is not None:
                    print("a process ended early\n" + graph.logs())
                    return 1
                client.executor.spin_once(timeout_sec=0.1)
                if now >= next_sample:
                    s = client.status
                    samples.append(
                        {
                            "t_s": round(now - start, 1),
                            "rss_mb": round(rss_mb(node.pid), 1),
                            "keyframes": s.keyframes,
                            "objects": s.objects,
                            "runs": s.runs,
                        }
                    )
                    next_sample += args.sample_s
            final_counters = counters_of(client.status)
        finally:
            graph.close()

    times = [s["t_s"] for s in samples]
    rss = [s["rss_mb"] for s in samples]
    windows = floors_and_peaks(samples, args.window_s)
    half = [w for w in windows if w["t_s"] >= times[-1] / 2]
    floor_slope = slope_per_min([w["t_s"] for w in half], [w["floor_mb"] for w in half])
    peak_slope = slope_per_min([w["t_s"] for w in half], [w["peak_mb"] for w in half])
    half_rise = max(w["peak_mb"] for w in half) - half[0]["peak_mb"]
    judged = len(half) >= MIN_WINDOWS  # fewer windows give a slope of nothing: no verdict
    flat = judged and max(floor_slope, peak_slope) < args.max_slope_mb_per_min and half_rise < args.max_rise_mb
    summary = {
        "rss_start_mb": rss[0],
        "rss_peak_mb": max(rss),
        "rss_end_mb": rss[-1],
        "last_half_floor_slope_mb_per_min": round(floor_slope, 2),
        "last_half_peak_slope_mb_per_min": round(peak_slope, 2),
        "last_half_peak_rise_mb": round(half_rise, 1),
        "windows": windows,
        "keyframes_max": max(s["keyframes"] for s in samples),
        "keyframe_bound": args.max_keyframes,
        "runs": samples[-1]["runs"],
        "flat": flat,
    }

    print(f"soak: {args.minutes:g} min, {args.rate_hz:g} Hz, {args.width}x{args.height}, max_keyframes {args.max_keyframes}")
    print(f"{'t s':>7} {'RSS MB':>8} {'keyframes':>9} {'objects':>7} {'runs':>5}")
    every = max(1, len(samples) // 20)
    for s in samples[::every] + ([samples[-1]] if (len(samples) - 1) % every else []):
        print(f"{s['t_s']:7.0f} {s['rss_mb']:8.0f} {s['keyframes']:9d} {s['objects']:7d} {s['runs']:5d}")
    print(
        f"RSS start {summary['rss_start_mb']:.0f} MB, peak {summary['rss_peak_mb']:.0f} MB, end {summary['rss_end_mb']:.0f} MB; "
        f"last half: floors {floor_slope:+.2f} MB/min, peaks {peak_slope:+.2f} MB/min, peak rise {half_rise:.0f} MB"
        f" -> {'flat' if flat else ('GROWING' if judged else f'too short to judge (under {MIN_WINDOWS} windows)')}; "
        f"keyframes at most {summary['keyframes_max']} (bound {args.max_keyframes}), {summary['runs']} runs"
    )
    print("node counters:", ", ".join(f"{k}={v}" for k, v in sorted(final_counters.items())) or "none")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = args.out / f"soak_{stamp}.json"
    record = {"args": {k: str(v) for k, v in vars(args).items()}, "summary": summary, "counters": final_counters, "samples": samples}
    path.write_text(json.dumps(record, indent=1))
    print(f"wrote {path}")
    return 0 if flat else 2


if __name__ == "__main__":
    sys.exit(main())
