"""Memory soak: the simulator streams at camera rate with the camera circling the room, dprecon_node keeps
a bounded keyframe buffer (evicting as the camera comes round again) and reconstructs periodically. Samples
the node's resident memory (RSS) and keyframe count; prints a table and the verdict on the last half, and
writes JSON to bench/results/.

    .venv/bin/python bench/bench_soak.py                 # 10 minutes at 30 Hz
    .venv/bin/python bench/bench_soak.py --minutes 2     # a quick look (too short for a verdict)

RSS rises during each run (its working set) and falls after it, so samples are compared like with like: per
--window-s window (several runs), the lowest sample (the floor between runs) and the highest (a run's peak), and
the first sample after each run ends (the memory a run leaves behind). "Flat" means: over the second half of the
soak, the Theil-Sen slopes (the median of pairwise slopes, which one unusual run cannot tip) of the floors, the
peaks and the after-run samples are all below --max-slope-mb-per-min (2 MB/min is 120 MB an hour), and no
window's peak exceeds the half's median peak by more than --max-rise-mb, and the floors of the last
--late-windows windows stay within --max-late-rise-mb of the half's median floor (a leak that starts near the end
is too short for a slope). A second half of fewer than 3 windows gets no verdict (exit 2).
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

CAMERA_PROFILE = ROOT / "config" / "fastdds_camera.xml"  # what the launch files give every process
MIN_WINDOWS = 3  # windows in the second half needed for a verdict


def rss_mb(pid: int) -> float:
    """Resident set size of a process from /proc (MiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def slope_per_min(times_s: list[float], values: list[float]) -> float:
    """Theil-Sen slope of values over time, per minute: the median of the slopes between all pairs of points,
    so a single high run (a working set that varies with what the keyframes show) does not read as growth."""
    pairs = [
        (values[j] - values[i]) / (times_s[j] - times_s[i])
        for i in range(len(times_s))
        for j in range(i + 1, len(times_s))
        if times_s[j] != times_s[i]
    ]
    return 60.0 * statistics.median(pairs) if pairs else 0.0


def after_runs(samples: list[dict]) -> list[dict]:
    """The first sample after each run ends: what a run leaves behind, free of its working set."""
    return [b for a, b in zip(samples, samples[1:]) if b["runs"] > a["runs"]]


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
    p.add_argument("--sample-s", type=float, default=2.0, help="RSS sampling period (short enough to see the moments between runs)")
    p.add_argument("--max-slope-mb-per-min", type=float, default=2.0)
    p.add_argument("--max-rise-mb", type=float, default=50.0)
    p.add_argument(
        "--max-late-rise-mb", type=float, default=20.0, help="the last windows' floors may exceed the half's median floor by this"
    )
    p.add_argument("--late-windows", type=int, default=2)
    p.add_argument("--window-s", type=float, default=60.0, help="floors and peaks are taken per window of this length")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--fastdds-profile", default=str(CAMERA_PROFILE), help="Fast DDS profile both processes load; 'none' for defaults")
    p.add_argument("--memtrace", type=Path, help="trace the node's Python/numpy allocations (bench/_memtrace) into this folder")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="dprecon_soak_") as tmp:
        graph = RosGraph(Path(tmp))
        if args.fastdds_profile != "none":
            graph.env["FASTDDS_DEFAULT_PROFILES_FILE"] = args.fastdds_profile
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
    settled = [s for s in after_runs(samples) if s["t_s"] >= times[-1] / 2]
    floor_slope = slope_per_min([w["t_s"] for w in half], [w["floor_mb"] for w in half])
    peak_slope = slope_per_min([w["t_s"] for w in half], [w["peak_mb"] for w in half])
    after_run_slope = slope_per_min([s["t_s"] for s in settled], [s["rss_mb"] for s in settled])
    half_rise = max(w["peak_mb"] for w in half) - statistics.median(w["peak_mb"] for w in half)
    late_rise = max(w["floor_mb"] for w in half[-args.late_windows :]) - statistics.median(w["floor_mb"] for w in half)
    judged = len(half) >= MIN_WINDOWS  # fewer windows give a slope of nothing: no verdict
    slopes = (floor_slope, peak_slope, after_run_slope)
    flat = judged and max(slopes) < args.max_slope_mb_per_min and half_rise < args.max_rise_mb and late_rise < args.max_late_rise_mb
    summary = {
        "rss_start_mb": rss[0],
        "rss_peak_mb": max(rss),
        "rss_end_mb": rss[-1],
        "last_half_floor_slope_mb_per_min": round(floor_slope, 2),
        "last_half_peak_slope_mb_per_min": round(peak_slope, 2),
        "last_half_after_run_slope_mb_per_min": round(after_run_slope, 2),
        "last_half_after_run_mb": [s["rss_mb"] for s in settled],
        "last_half_peak_above_median_mb": round(half_rise, 1),
        "last_windows_floor_above_median_mb": round(late_rise, 1),
        "end_floor_mb": windows[-1]["floor_mb"],
        "last_half_floor_range_mb": [min(w["floor_mb"] for w in half), max(w["floor_mb"] for w in half)],
        "last_half_peak_range_mb": [min(w["peak_mb"] for w in half), max(w["peak_mb"] for w in half)],
        "received_rgb_hz": round(final_counters.get("received_rgb", 0) / max(1e-9, samples[-1]["t_s"] + args.sample_s), 2),
        "windows": windows,
        "keyframes_max": max(s["keyframes"] for s in samples),
        "keyframe_bound": args.max_keyframes,
        "runs": samples[-1]["runs"],
        "flat": flat,
    }

    print(f"soak: {args.minutes:g} min, {args.rate_hz:g} Hz, {args.width}x{args.height}, max_keyframes {args.max_keyframes}")
    print(f"{'window s':>9} | {'floor MB':>8} {'peak MB':>8} {'after runs MB':>14} | {'keyframes':>9} {'objects':>7} {'runs':>5}")
    ended = after_runs(samples)
    for w in windows:
        inside = [s for s in samples if abs(s["t_s"] - w["t_s"]) <= args.window_s / 2]
        settled_here = [s["rss_mb"] for s in ended if abs(s["t_s"] - w["t_s"]) <= args.window_s / 2]
        after = f"{min(settled_here):.0f}-{max(settled_here):.0f}" if settled_here else "-"
        print(
            f"{w['t_s'] - args.window_s / 2:4.0f}-{w['t_s'] + args.window_s / 2:<4.0f} | {w['floor_mb']:8.0f} {w['peak_mb']:8.0f} {after:>14} | "
            f"{max(s['keyframes'] for s in inside):9d} {max(s['objects'] for s in inside):7d} {inside[-1]['runs']:5d}"
        )
    print(
        f"RSS start {summary['rss_start_mb']:.0f} MB, peak {summary['rss_peak_mb']:.0f} MB, end {summary['rss_end_mb']:.0f} MB "
        f"(last window's floor {summary['end_floor_mb']:.0f} MB); colour frames received {summary['received_rgb_hz']:.1f} per s; "
        f"last half: floors {floor_slope:+.2f} MB/min, peaks {peak_slope:+.2f} MB/min, after runs {after_run_slope:+.2f} MB/min, "
        f"highest peak {half_rise:.0f} MB above the median, last floors {late_rise:+.0f} MB"
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
