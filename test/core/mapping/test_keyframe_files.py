"""Keyframe files on disk: damage of any kind is refused with one error type, skipped, counted and moved
aside; a buffer filled from disk keeps to its bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import make_frame

from dprecon_ros.config import KeyframeConfig
from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.geometry import make_transform
from dprecon_ros.core.mapping.keyframe_files import DAMAGED_DIR, KeyframeFileError, load_keyframe, save_keyframe, scan_directory
from dprecon_ros.core.mapping.keyframes import KeyframeBuffer
from dprecon_ros.core.types import Keyframe
from dprecon_ros.testing.damaged_files import damage_keyframe_files


def at(x: float) -> np.ndarray:
    return make_transform(np.eye(3), [x, 0.0, 0.0])


def write(directory: Path, index: int, x: float = 0.0, size: tuple[int, int] = (40, 32)) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"keyframe_{index:06d}.npz"
    save_keyframe(path, Keyframe(index, make_frame(stamp=index + 1.0, T=at(x), seed=index, size=size), {1: 1}))
    return path


def test_any_damage_to_a_keyframe_file_raises_one_error_type(tmp_path):
    good = write(tmp_path, 1, size=(8, 6)).read_bytes()
    damaged = tmp_path / "damaged.npz"
    seen: set[str] = set()
    variants = [good[:n] for n in (0, 1, 22, len(good) // 2, len(good) - 1)]
    variants += [bytes(good[:i]) + bytes([good[i] ^ (1 << (i % 8))]) + bytes(good[i + 1 :]) for i in range(0, len(good), 3)]
    for data in variants:
        damaged.write_bytes(data)
        try:
            kf = load_keyframe(damaged)
        except KeyframeFileError as exc:
            seen.add(str(exc).split(":")[0])
            continue
        # a flip the zip format does not notice (a timestamp, a comment) leaves a complete, consistent keyframe
        h, w = kf.frame.instance.shape
        assert kf.frame.rgb.shape == (h, w, 3) and kf.frame.depth_m.shape == (h, w) and kf.frame.T_world_camera.shape == (4, 4)
    assert seen == {damaged.name}


def test_inconsistent_arrays_are_refused(tmp_path):
    frame = make_frame()
    frame.rgb = frame.rgb[:, :-1]  # not the instance mask's size
    save_keyframe(tmp_path / "keyframe_000001.npz", Keyframe(1, frame, {}))
    with pytest.raises(KeyframeFileError, match="rgb"):
        load_keyframe(tmp_path / "keyframe_000001.npz")


def test_damaged_and_leftover_files_are_skipped_counted_and_moved_aside(tmp_path):
    kf_dir = tmp_path / "kf"
    for i in range(3):
        write(kf_dir, i, x=float(i))
    damage_keyframe_files(kf_dir, (kf_dir / "keyframe_000000.npz").read_bytes(), first_index=10)  # truncated, empty, flipped, .tmp
    counters = EventCounters()
    scan = scan_directory(kf_dir, counters, move_aside=True)
    assert sorted(k.index for k in scan.keyframes) == [0, 1, 2]
    assert len(scan.damaged) == 4 and counters.get("keyframe_file_damaged") == 4
    assert sorted(p.name for p in kf_dir.glob("keyframe_*")) == [f"keyframe_00000{i}.npz" for i in range(3)]
    assert len(list((kf_dir / DAMAGED_DIR).iterdir())) == 4
    # a second scan finds nothing damaged: the files moved aside are not read again
    again = scan_directory(kf_dir, EventCounters(), move_aside=True)
    assert len(again.keyframes) == 3 and not again.damaged


def test_a_scan_without_moving_aside_leaves_the_directory_alone(tmp_path):
    write(tmp_path, 0)
    (tmp_path / "keyframe_000001.npz").write_bytes(b"junk")
    scan = scan_directory(tmp_path, EventCounters(), move_aside=False)
    assert len(scan.keyframes) == 1 and len(scan.damaged) == 1 and (tmp_path / "keyframe_000001.npz").exists()


def test_a_buffer_filled_from_disk_keeps_to_a_smaller_count_bound():
    """The same rule as online eviction: the most redundant keyframes go, the spread-out ones stay."""
    keyframes = [Keyframe(i, make_frame(T=at(x)), {}) for i, x in enumerate([0.0, 1.0, 1.05, 2.0, 2.02, 3.0])]
    buf = KeyframeBuffer(KeyframeConfig(max_keyframes=4))
    dropped = buf.replace(keyframes)
    kept = sorted(round(k.frame.T_world_camera[0, 3], 2) for k in buf.snapshot())
    assert len(kept) == 4 and len(dropped) == 2 and kept[0] == 0.0 and kept[-1] == 3.0
    assert (1.0 in kept) != (1.05 in kept) and (2.0 in kept) != (2.02 in kept)
    assert buf.add(make_frame(T=at(9.0)), {})[0].index == 6  # indices go on after the highest read


def test_a_buffer_filled_from_disk_keeps_to_its_memory_bound():
    frame_mb = make_frame().nbytes / 2**20
    buf = KeyframeBuffer(KeyframeConfig(max_memory_mb=frame_mb * 2.5))
    buf.replace([Keyframe(i, make_frame(T=at(float(i))), {}) for i in range(5)])
    assert len(buf) == 2
