"""Mapper: keyframes in, counted refusals, reset, and resuming a persist directory after a restart."""

import numpy as np
from conftest import filled

from dprecon_ros.core.mapping.mapper import RECONSTRUCTED, TOO_FEW_KEYFRAMES, Mapper


def test_a_restart_before_any_run_resumes_keyframes_with_their_object_ids(coarse_config, small_frames, tmp_path):
    coarse_config.keyframes.persist_dir = str(tmp_path / "kf")
    first = filled(coarse_config, small_frames[0])
    held = len(first.keyframes)
    assert held >= 6 and len(list((tmp_path / "kf").glob("keyframe_*.npz"))) == held
    restarted = Mapper(coarse_config)
    assert [kf.instance_to_object for kf in restarted.keyframes.snapshot()] == [kf.instance_to_object for kf in first.keyframes.snapshot()]
    assert sorted((o.object_id, o.label) for o in restarted.associator.objects.values()) == sorted(
        (o.object_id, o.label) for o in first.associator.objects.values()
    )
    assert restarted.reconstruct().status == RECONSTRUCTED


def test_without_association_state_a_restart_re_associates(coarse_config, small_frames, tmp_path):
    coarse_config.keyframes.persist_dir = str(tmp_path / "kf")
    first = filled(coarse_config, small_frames[0])
    (tmp_path / "kf" / "association.json").unlink()
    restarted = Mapper(coarse_config)
    assert len(restarted.keyframes) == len(first.keyframes)
    assert sorted(o.label for o in restarted.associator.objects.values()) == sorted(o.label for o in first.associator.objects.values())


def test_too_few_keyframes_is_counted(coarse_config, small_frames):
    mapper = Mapper(coarse_config)
    mapper.add_frame(small_frames[0][0])
    report = mapper.reconstruct()
    assert report.status == TOO_FEW_KEYFRAMES and report.reconstruction is None
    assert mapper.counters.get("too_few_keyframes") == 1


def test_frames_without_depth_are_kept_but_not_associated(coarse_config, small_frames):
    mapper = Mapper(coarse_config)
    frame = small_frames[0][0]
    nodepth = type(frame)(**{**frame.__dict__, "depth_m": None})
    assert mapper.add_frame(nodepth) is not None
    assert mapper.counters.get("no_depth") == 1 and not mapper.associator.objects
    # after a frame with depth, one without must not inherit its voxel keys (they would support its objects)
    mapper.add_frame(small_frames[0][1])
    moved = type(frame)(**{**small_frames[0][4].__dict__, "depth_m": None})
    kf = mapper.add_frame(moved)
    assert kf is not None and kf.instance_keys == {}


def test_reset_clears_everything(coarse_config, small_frames):
    mapper = filled(coarse_config, small_frames[0])
    mapper.reconstruct()
    mapper.reset()
    assert len(mapper.keyframes) == 0 and not mapper.associator.objects and mapper.latest is None and not mapper.model.objects


def driving_on(count: int, step_m: float = 2.0):
    """A camera driving along x past one box per frame, each box where no earlier one was."""
    from conftest import make_frame

    from dprecon_ros.core.geometry import make_transform

    return [make_frame(stamp=float(i), T=make_transform(np.eye(3), [i * step_m, 0.0, 0.0]), seed=i) for i in range(count)]


def test_association_forgets_what_only_evicted_keyframes_saw(coarse_config):
    """A robot that drives on: objects seen only by evicted keyframes are dropped, so association stays
    within the keyframe bound instead of growing with the distance travelled."""
    coarse_config.keyframes.max_keyframes = 4
    mapper = Mapper(coarse_config)
    for frame in driving_on(20):
        mapper.add_frame(frame)
    held = mapper.keyframes.snapshot()
    shown = {o for kf in held for o in kf.instance_to_object.values()}
    assert len(held) == 4 and set(mapper.associator.objects) == shown, (set(mapper.associator.objects), shown)
    assert mapper.counters.get("object_forgotten") == 20 - len(shown)


