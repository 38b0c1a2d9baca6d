from pathlib import Path

import pytest

from dprecon_ros.config import ConfigError, DpreconConfig, config_to_dict, iter_leaves, load_config, set_leaf

REPO = Path(__file__).resolve().parents[1]


def test_every_leaf_is_documented():
    for name, f, _ in iter_leaves(DpreconConfig()):
        assert f.metadata.get("help"), f"{name} has no help text"


def test_repo_yaml_loads_and_unwraps_ros_parameters():
    cfg = load_config(REPO / "config" / "dprecon.yaml")
    assert cfg.topics.rgb == "camera/color/image_raw"
    # inputs are relative in the defaults and the shipped file, so a namespace applies to them (ROS convention)
    for name in ("rgb", "camera_info", "depth", "instance", "labels", "pose"):
        assert not getattr(cfg.topics, name).startswith("/") and not getattr(DpreconConfig().topics, name).startswith("/"), name
    assert cfg.reconstruction.backend == "tsdf"


def test_overrides_are_typed_and_range_checked(tmp_path):
    cfg = load_config(None, {"sync.tolerance_s": 0.05, "keyframes.max_keyframes": 10})
    assert cfg.sync.tolerance_s == pytest.approx(0.05)
    assert cfg.keyframes.max_keyframes == 10
    with pytest.raises(ConfigError):
        set_leaf(cfg, "sync.tolerance_s", 5.0)  # above range
    with pytest.raises(ConfigError):
        set_leaf(cfg, "topics.pose_source", "gps")  # not a choice
    with pytest.raises(ConfigError):
        set_leaf(cfg, "sync.no_such_key", 1)
    bad = tmp_path / "bad.yaml"
    bad.write_text("sync:\n  tolerance_s: fast\n")
    with pytest.raises(ConfigError):
        load_config(bad)


def test_config_round_trips_through_dict(tmp_path):
    import yaml

    cfg = DpreconConfig()
    cfg.tsdf.object_voxel_m = 0.02
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    assert load_config(path) == cfg
