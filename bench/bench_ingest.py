"""Camera-rate ingestion: a publisher process (bench/_ingest_publisher.py) streams pre-rendered 640x480 sets
(colour, depth, instance mask, labels, CameraInfo, pose; one stamp per set) into dprecon_node at each rate,
with reconstruction off and with a forced ~/reconstruct always in flight ("on"), and reads back from ~/status
what the node received, matched, skipped as redundant, considered and lost, with the node's CPU and memory
meanwhile. Both processes load config/fastdds_camera.xml unless --fastdds-profile none (Fast DDS defaults) or
--profile-on names one side. Prints one table (one row per rate x reconstruction) and writes JSON to
bench/results/.

    .venv/bin/python bench/bench_ingest.py                                               # 6 runs of 60 s (~8 min)
    .venv/bin/python bench/bench_ingest.py --seconds 10 --rates 30 --reconstruction off  # a quick look

Every set must be accounted for once the node has caught up (received_rgb + missed_rgb == published,
frames_waiting == 0): column `check` is OK when published == considered + redundant + lost, else the
difference; lost includes `missed_rgb`, colour images sent that never arrived (gaps in the publisher's
sequence numbers). `late` is the publisher's missed deadlines. A counter the node does not publish reads 0. The first run renders the views with pybullet (~30 s, cached in bench/scenes/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

# ROS traffic stays on this machine, on a domain of this run's own (as the tests do)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dprecon_ros.testing.processes import start_logged  # noqa: E402
from dprecon_ros.testing.ros_graph import RosGraph, params  # noqa: E402

PUBLISHER = ROOT / "bench" / "_ingest_publisher.py"
CAMERA_PROFILE = ROOT / "config" / "fastdds_camera.xml"
PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
STREAMS = ("rgb", "depth", "instance", "camera_info", "labels", "pose")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and all its threads from /proc (s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # the name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    """Resident set size of a process from /proc (MiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def counters_of(status) -> dict[str, int]:
    return dict(zip(status.counter_names, (int(v) for v in status.counter_values)))


class Sampler:
    """The node's CPU (% of one core over the last interval) and RSS, once per `every_s`, stamped in wall time
    so samples can be cut to the publisher's streaming window."""

    def __init__(self, pid: int, every_s: float = 1.0) -> None:
        self.pid, self.every_s = pid, every_s
        self.samples: list[dict[str, float]] = []
        self._last = (time.monotonic(), cpu_seconds(pid))
        self.samples.append({"t": time.time(), "cpu_pct": 0.0, "rss_mb": round(rss_mb(pid), 1)})

    def poll(self) -> None:
        now, cpu = time.monotonic(), cpu_seconds(self.pid)
        if now - self._last[0] >= self.every_s:
            pct = 100.0 * (cpu - self._last[1]) / (now - self._last[0])
            self.samples.append({"t": time.time(), "cpu_pct": round(pct, 1), "rss_mb": round(rss_mb(self.pid), 1)})
            self._last = (now, cpu)


def node_parameters(args: argparse.Namespace, reconstruction: str) -> dict[str, object]:
    return {
        "topics.image_qos": args.image_qos,
        "compute.device": "cpu",
        "reconstruction.period_s": 0.0,  # "on" keeps a forced run in flight instead (ReconstructionLoad)
    }


def process_envs(args: argparse.Namespace, base: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(node, publisher) environments: the Fast DDS profile goes to the processes --profile-on names."""
    node_env, pub_env = dict(base), dict(base)
    for env in (node_env, pub_env):
        env.pop(PROFILE_VARIABLE, None)
    if args.fastdds_profile != "none":
        if args.profile_on in ("both", "node"):
            node_env[PROFILE_VARIABLE] = args.fastdds_profile
        if args.profile_on in ("both", "publisher"):
            pub_env[PROFILE_VARIABLE] = args.fastdds_profile
    return node_env, pub_env


class ReconstructionLoad:
    """Keeps one forced ~/reconstruct goal in flight while the stream lasts, so every set arrives while a
    reconstruction runs (a periodic run does nothing once the keyframes stop changing). Goals start at most
    every `min_gap_s`, so the few quick refusals before there are enough keyframes do not flood the node."""

    def __init__(self, client, min_gap_s: float = 1.0) -> None:
        self.client, self.goal, self.result, self.finished, self.failed = client, None, None, 0, 0
        self.min_gap_s, self.sent_at = min_gap_s, -float("inf")

    def poll(self) -> None:
        if self.goal is None:
            if time.monotonic() - self.sent_at < self.min_gap_s:
                return
            self.sent_at = time.monotonic()
            from dprecon_msgs.action import Reconstruct

            self.goal = self.client.reconstruct_action.send_goal_async(Reconstruct.Goal(force=True, stages=[]))
        elif self.result is None and self.goal.done():
            handle = self.goal.result()
            if not handle.accepted:
                self.failed += 1
                self.goal = None
                return
            self.result = handle.get_result_async()
        elif self.result is not None and self.result.done():
            ok = self.result.result().result.success
            self.finished, self.failed = self.finished + ok, self.failed + (not ok)
            self.goal, self.result = None, None


def publisher_args(args: argparse.Namespace) -> list[str]:
    return ["--width", str(args.width), "--height", str(args.height), "--depth-encoding", args.depth_encoding]


def run_once(args: argparse.Namespace, rate_hz: float, reconstruction: str, log_dir: Path) -> dict:
    """One node, one stream: counters, samples and the publisher's report."""
    log_dir.mkdir(parents=True)
    graph = RosGraph(log_dir)
    try:
        node_env, pub_env = process_envs(args, graph.env)
        graph.env = node_env
        node = graph.start("dprecon_node", *params(node_parameters(args, reconstruction)))
        client = graph.client()
        if not client.spin_until(lambda: client.status is not None, 60):
            raise RuntimeError("dprecon_node published no status\n" + graph.logs())
        if reconstruction == "on" and not client.reconstruct_action.wait_for_server(timeout_sec=30.0):
            raise RuntimeError("dprecon_node offers no ~/reconstruct\n" + graph.logs())
        load = ReconstructionLoad(client) if reconstruction == "on" else None
        sampler = Sampler(node.pid)
        report = log_dir / "publisher.json"
        log = log_dir / "publisher.log"
        cmd = [sys.executable, str(PUBLISHER), "--rate-hz", str(rate_hz), "--seconds", str(args.seconds), "--out", str(report)]
        pub = start_logged(cmd + publisher_args(args), pub_env, log)
        graph.procs.append((pub, log))  # stopped with the graph, and its log shown with the others
        deadline = time.monotonic() + args.seconds + 180.0
        while pub.poll() is None:
            if node.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dprecon_node ended or the publisher hung\n" + graph.logs())
            client.executor.spin_once(timeout_sec=0.1)
            sampler.poll()
            if load is not None:
                load.poll()
        if pub.returncode != 0:
            raise RuntimeError(f"publisher exited with {pub.returncode}\n" + graph.logs())
        published = json.loads(report.read_text())
        drained, drain_s = wait_drained(client, sampler, published["published"]["rgb"], args.drain_timeout_s, args.stall_s)
        status = client.status
        return {
            "rate_hz": rate_hz,
            "reconstruction": reconstruction,
            "node_parameters": node_parameters(args, reconstruction),
            "publisher": published,
            "counters": counters_of(status),
            "frames_waiting": int(getattr(status, "frames_waiting", 0)),
            "keyframes": status.keyframes,
            "runs": status.runs,
            "forced_runs": {"finished": load.finished, "failed": load.failed} if load else None,
            "drained": drained,
            "drain_s": round(drain_s, 1),
            "samples": sampler.samples,
        }
    finally:
        graph.close()


def wait_drained(client, sampler: Sampler, published_rgb: int, timeout_s: float, stall_s: float) -> tuple[bool, float]:
    """Wait until every colour frame was received (or counted missed) and resolved; (done, seconds waited).

    Gives up once its counters and frames_waiting stood still for `stall_s` (frames it will never resolve).
    A node that does not count received_rgb is taken as done once its counters stood still for 3 s.
    """
    start = time.monotonic()
    last, since = None, start
    while (now := time.monotonic()) - start < timeout_s:
        client.executor.spin_once(timeout_sec=0.1)
        sampler.poll()
        counters, waiting = counters_of(client.status), getattr(client.status, "frames_waiting", 0)
        if counters.get("received_rgb", 0) + counters.get("missed_rgb", 0) >= published_rgb and waiting == 0:
            return True, now - start
        if (counters, waiting) != last:
            last, since = (counters, waiting), now
        elif now - since >= (stall_s if "received_rgb" in counters else 3.0):
            return "received_rgb" not in counters, now - start
    return False, time.monotonic() - start


def summarise(run: dict) -> dict:
    """The table's figures of one run."""
    c, pub = run["counters"], run["publisher"]
    lost = {name.removeprefix("lost_"): v for name, v in c.items() if name.startswith("lost_") and v}
    t0, t1 = pub["stream_wall_s"]
    # a sample covers the second before it: keep those inside the publisher's streaming window
    streaming = [s for s in run["samples"] if t0 + 1.0 <= s["t"] <= t1 + 1.0] or run["samples"]
    cpu = [s["cpu_pct"] for s in streaming]
    rss = [s["rss_mb"] for s in run["samples"]]
    missed_rgb = c.get("missed_rgb", 0)  # sent, never received: gaps in the publisher's sequence numbers
    accounted = c.get("considered", 0) + c.get("redundant", 0) + sum(lost.values()) + missed_rgb
    diff = accounted - pub["published_sets"]
    return {
        "published": pub["published_sets"],
        "late": pub["missed_deadlines"],
        "pub_hz": pub["achieved_hz"],
        "received": {s: c.get(f"received_{s}", 0) for s in STREAMS},
        "synchronised": c.get("synchronised", 0),
        "considered": c.get("considered", 0),
        "redundant": c.get("redundant", 0),
        "accepted": c.get("accepted", 0),
        "lost": sum(lost.values()) + missed_rgb,
        "lost_by_reason": {**lost, **({"missed_rgb": missed_rgb} if missed_rgb else {})},
        "cpu_pct": {"median": statistics.median(cpu), "max": max(cpu)},
        "rss_mb": {"start": rss[0], "peak": max(rss), "end": rss[-1]},
        "runs": run["runs"],
        "check": "OK" if diff == 0 else f"{diff:+d}",
    }


def print_table(rows: list[tuple[dict, dict]]) -> None:
    head = (
        f"{'Hz':>3} {'rec':>3} {'pub':>5} {'late':>4} {'pubHz':>6} | {'rgb':>5} {'depth':>5} {'inst':>5} {'info':>5} {'lab':>4} {'pose':>5} | "
        f"{'sync':>5} {'cons':>5} {'red':>5} {'acc':>4} {'lost':>5} {'wait':>4} | {'CPU% med':>8} {'max':>4} | {'RSS MB st':>9} {'peak':>5} {'end':>5} | "
        f"{'runs':>4} {'check':>6} | lost by reason"
    )
    print(head)
    print("-" * len(head))
    for run, s in rows:
        r = s["received"]
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(s["lost_by_reason"].items())) or "-"
        print(
            f"{run['rate_hz']:>3g} {run['reconstruction']:>3} {s['published']:>5} {s['late']:>4} {s['pub_hz']:>6.2f} | "
            f"{r['rgb']:>5} {r['depth']:>5} {r['instance']:>5} {r['camera_info']:>5} {r['labels']:>4} {r['pose']:>5} | "
            f"{s['synchronised']:>5} {s['considered']:>5} {s['redundant']:>5} {s['accepted']:>4} {s['lost']:>5} {run['frames_waiting']:>4} | "
            f"{s['cpu_pct']['median']:>8.0f} {s['cpu_pct']['max']:>4.0f} | "
            f"{s['rss_mb']['start']:>9.0f} {s['rss_mb']['peak']:>5.0f} {s['rss_mb']['end']:>5.0f} | "
            f"{s['runs']:>4} {s['check']:>6} | {reasons}"
        )
    known = {f"received_{s}" for s in STREAMS} | {"synchronised", "considered", "redundant", "accepted"}
    for run, _ in rows:
        other = {k: v for k, v in run["counters"].items() if k not in known and not k.startswith("lost_")}
        note = "" if run["drained"] else f"; not drained: waited {run['drain_s']} s"
        print(
            f"{run['rate_hz']:g} Hz, reconstruction {run['reconstruction']}: other counters "
            + (", ".join(f"{k}={v}" for k, v in sorted(other.items())) or "none")
            + note
        )


def machine_info() -> dict[str, object]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), ""
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
    }


