"""Benchmark the project's sparse TSDF fusion against open3d's VoxelBlockGrid on the same frames, and the live
map's latency: how long after a keyframe arrives its map is out.

    .venv/bin/python bench/bench_tsdf.py                        # 10 and 60 views at 1 and 4 cm, 640x480, then the latency
    .venv/bin/python bench/bench_tsdf.py --views 3 --voxels 0.04 --width 160 --height 120 --latency-views 5 --interval 0.5
                                                                # a smoke run (seconds)
    .venv/bin/python bench/bench_tsdf.py --device cuda --no-latency   # the project's side on a GPU (open3d stays on the CPU)
    python3 bench/bench_tsdf.py --device cuda --no-latency --no-open3d --views 10   # a GPU machine without open3d

Fusion: simulated frames (--scene, default `hard`: a 120-degree arc, 5 mm depth noise at 1 m) at --width x --height,
every pixel with depth taken as surface (open3d has no masks), fused by both systems at each --voxels size with
the project's block size (tsdf.block_voxels), truncation (tsdf.truncation_voxels), depth_max (tsdf.max_depth_m)
and mesh weight threshold (mesh.min_weight). Each (views, voxel, system) runs in its own subprocess (this script
with the hidden --one), torch and open3d each limited to --threads, both with storage sized beforehand for
the same number of blocks (the project's allocation alone, run first, times 1.5), so that the peak RSS is that system's: the
subprocess's own high-water mark (VmHWM; ru_maxrss is recorded too, but on Linux it also counts the parent's RSS
at the fork). Per run: integration ms per frame (min, median; the project: DepthView.of + integrate; open3d: image conversion +
compute_unique_block_coordinates + integrate), one full mesh extraction (median of --mesh-repeats), the
triangles, blocks and peak RSS, and for the project one incremental re-mesh after the last frame (BlockMesher:
ms and blocks marched). Agreement: the share of the project's mesh vertices within one voxel of open3d's, and
the reverse. Views are rendered once with pybullet and cached in bench/scenes/ (git-ignored).

Latency (--latency, on by default): a Mapper with the live map meshing after each pass is fed --latency-views
frames of the same scene (with their instance masks), one every --interval seconds, every one accepted as a
keyframe; per keyframe, the time from add_frame returning until the live map's meshes include it (the pass's
made_at, seen by polling). Target: the map after the last keyframe within 2 s.

Prints tables (markdown) and writes JSON to bench/results/. open3d is installed for this benchmark only; the
node never imports it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from dprecon_ros.config import DpreconConfig
    from dprecon_ros.core.mapping.live_fusion import LiveFusion
    from dprecon_ros.core.types import CameraIntrinsics, Frame
    from dprecon_ros.sim.simulator import SimConfig

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))
# Only light imports at the top: a --one subprocess imports torch (the project) or open3d, never both, so that
# its peak RSS is its own system's. The parent imports the project (and bench_backends) lazily.

SCENE_CACHE = ROOT / "bench" / "scenes"
PROJECT, OPEN3D = "project", "open3d"
SYSTEMS = (PROJECT, OPEN3D)
DEFAULT_VIEWS = [10, 60]
DEFAULT_VOXELS_M = [0.01, 0.04]
DEFAULT_WIDTH, DEFAULT_HEIGHT = 640, 480
DEFAULT_THREADS = 2
DEFAULT_MESH_REPEATS = 3
DEFAULT_LATENCY_VIEWS = 60
DEFAULT_INTERVAL_S = 1.0  # a keyframe rate
BLOCK_COUNT_MARGIN = 1.5  # both systems' storage is sized to the blocks allocation finds times this (both grow if short)
SIZING = -1  # --block-count of the project's allocation-only run
MIN_BLOCK_COUNT = 1024
POLL_S = 0.005  # how often the latency run looks at the live map
LATENCY_GIVE_UP_S = 30.0  # a keyframe not in the live map this long after add_frame is recorded as missed
LATENCY_TARGET_S = 2.0  # the map after the last keyframe within this
LATENCY_PERCENTILE = 90
IDLE_WAIT_S = 120.0  # the end of the latency run: the fusion thread's last pass
STOP_TIMEOUT_S = 30.0
MEMORY_MARGIN = 2.0  # keyframes.max_memory_mb: this many times the frames' bytes, so no keyframe is evicted
MS_PER_S = 1000.0
KIB_PER_MIB = 1024.0  # ru_maxrss and /proc/self/status are in KiB on Linux
CLEAR_REFS, RESET_HIGH_WATER = "/proc/self/clear_refs", "5"
PROC_STATUS, HIGH_WATER_FIELD = "/proc/self/status", "VmHWM:"
BYTES_PER_MIB = float(2**20)
MAX_CHANNEL = 255.0
FRAMES_FILE, SETTINGS_FILE = "frames.npz", "settings.json"
NOT_INSTALLED = "not installed"


# --------------------------------------------------------------------------------------------------- frames
def scene_config(scene: str, views: int, width: int, height: int) -> SimConfig:
    from bench_backends import SCENES

    from dprecon_ros.sim.simulator import SimConfig

    return SimConfig(num_views=views, width=width, height=height, **SCENES[scene])


def scene_path(scene: str, cfg: SimConfig) -> Path:
    """The cache file of one (scene, views, size): the name carries the settings and a hash of all of them."""
    key = hashlib.sha1(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:10]
    return SCENE_CACHE / f"tsdf_{scene}_{cfg.width}x{cfg.height}_{cfg.num_views}_{key}.npz"


def render_sim(cfg: SimConfig) -> tuple[list[Frame], CameraIntrinsics]:
    """The simulator's frames, with its pose and depth noise."""
    from dprecon_ros.sim.simulator import RoomSimulator

    with RoomSimulator(cfg) as sim:
        return [f for f, _ in sim.frames()], sim.intrinsics