def test_an_objects_keys_are_rebuilt_from_the_keyframes_still_held(coarse_config):
    """One object seen by every frame, each frame adding keys of its own: after evictions the object's keys
    are exactly the union of what the held keyframes saw."""
    from conftest import make_frame

    from dprecon_ros.core.geometry import make_transform

    coarse_config.keyframes.max_keyframes = 3
    coarse_config.keyframes.min_translation_m = 0.05
    mapper = Mapper(coarse_config)
    for i in range(12):  # sliding 6 cm a frame along the plane: overlapping views of one long object
        mapper.add_frame(make_frame(stamp=float(i), size=(80, 64), T=make_transform(np.eye(3), [0.06 * i, 0.0, 0.0]), seed=i))
    (obj,) = mapper.associator.objects.values()
    held = mapper.keyframes.snapshot()
    expected = np.unique(np.concatenate([kf.instance_keys[i] for kf in held for i in kf.instance_to_object]))
    assert np.array_equal(obj.keys, expected)


def test_a_restart_into_a_smaller_buffer_forgets_the_objects_left_out(coarse_config, tmp_path):
    coarse_config.keyframes.persist_dir = str(tmp_path / "kf")
    first = Mapper(coarse_config)
    for frame in driving_on(10):
        first.add_frame(frame)
    coarse_config.keyframes.max_keyframes = 3
    resumed = Mapper(coarse_config)
    shown = {o for kf in resumed.keyframes.snapshot() for o in kf.instance_to_object.values()}
    assert len(resumed.keyframes) == 3 and set(resumed.associator.objects) == shown
    assert {s.object_id for s in resumed.seeds()} <= shown


def test_an_object_held_keyframes_show_is_kept_even_if_its_keys_come_out_empty(coarse_config, tmp_path):
    """Keys of keyframes read back are recomputed with the current configuration: if none come out (a larger
    mask erosion), the object still shown keeps the keys it had."""
    coarse_config.keyframes.persist_dir = str(tmp_path / "kf")
    coarse_config.keyframes.max_keyframes = 3
    coarse_config.keyframes.min_translation_m = 0.05
    first = Mapper(coarse_config)
    for frame in driving_on(3, step_m=0.06):
        first.add_frame(frame)
    coarse_config.association.mask_erosion_px = 50  # larger than the masks: no points at all
    resumed = Mapper(coarse_config)
    before = {oid: o.keys.copy() for oid, o in resumed.associator.objects.items()}
    for frame in driving_on(5, step_m=0.06)[3:]:
        resumed.add_frame(frame)
    shown = {o for kf in resumed.keyframes.snapshot() for o in kf.instance_to_object.values()}
    assert shown <= set(resumed.associator.objects), (shown, set(resumed.associator.objects))
    assert all(resumed.associator.objects[o].keys.size for o in shown & set(before))


def test_the_memory_bound_counts_each_keyframes_association_keys_from_its_admission(coarse_config, small_frames):
    """The keys come with the keyframe into the buffer: the bound that evicts already counts them, so the buffer
    is within its bound after every frame, not only after the next one."""
    frames = small_frames[0][:4]
    everything = filled(coarse_config, frames).keyframes  # no bound reached: what the four keyframes weigh
    keys = sum(k.nbytes for kf in everything.snapshot() for k in kf.instance_keys.values())
    assert keys > 0 and everything.nbytes == sum(f.nbytes for f in frames) + keys
    coarse_config.keyframes.max_memory_mb = (everything.nbytes - 1) / 2**20  # one byte short of all four with their keys
    mapper = Mapper(coarse_config)
    for frame in frames:
        mapper.add_frame(frame)
        assert mapper.keyframes.nbytes <= coarse_config.keyframes.max_memory_mb * 2**20
    assert len(mapper.keyframes) == len(frames) - 1
