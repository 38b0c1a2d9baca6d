"""Mapper: keyframes in, counted refusals, reset, and resuming a persist directory after a restart."""

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


def test_reset_clears_everything(coarse_config, small_frames):
    mapper = filled(coarse_config, small_frames[0])
    mapper.reconstruct()
    mapper.reset()
    assert len(mapper.keyframes) == 0 and not mapper.associator.objects and mapper.latest is None and not mapper.model.objects