def git_commit() -> dict[str, object]:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", type=float, nargs="+", default=[15.0, 30.0, 60.0], help="sets per second")
    p.add_argument("--reconstruction", nargs="+", choices=("off", "on"), default=["off", "on"])
    p.add_argument("--seconds", type=float, default=60.0, help="how long each stream lasts")
    p.add_argument(
        "--fastdds-profile",
        default=str(CAMERA_PROFILE),
        help="Fast DDS XML profile for the processes --profile-on names; 'none': Fast DDS defaults",
    )
    p.add_argument("--profile-on", choices=("both", "node", "publisher"), default="both")
    p.add_argument("--image-qos", choices=("reliable", "sensor_data"), default="reliable", help="the node's topics.image_qos")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--depth-encoding", choices=("32FC1", "16UC1"), default="32FC1")
    p.add_argument("--drain-timeout-s", type=float, default=60.0, help="after the stream, wait this long for the node to catch up")
    p.add_argument("--stall-s", type=float, default=15.0, help="stop waiting once the node's counters stood still this long")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--log-dir", type=Path, help="keep the node's and the publisher's logs here (default: a temporary directory)")
    args = p.parse_args()

    subprocess.run([sys.executable, str(PUBLISHER), "--render-only", *publisher_args(args)], check=True)  # before any timing
    rows = []
    with tempfile.TemporaryDirectory(prefix="dprecon_ingest_") as tmp_dir:
        tmp = args.log_dir or Path(tmp_dir)
        for rate in args.rates:
            for reconstruction in args.reconstruction:
                print(f"[ingest] {rate:g} Hz, reconstruction {reconstruction}, {args.seconds:g} s ...", flush=True)
                try:
                    run = run_once(args, rate, reconstruction, tmp / f"{rate:g}hz_{reconstruction}_{int(time.time())}")
                except RuntimeError as exc:
                    print(exc)
                    return 1
                rows.append((run, summarise(run)))

    transports = os.environ.get("FASTDDS_BUILTIN_TRANSPORTS", "DEFAULT")  # LARGE_DATA: README, "Camera-rate images"
    profile = "none" if args.fastdds_profile == "none" else f"{Path(args.fastdds_profile).name} on {args.profile_on}"
    print(
        f"\ningest: {args.width}x{args.height}, depth {args.depth_encoding}, image QoS {args.image_qos}, "
        f"Fast DDS profile {profile}, builtin transports {transports}, {args.seconds:g} s per run"
    )
    print_table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"ingest_{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.json"
    record = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "git": git_commit(),
        "machine": machine_info(),
        "fastdds_builtin_transports": os.environ.get("FASTDDS_BUILTIN_TRANSPORTS", "DEFAULT"),
        "fastdds_profile": {"file": args.fastdds_profile, "on": args.profile_on},
        "runs": [{**run, "summary": s} for run, s in rows],
    }
    path.write_text(json.dumps(record, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