def load_views(scene: str, views: int, width: int, height: int) -> dict[str, np.ndarray]:
    from _ingest_publisher import cached_views  # the parent only: its imports are the project's

    cfg = scene_config(scene, views, width, height)
    return cached_views(scene_path(scene, cfg), lambda: render_sim(cfg))


def sim_frames(views: dict[str, np.ndarray]) -> list[Frame]:
    """The cached views as Frames, with their instance masks and labels (the latency run's input)."""
    from dprecon_ros.core.types import CameraIntrinsics, Frame

    n, height, width = views["depth_m"].shape
    K = CameraIntrinsics(*(float(x) for x in views["intrinsics"]), width, height)
    return [
        Frame(
            float(views["stamps"][i]),
            views["rgb"][i],
            views["depth_m"][i],
            views["instance"][i].astype(np.int32),
            {int(k): v for k, v in json.loads(str(views["labels"][i])).items()},
            K,
            views["T_world_camera"][i],
        )
        for i in range(n)
    ]


def write_frames(views: dict[str, np.ndarray], path: Path) -> None:
    """Depth, colour and pose for the --one subprocesses, one key per frame so that they read one at a time."""
    arrays = {"T_world_camera": views["T_world_camera"], "intrinsics": views["intrinsics"]}
    for i in range(len(views["depth_m"])):
        arrays[f"depth{i}"] = views["depth_m"][i]
        arrays[f"rgb{i}"] = views["rgb"][i]
    np.savez(path, **arrays)


# ------------------------------------------------------------------------------------------ one system run
def reset_peak_rss() -> None:
    """Start VmHWM again from the current RSS (Linux: writing 5 to /proc/self/clear_refs); a no-op elsewhere."""
    try:
        Path(CLEAR_REFS).write_text(RESET_HIGH_WATER)
    except OSError:
        pass


def peak_rss_mb() -> float:
    """This process's peak RSS. On Linux the high-water mark of its own memory (VmHWM): ru_maxrss of a process
    started by fork + exec is at least its parent's RSS at the fork (the kernel carries the mark over), which
    would put the parent's torch and frames into both systems' peaks."""
    try:
        for line in Path(PROC_STATUS).read_text().splitlines():
            if line.startswith(HIGH_WATER_FIELD):
                return float(line.split()[1]) / KIB_PER_MIB
    except OSError:
        pass
    return ru_maxrss_mb()


def ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MIB


