"""dprecon-demo: the simulated room, end to end through the ROS graph.

Starts dprecon_sim and dprecon_node as separate processes on a private localhost ROS domain, waits for the
keyframes, asks the node to reconstruct, exports meshes and the scene graph, and prints a summary with the
F-score of every object against the simulator's ground truth.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import trimesh

from dprecon_ros.eval.evaluation import evaluate, load_ground_truth, score_table
from dprecon_ros.io.export import load_glb_in_map_frame
from dprecon_ros.testing.processes import start_logged, stop_process
from dprecon_ros.testing.ros_env import apply_localhost_ros_env

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "dprecon.yaml"


def load_exported(out: Path) -> dict[int, tuple[str, trimesh.Trimesh]]:
    pred = {}
    for path in sorted((out / "objects").glob("*.glb")):
        oid, label = path.stem.split("_", 1)
        pred[int(oid)] = (label, load_glb_in_map_frame(path))
    return pred


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dprecon-demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/demo", help="output directory")
    p.add_argument("--config", default=str(REPO_CONFIG) if REPO_CONFIG.exists() else "", help="node params YAML")
    p.add_argument("--views", type=int, default=15)
    p.add_argument("--rate", type=float, default=3.0, help="simulated frames per second")
    p.add_argument("--keep-ids", action="store_true", help="keep instance ids constant (default: shuffled per frame)")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument(
        "--stages",
        default="fuse,mesh,texture",
        help="the node's stage list, comma-separated (default: TSDF meshes with textures baked from the keyframes)",
    )
    args = p.parse_args(argv)

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = apply_localhost_ros_env()
    bin_dir = Path(sys.executable).parent
    node_cmd = [str(bin_dir / "dprecon_node"), "--ros-args"]
    if args.config:
        node_cmd += ["--params-file", args.config]
    node_cmd += ["-p", "topics.image_qos:=reliable", "-p", "reconstruction.period_s:=0.0", "-p", f"reconstruction.export_dir:={out}"]
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    node_cmd += ["-p", f"reconstruction.stages:=[{', '.join(repr(s) for s in stages)}]"]
    sim_cmd = [
        str(bin_dir / "dprecon_sim"),
        "--ros-args",
        "-p",
        f"rate_hz:={args.rate}",
        "-p",
        "exit_when_done:=true",
        "-p",
        f"sim.num_views:={args.views}",
        "-p",
        f"sim.shuffle_ids:={'false' if args.keep_ids else 'true'}",
        "-p",
        f"ground_truth_dir:={out / 'ground_truth'}",
        "-p",
        "wait_for_subscribers_s:=30.0",
    ]
    print(f"[demo] ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']} (localhost only); logs in {out}")
    t0 = time.monotonic()
    node = start_logged(node_cmd, env, out / "node.log")
    sim = None
    import rclpy

    from dprecon_ros.testing.graph_client import DpreconClient

    rclpy.init()
    client = DpreconClient(client_name="dprecon_demo")
    try:
        sim = start_logged(sim_cmd, env, out / "sim.log")
        sim.wait(timeout=args.timeout)
        keyframes = client.wait_for_keyframes_settled(minimum=3, settle_s=2.0, timeout_s=60.0)
        print(f"[demo] simulator done after {time.monotonic() - t0:.1f} s; node holds {keyframes} keyframes")
        result = client.reconstruct(timeout_s=args.timeout)
        print(f"[demo] ~/reconstruct: {result.message}")
        if not result.success:
            return 1
        client.spin_until(lambda: None not in (client.graph_json, client.objects, client.markers), 30.0)
        graph = client.graph_json or {}
        labels = {o["id"]: o["label"] for o in graph.get("objects", [])}
        labels[0] = graph.get("background_label", "floor")
        scores = evaluate(load_exported(out), load_ground_truth(out / "ground_truth"))
        print()
        print(f"objects ({len(client.objects.objects)} published, markers shown: {len(client.marker_state())})")
        print(score_table(scores))
        print("\nrelations")
        for r in graph.get("relations", []):
            print(
                f"  {labels.get(r['subject'])}({r['subject']}) {r['relation']} {labels.get(r['object'])}({r['object']})  conf {r['confidence']:.2f}"
            )
        counters = dict(zip(client.status.counter_names, client.status.counter_values)) if client.status else {}
        print(f"\ninput events: {counters or 'none'}")
        print(
            f"exported to {out}: objects/*.glb, background.glb, scene.glb, scene_graph.json"
            f"{', mesh_resources/ (textured GLBs for RViz2 / Foxglove markers)' if 'texture' in stages else ''}"
            f" (total {time.monotonic() - t0:.1f} s)"
        )
        return 0
    finally:
        client.close()
        rclpy.try_shutdown()
        if sim is not None:
            stop_process(sim)
        stop_process(node)


if __name__ == "__main__":
    sys.exit(main())
