import numpy as np
from conftest import make_frame

from dprecon_ros.config import KeyframeConfig
from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.geometry import make_transform, quat_to_matrix
from dprecon_ros.core.mapping.keyframe_files import scan_directory
from dprecon_ros.core.mapping.keyframes import KeyframeBuffer, load_keyframe, save_keyframe, sharpness
from dprecon_ros.core.types import Keyframe


def at(x: float, yaw_deg: float = 0.0) -> np.ndarray:
    half = np.radians(yaw_deg) / 2
    return make_transform(quat_to_matrix(0, 0, np.sin(half), np.cos(half)), [x, 0, 0])


def test_blurred_frame_is_rejected_and_counted():
    counters = EventCounters()
    buf = KeyframeBuffer(KeyframeConfig(), counters)
    sharp = make_frame()
    blurred = make_frame()
    blurred.rgb[:] = 128
    assert sharpness(sharp.rgb) > sharpness(blurred.rgb)
    assert buf.consider(sharp)
    assert not buf.consider(blurred)
    assert counters.get("blurred_frame") == 1


def test_novelty_by_translation_or_rotation():
    buf = KeyframeBuffer(KeyframeConfig(min_translation_m=0.1, min_rotation_deg=10))
    buf.add(make_frame(T=at(0.0)), {})
    assert not buf.consider(make_frame(T=at(0.05)))
    assert buf.consider(make_frame(T=at(0.15)))
    assert buf.consider(make_frame(T=at(0.0, yaw_deg=15)))


def test_count_bound_evicts_the_most_redundant():
    buf = KeyframeBuffer(KeyframeConfig(max_keyframes=3))
    for x in (0.0, 1.0, 1.05, 3.0):
        buf.add(make_frame(T=at(x)), {})
    xs = sorted(round(k.frame.T_world_camera[0, 3], 2) for k in buf.snapshot())
    assert len(xs) == 3 and xs[0] == 0.0 and xs[-1] == 3.0 and (1.0 in xs) != (1.05 in xs)


def test_memory_bound():
    frame_mb = make_frame(size=(400, 300)).nbytes / 2**20
    buf = KeyframeBuffer(KeyframeConfig(max_memory_mb=frame_mb * 2.5))
    for x in range(5):
        buf.add(make_frame(size=(400, 300), T=at(float(x))), {})
    assert len(buf) == 2 and buf.nbytes <= frame_mb * 2.5 * 2**20


def test_memory_bound_counts_the_association_keys_held_with_each_keyframe():
    frame_bytes = make_frame(size=(400, 300)).nbytes
    keys = {1: np.zeros(frame_bytes // 8, dtype=np.int64)}  # keys as large as the images: each keyframe is twice its frame
    buf = KeyframeBuffer(KeyframeConfig(max_memory_mb=frame_bytes * 4.5 / 2**20))
    for x in range(5):
        buf.add(make_frame(size=(400, 300), T=at(float(x))), {1: 1}, keys)
    assert len(buf) == 2 and buf.nbytes == 4 * frame_bytes


def test_keyframe_file_round_trip(tmp_path):
    frame = make_frame(stamp=12.5, T=at(0.3, 20))
    frame.depth_m[0, 0] = np.nan
    save_keyframe(tmp_path / "k.npz", Keyframe(7, frame, {1: 4}))
    kf = load_keyframe(tmp_path / "k.npz")
    assert kf.index == 7 and kf.instance_to_object == {1: 4} and kf.frame.labels == {1: "box"}
    assert np.array_equal(kf.frame.rgb, frame.rgb) and np.array_equal(kf.frame.depth_m, frame.depth_m, equal_nan=True)
    assert np.allclose(kf.frame.T_world_camera, frame.T_world_camera) and kf.frame.intrinsics == frame.intrinsics


def test_persist_dir_mirrors_the_buffer_and_survives_a_restart(tmp_path):
    cfg = KeyframeConfig(max_keyframes=2, persist_dir=str(tmp_path / "kf"))
    buf = KeyframeBuffer(cfg)
    for x in (0.0, 1.0, 5.0):
        buf.add(make_frame(T=at(x)), {})
    assert len(list((tmp_path / "kf").glob("*.npz"))) == 2
    (tmp_path / "kf" / "keyframe_999999.npz").write_bytes(b"truncated")  # a crash mid-write must not stop a resume
    restored = scan_directory(tmp_path / "kf").keyframes
    assert sorted(k.index for k in restored) == sorted(k.index for k in buf.snapshot())
    fresh = KeyframeBuffer(cfg)
    fresh.replace(restored)
    assert fresh.add(make_frame(T=at(9.0)), {})[0].index == max(k.index for k in restored) + 1


def test_unwritable_persist_dir_is_counted(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    counters = EventCounters()
    buf = KeyframeBuffer(KeyframeConfig(persist_dir=str(blocker / "sub")), counters)
    buf.add(make_frame(), {})
    assert counters.get("persist_error") == 1 and len(buf) == 1


def test_frames_waiting_for_the_buffer_count_against_its_memory_bound_up_to_their_share():
    frame_mb = make_frame().nbytes / 2**20
    budget = 10.5 * frame_mb
    buffer = KeyframeBuffer(KeyframeConfig(max_keyframes=100, max_memory_mb=budget, waiting_share=0.5))
    for i in range(10):
        buffer.add(make_frame(stamp=float(i), T=make_transform(np.eye(3), [i * 0.5, 0.0, 0.0])), {1: 1})
    assert len(buffer) == 10
    buffer.waiting_bytes = lambda: int(4 * frame_mb * 2**20)  # four frames decoded and queued upstream
    buffer.add(make_frame(stamp=10.0, T=make_transform(np.eye(3), [5.0, 0.0, 0.0])), {1: 1})
    assert len(buffer) == 6 and buffer.nbytes + buffer.waiting_bytes() <= budget * 2**20
    buffer.waiting_bytes = lambda: int(100 * frame_mb * 2**20)  # a backlog larger than the whole bound
    buffer.add(make_frame(stamp=11.0, T=make_transform(np.eye(3), [6.0, 0.0, 0.0])), {1: 1})
    assert len(buffer) == 5  # the keyframes keep half the bound: a backlog never wipes the map