def limit_threads(threads: int) -> None:
    """Before torch or open3d is imported: their OpenMP pools read this once."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)


def run_project(frames: np.lib.npyio.NpzFile, settings: dict, args: argparse.Namespace) -> tuple[dict, dict[str, np.ndarray]]:
    """DepthView.of + integrate per frame, an incremental re-mesh after the last, full extractions."""
    import torch

    torch.set_num_threads(args.threads)
    from dprecon_ros.core.fusion.block_mesh import BlockMesher, extract_block_mesh
    from dprecon_ros.core.fusion.sparse_tsdf import DepthView, SparseTsdfVolume
    from dprecon_ros.core.types import CameraIntrinsics, Frame

    device = torch.device(args.device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    poses, intrinsics = frames["T_world_camera"], frames["intrinsics"]
    base_rss = peak_rss_mb()
    sizing = args.block_count < 0  # allocate only: how many blocks both systems' storage is sized for
    volume = SparseTsdfVolume(
        args.voxel,
        settings["truncation_voxels"],
        settings["block_voxels"],
        device,
        free_space_weight=0.0,
        carve_in_frustum=False,
        max_depth_m=settings["max_depth_m"],
        allocation_samples_per_block=settings["allocation_samples_per_block"],
        initial_blocks=max(args.block_count, MIN_BLOCK_COUNT),
    )
    min_weight = settings["min_weight"]
    integrate_ms, mesher, surface, K = [], None, None, None
    for i in range(len(poses)):
        depth, rgb = frames[f"depth{i}"], frames[f"rgb{i}"]
        if surface is None:
            height, width = depth.shape
            K = CameraIntrinsics(*(float(x) for x in intrinsics), width, height)
            surface = torch.ones((height, width), dtype=torch.bool, device=device)  # every pixel with depth
        frame = Frame(0.0, rgb, depth, np.zeros(depth.shape, np.int32), {}, K, poses[i])
        if sizing:
            view = DepthView.of(frame, device, i)
            volume.allocate(view, view.depth > 0)
            continue
        if i == len(poses) - 1:  # the mesh the incremental re-mesh starts from
            mesher = BlockMesher(volume, min_weight)
            mesher.mesh()
        sync()
        t0 = time.perf_counter()
        volume.integrate(DepthView.of(frame, device, i), surface)
        sync()
        integrate_ms.append((time.perf_counter() - t0) * MS_PER_S)
    if sizing:
        return {"blocks": volume.num_blocks}, {"vertices": np.zeros((0, 3), np.float32), "faces": np.zeros((0, 3), np.int64)}
    sync()
    t0 = time.perf_counter()
    incremental = mesher.mesh()
    sync()
    remesh_ms = (time.perf_counter() - t0) * MS_PER_S
    remesh_marched = mesher.marched_blocks
    # the peak is fusion's and one full extraction's: the incremental mesher's pieces are benchmark extras
    fusion_peak = peak_rss_mb()
    del mesher
    reset_peak_rss()
    mesh_ms, mesh = [], None
    for _ in range(args.mesh_repeats):
        sync()
        t0 = time.perf_counter()
        mesh = extract_block_mesh(volume, min_weight)
        sync()
        mesh_ms.append((time.perf_counter() - t0) * MS_PER_S)
    vertices, faces = mesh[0], mesh[1]
    peak = max(fusion_peak, peak_rss_mb())  # before the agreement check below allocates
    result = {
        "integrate_ms": integrate_ms,
        "mesh_ms": mesh_ms,
        "remesh_ms": remesh_ms,
        "remesh_marched_blocks": remesh_marched,
        "remesh_matches_full": same_mesh(incremental[0], incremental[1], vertices, faces),
        "blocks": volume.num_blocks,
        "volume_mb": volume.nbytes / BYTES_PER_MIB,
        "vertices": len(vertices),
        "triangles": len(faces),
        "base_rss_mb": base_rss,
        "peak_rss_mb": peak,
        "ru_maxrss_mb": ru_maxrss_mb(),
        "gpu_peak_mb": torch.cuda.max_memory_allocated(device) / BYTES_PER_MIB if device.type == "cuda" else None,
    }
    return result, {"vertices": vertices.astype(np.float32), "faces": faces}


def same_mesh(v_a: np.ndarray, f_a: np.ndarray, v_b: np.ndarray, f_b: np.ndarray) -> bool:
    """The same triangles, whatever the order of vertices and faces."""
    if v_a.shape != v_b.shape or f_a.shape != f_b.shape:
        return False

    def triangles(v: np.ndarray, f: np.ndarray) -> np.ndarray:
        corners = np.sort(v[f].reshape(len(f), -1).round(6), axis=1)  # order-free per triangle
        return corners[np.lexsort(corners.T[::-1])]

    return bool(np.array_equal(triangles(v_a, f_a), triangles(v_b, f_b)))


def run_open3d(frames: np.lib.npyio.NpzFile, settings: dict, args: argparse.Namespace) -> tuple[dict, dict[str, np.ndarray]]:
    """Image conversion + compute_unique_block_coordinates + integrate per frame, full extractions."""
    import open3d as o3d
    import open3d.core as o3c

    if hasattr(o3d.utility, "set_max_threads"):
        o3d.utility.set_max_threads(args.threads)
    poses, intrinsics = frames["T_world_camera"], frames["intrinsics"]
    fx, fy, cx, cy = (float(x) for x in intrinsics)
    K = o3c.Tensor(np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]), o3c.float64)
    trunc, depth_max = float(settings["truncation_voxels"]), float(settings["max_depth_m"])
    depth_scale = 1.0  # depth in metres
    base_rss = peak_rss_mb()
    grid = o3d.t.geometry.VoxelBlockGrid(
        attr_names=("tsdf", "weight", "color"),
        attr_dtypes=(o3c.float32, o3c.float32, o3c.float32),
        attr_channels=((1), (1), (3)),
        voxel_size=args.voxel,
        block_resolution=settings["block_voxels"],
        block_count=args.block_count,
    )
    integrate_ms = []
    for i in range(len(poses)):
        depth, rgb = frames[f"depth{i}"], frames[f"rgb{i}"]
        t0 = time.perf_counter()
        depth_image = o3d.t.geometry.Image(o3c.Tensor(np.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)))
        colour_image = o3d.t.geometry.Image(o3c.Tensor(rgb.astype(np.float32) / MAX_CHANNEL))
        extrinsic = o3c.Tensor(np.linalg.inv(np.asarray(poses[i], dtype=np.float64)), o3c.float64)
        coords = grid.compute_unique_block_coordinates(depth_image, K, extrinsic, depth_scale, depth_max, trunc)
        grid.integrate(coords, depth_image, colour_image, K, extrinsic, depth_scale, depth_max, trunc)
        integrate_ms.append((time.perf_counter() - t0) * MS_PER_S)
    mesh_ms, mesh = [], None
    for _ in range(args.mesh_repeats):
        t0 = time.perf_counter()
        mesh = grid.extract_triangle_mesh(weight_threshold=settings["min_weight"])
        mesh_ms.append((time.perf_counter() - t0) * MS_PER_S)
    vertices = mesh.vertex.positions.numpy() if "positions" in mesh.vertex else np.zeros((0, 3), np.float32)
    faces = mesh.triangle.indices.numpy() if "indices" in mesh.triangle else np.zeros((0, 3), np.int64)
    result = {
        "integrate_ms": integrate_ms,
        "mesh_ms": mesh_ms,
        "blocks": int(grid.hashmap().size()),
        "block_count": args.block_count,
        "vertices": len(vertices),
        "triangles": len(faces),
        "base_rss_mb": base_rss,
        "peak_rss_mb": peak_rss_mb(),
        "ru_maxrss_mb": ru_maxrss_mb(),
    }
    return result, {"vertices": vertices.astype(np.float32), "faces": faces.astype(np.int64)}


def run_one(args: argparse.Namespace) -> int:
    """The hidden --one mode: one system on the frames in --work; result JSON and mesh npz written there."""
    limit_threads(args.threads)
    work = Path(args.work)
    settings = json.loads((work / SETTINGS_FILE).read_text())
    with np.load(work / FRAMES_FILE) as frames:
        result, mesh = (run_project if args.one == PROJECT else run_open3d)(frames, settings, args)
    result_json, mesh_npz = result_paths(work, args.one, args.voxel)
    np.savez(mesh_npz, **mesh)
    result_json.write_text(json.dumps(result))
    return 0


def result_paths(work: Path, system: str, voxel: float) -> tuple[Path, Path]:
    """(result JSON, mesh npz) of one run."""
    stem = f"{system}_{voxel:g}"
    return work / f"{stem}.json", work / f"{stem}.npz"


def spawn(system: str, work: Path, voxel: float, args: argparse.Namespace, block_count: int = 0) -> tuple[dict, dict[str, np.ndarray]]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--one",
        system,
        "--work",
        str(work),
        "--voxel",
        str(voxel),
        "--block-count",
        str(block_count),
        "--threads",
        str(args.threads),
        "--device",
        args.device if system == PROJECT else "cpu",
        "--mesh-repeats",
        str(args.mesh_repeats),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    subprocess.run(command, check=True, env=env)
    result_json, mesh_npz = result_paths(work, system, voxel)
    with np.load(mesh_npz) as z:
        mesh = {k: z[k] for k in z.files}
    return json.loads(result_json.read_text()), mesh


# ------------------------------------------------------------------------------------------------ comparison
def within_share(points: np.ndarray, reference: np.ndarray, radius: float, workers: int) -> float:
    """The share of `points` with a `reference` point within `radius`."""
    from scipy.spatial import cKDTree

    if len(points) == 0 or len(reference) == 0:
        return float("nan")
    distance, _ = cKDTree(reference).query(points, k=1, distance_upper_bound=radius, workers=workers)
    return float(np.isfinite(distance).mean())


def summarise(result: dict) -> dict:
    result["integrate_ms_min"] = min(result["integrate_ms"])
    result["integrate_ms_median"] = statistics.median(result["integrate_ms"])
    result["mesh_ms_median"] = statistics.median(result["mesh_ms"])
    return result


def compare(views: int, voxel: float, work: Path, args: argparse.Namespace) -> dict:
    """Both systems on the frames in `work`, their storage sized alike beforehand (open3d's hash map and the
    project's blocks, from the blocks the project's allocation alone finds, times a margin), so neither pays
    for growing it."""
    sized, _ = spawn(PROJECT, work, voxel, args, SIZING)
    block_count = max(MIN_BLOCK_COUNT, int(sized["blocks"] * BLOCK_COUNT_MARGIN))
    project, project_mesh = spawn(PROJECT, work, voxel, args, block_count)
    project = summarise(project)
    if not args.open3d:  # the project alone (a GPU machine without open3d): figures to set beside published ones
        return {"views": views, "voxel_m": voxel, PROJECT: project}
    other, other_mesh = spawn(OPEN3D, work, voxel, args, block_count)
    other = summarise(other)
    p, o = project_mesh["vertices"], other_mesh["vertices"]
    return {
        "views": views,
        "voxel_m": voxel,
        PROJECT: project,
        OPEN3D: other,
        "integrate_ratio": project["integrate_ms_median"] / other["integrate_ms_median"],
        "mesh_ratio": project["mesh_ms_median"] / other["mesh_ms_median"],
        "peak_rss_ratio": project["peak_rss_mb"] / other["peak_rss_mb"],
        "project_in_open3d": within_share(p, o, voxel, args.threads),
        "open3d_in_project": within_share(o, p, voxel, args.threads),
    }


def print_comparison(c: dict) -> None:
    p = c[PROJECT]
    print(f"\n{c['views']} views, voxel {c['voxel_m'] * 100:g} cm", flush=True)
    for name, r in ((name, c[name]) for name in SYSTEMS if name in c):
        print(
            f"  {name:8s} integrate {r['integrate_ms_min']:.1f} / {r['integrate_ms_median']:.1f} ms a frame (min / median), "
            f"mesh {r['mesh_ms_median']:.1f} ms, {r['triangles']} triangles, {r['blocks']} blocks, "
            f"peak RSS {r['peak_rss_mb']:.0f} MB (before integrating {r['base_rss_mb']:.0f} MB)"
        )
    gpu = f", GPU peak {p['gpu_peak_mb']:.0f} MB" if p.get("gpu_peak_mb") is not None else ""
    print(
        f"  project incremental re-mesh after the last frame: {p['remesh_ms']:.1f} ms, {p['remesh_marched_blocks']} of "
        f"{p['blocks']} blocks marched, same mesh as the full extraction: {'yes' if p['remesh_matches_full'] else 'NO'}{gpu}"
    )
    if OPEN3D not in c:
        return
    print(
        f"  project/open3d: integrate x{c['integrate_ratio']:.2f}, mesh x{c['mesh_ratio']:.2f}, peak RSS x{c['peak_rss_ratio']:.2f}; "
        f"vertices within one voxel: project's of open3d's {c['project_in_open3d']:.1%}, open3d's of the project's "
        f"{c['open3d_in_project']:.1%}",
        flush=True,
    )


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def comparison_table(comparisons: list[dict]) -> str:
    if any(OPEN3D not in c for c in comparisons):
        return project_table(comparisons)
    headers = [
        "views",
        "voxel cm",
        "integrate ms min (proj / o3d)",
        "integrate ms median (proj / o3d)",
        "mesh ms (proj / o3d)",
        "re-mesh ms (blocks)",
        "triangles (proj / o3d)",
        "peak RSS MB (proj / o3d)",
        "ratio integrate",
        "ratio mesh",
        "proj in o3d",
        "o3d in proj",
    ]
    rows = []
    for c in comparisons:
        p, o = c[PROJECT], c[OPEN3D]
        rows.append(
            [
                str(c["views"]),
                f"{c['voxel_m'] * 100:g}",
                f"{p['integrate_ms_min']:.1f} / {o['integrate_ms_min']:.1f}",
                f"{p['integrate_ms_median']:.1f} / {o['integrate_ms_median']:.1f}",
                f"{p['mesh_ms_median']:.1f} / {o['mesh_ms_median']:.1f}",
                f"{p['remesh_ms']:.1f} ({p['remesh_marched_blocks']})",
                f"{p['triangles']} / {o['triangles']}",
                f"{p['peak_rss_mb']:.0f} / {o['peak_rss_mb']:.0f}",
                f"{c['integrate_ratio']:.2f}",
                f"{c['mesh_ratio']:.2f}",
                f"{c['project_in_open3d']:.1%}",
                f"{c['open3d_in_project']:.1%}",
            ]
        )
    return markdown_table(headers, rows)


def project_table(comparisons: list[dict]) -> str:
    """The project's figures alone (a run with --no-open3d)."""
    headers = [
        "views",
        "voxel cm",
        "integrate ms min",
        "integrate ms median",
        "mesh ms",
        "re-mesh ms (blocks)",
        "triangles",
        "blocks",
        "GPU peak MB",
    ]
    rows = []
    for c in comparisons:
        p = c[PROJECT]
        gpu = p.get("gpu_peak_mb")
        rows.append(
            [
                str(c["views"]),
                f"{c['voxel_m'] * 100:g}",
                f"{p['integrate_ms_min']:.2f}",
                f"{p['integrate_ms_median']:.2f}",
                f"{p['mesh_ms_median']:.1f}",
                f"{p['remesh_ms']:.1f} ({p['remesh_marched_blocks']})",
                str(p["triangles"]),
                str(p["blocks"]),
                f"{gpu:.0f}" if gpu is not None else "-",
            ]
        )
    return markdown_table(headers, rows)


def fusion_settings(config: DpreconConfig) -> dict:
    """What both systems share, from the project's configuration."""
    return {
        "block_voxels": int(config.tsdf.block_voxels),
        "truncation_voxels": float(config.tsdf.truncation_voxels),
        "max_depth_m": float(config.tsdf.max_depth_m),
        "allocation_samples_per_block": float(config.tsdf.allocation_samples_per_block),
        "min_weight": float(config.mesh.min_weight),
    }


def run_fusion(settings: dict, args: argparse.Namespace) -> list[dict]:
    comparisons = []
    for views in args.views:
        frames = load_views(args.scene, views, args.width, args.height)
        with tempfile.TemporaryDirectory(prefix="bench_tsdf_") as tmp:
            work = Path(tmp)
            write_frames(frames, work / FRAMES_FILE)
            (work / SETTINGS_FILE).write_text(json.dumps(settings))
            del frames
            for voxel in args.voxels:
                comparison = compare(views, voxel, work, args)
                print_comparison(comparison)
                comparisons.append(comparison)
    return comparisons


# ------------------------------------------------------------------------------------------------- latency
def latency_config(args: argparse.Namespace, frames: list[Frame]) -> DpreconConfig:
    """The project's configuration with every view accepted as a keyframe and none evicted."""
    from dprecon_ros.config import load_config

    defaults = load_config(args.config)
    needed_mb = MEMORY_MARGIN * sum(f.nbytes for f in frames) / BYTES_PER_MIB
    return load_config(
        args.config,
        {
            "compute.device": args.device,
            "tsdf.live": True,
            "keyframes.min_translation_m": 0.0,
            "keyframes.min_rotation_deg": 0.0,
            "keyframes.blur_threshold": 0.0,
            "keyframes.max_keyframes": max(len(frames), defaults.keyframes.max_keyframes),
            "keyframes.max_memory_mb": max(needed_mb, defaults.keyframes.max_memory_mb),
        },
    )


class LatencyProbe:
    """Keyframes waiting to show up in the live map, and the passes seen while waiting."""

    def __init__(self, fusion: LiveFusion) -> None:
        self.fusion = fusion
        self.pending: dict[int, float] = {}  # keyframe index -> when add_frame returned (monotonic)
        self.latency_s: dict[int, float] = {}
        self.missed: list[int] = []
        self.passes: dict[float, tuple[float, float]] = {}  # made_at -> (fused_s, meshed_s)

    def poll(self) -> None:
        latest = self.fusion.latest
        now = time.monotonic()
        if latest is not None:
            self.passes.setdefault(latest.made_at, (latest.fused_s, latest.meshed_s))
            shown = set(latest.keyframe_ids)
            for index in [i for i in self.pending if i in shown]:
                self.latency_s[index] = max(0.0, latest.made_at - self.pending.pop(index))
        for index in [i for i, t in self.pending.items() if now - t > LATENCY_GIVE_UP_S]:
            self.pending.pop(index)
            self.missed.append(index)

    def wait_until(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self.poll()
            time.sleep(POLL_S)
        self.poll()

    def drain(self) -> None:
        while self.pending:
            self.poll()
            time.sleep(POLL_S)


def run_latency(args: argparse.Namespace) -> dict:
    import torch

    from dprecon_ros.core.mapping.mapper import Mapper

    torch.set_num_threads(args.threads)
    frames = sim_frames(load_views(args.scene, args.latency_views, args.width, args.height))
    mapper = Mapper(latency_config(args, frames))
    mapper.live_fusion.mesh_after_sync = True
    probe = LatencyProbe(mapper.live_fusion)
    add_ms, order, start = [], [], time.monotonic()
    try:
        for i, frame in enumerate(frames):
            probe.wait_until(start + i * args.interval)
            t0 = time.monotonic()
            kf = mapper.add_frame(frame)
            returned = time.monotonic()
            add_ms.append((returned - t0) * MS_PER_S)
            if kf is not None:
                probe.pending[kf.index] = returned
                order.append(kf.index)
        probe.drain()
        mapper.live_fusion.wait_idle(IDLE_WAIT_S)
        probe.poll()
    finally:
        stopped = mapper.stop(STOP_TIMEOUT_S)
    return latency_summary(probe, order, add_ms, len(frames), mapper.live_fusion.passes, stopped)


def latency_summary(probe: LatencyProbe, order: list[int], add_ms: list[float], frames: int, passes: int, stopped: bool) -> dict:
    seen = [probe.latency_s[i] for i in order if i in probe.latency_s]
    fused = [f for f, _ in probe.passes.values()]
    meshed = [m for _, m in probe.passes.values()]
    last = probe.latency_s.get(order[-1]) if order else None

    def median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    return {
        "frames": frames,
        "keyframes": len(order),
        "missed": probe.missed,
        "latency_s": {str(i): probe.latency_s[i] for i in order if i in probe.latency_s},
        "median_s": median(seen),
        "p90_s": float(np.percentile(seen, LATENCY_PERCENTILE)) if seen else float("nan"),
        "max_s": max(seen) if seen else float("nan"),
        "last_s": last if last is not None else float("nan"),
        "target_s": LATENCY_TARGET_S,
        "target_met": last is not None and last <= LATENCY_TARGET_S,
        "passes": passes,
        "passes_seen": len(probe.passes),
        "fused_s_median": median(fused),
        "meshed_s_median": median(meshed),
        "add_frame_ms_median": median(add_ms),
        "mapper_stopped": stopped,
    }


def print_latency(r: dict, args: argparse.Namespace) -> None:
    print(
        f"\nlive map latency: {r['keyframes']} keyframes of {r['frames']} frames ({args.width}x{args.height}, with masks), "
        f"one every {args.interval:g} s; {r['passes']} passes ({r['passes_seen']} seen)"
    )
    headers = [
        "median s",
        f"p{LATENCY_PERCENTILE} s",
        "max s",
        "last keyframe s",
        "missed",
        "fused s (median pass)",
        "meshed s (median pass)",
    ]
    row = [
        f"{r['median_s']:.3f}",
        f"{r['p90_s']:.3f}",
        f"{r['max_s']:.3f}",
        f"{r['last_s']:.3f}",
        str(len(r["missed"])),
        f"{r['fused_s_median']:.3f}",
        f"{r['meshed_s_median']:.3f}",
    ]
    print(markdown_table(headers, [row]))
    verdict = "met" if r["target_met"] else "NOT met"
    print(
        f"target: the map after the last keyframe within {r['target_s']:g} s: {verdict} ({r['last_s']:.3f} s); "
        f"add_frame {r['add_frame_ms_median']:.1f} ms median on the caller's thread",
        flush=True,
    )


# ---------------------------------------------------------------------------------------------------- main
def header(args: argparse.Namespace, settings: dict) -> str:
    from bench_backends import SCENES, package_version

    scene = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in SCENES[args.scene].items())
    return (
        f"TSDF fusion, project vs open3d VoxelBlockGrid: {args.scene} scene ({scene}), {args.width}x{args.height} px; "
        f"threads {args.threads}; device {args.device} (open3d on cpu); torch {package_version('torch', NOT_INSTALLED)}, "
        f"open3d {package_version('open3d', NOT_INSTALLED)}\nblock {settings['block_voxels']} voxels, truncation {settings['truncation_voxels']:g} "
        f"voxels, depth_max {settings['max_depth_m']:g} m, mesh weight threshold {settings['min_weight']:g}, every pixel with depth "
        f"as surface\nload average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores before the run (other work on the cores "
        f"distorts the timings, torch's most)"
    )


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scene", default="hard", help="a scene of bench_backends.SCENES")
    p.add_argument("--views", type=int, nargs="+", default=DEFAULT_VIEWS)
    p.add_argument("--voxels", type=float, nargs="+", default=DEFAULT_VOXELS_M, help="voxel sizes (m)")
    p.add_argument("--width", type=int, default=DEFAULT_WIDTH)
    p.add_argument("--height", type=int, default=DEFAULT_HEIGHT)
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch and open3d (OpenMP) threads")
    p.add_argument("--device", default="cpu", help="the project's device (cpu or cuda); open3d runs on the CPU")
    p.add_argument("--open3d", action=argparse.BooleanOptionalAction, default=True, help="run open3d beside the project")
    p.add_argument("--mesh-repeats", type=int, default=DEFAULT_MESH_REPEATS)
    p.add_argument("--config", type=Path, default=None, help="project config YAML (tsdf.*, mesh.min_weight)")
    p.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True, help="the live-map latency run")
    p.add_argument("--latency-views", type=int, default=DEFAULT_LATENCY_VIEWS)
    p.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S, help="seconds between frames in the latency run")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--one", choices=SYSTEMS, help=argparse.SUPPRESS)  # a subprocess: one system on --work's frames
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--voxel", type=float, help=argparse.SUPPRESS)
    p.add_argument("--block-count", type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args()


def main() -> int:
    args = parse_args()
    if args.one:
        return run_one(args)
    import torch
    from bench_backends import SCENES, package_version, write_record

    from dprecon_ros.config import load_config

    if args.scene not in SCENES:
        raise SystemExit(f"--scene {args.scene}: not one of {sorted(SCENES)}")
    torch.set_num_threads(args.threads)
    settings = fusion_settings(load_config(args.config, {"compute.device": args.device}))
    print(header(args, settings), flush=True)
    comparisons = run_fusion(settings, args)
    if comparisons:
        print("\n" + comparison_table(comparisons))
    latency = None
    if args.latency:
        latency = run_latency(args)
        print_latency(latency, args)
    write_record(
        args.out,
        "tsdf",
        args,
        scene=args.scene,
        size=[args.width, args.height],
        threads=args.threads,
        device=args.device,
        versions={"torch": package_version("torch", NOT_INSTALLED), "open3d": package_version("open3d", NOT_INSTALLED)},
        load_average=os.getloadavg(),
        cpu_count=os.cpu_count(),
        settings=settings,
        results=comparisons,
        latency=latency,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
