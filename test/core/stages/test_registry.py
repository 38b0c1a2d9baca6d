"""Stages found by name, presets as stage lists, list-valued configuration."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from dprecon_ros.config import ConfigError, DpreconConfig, load_config, set_leaf
from dprecon_ros.config_fields import config_field
from dprecon_ros.core.pipeline_config import PRESETS
from dprecon_ros.core.stages.base import STAGES
from dprecon_ros.core.stages.catalog import make_stages


def test_presets_are_stage_lists():
    cfg = DpreconConfig()
    assert cfg.reconstruction.stage_names() == ["fuse", "mesh"]
    cfg.reconstruction.backend = "neural"
    assert cfg.reconstruction.stage_names() == ["fuse", "geometry", "mesh"]
    assert [s.name for s in make_stages(PRESETS["neural"])] == ["fuse", "geometry", "mesh"]


def test_an_explicit_stage_list_overrides_the_preset(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("reconstruction:\n  backend: neural\n  stages: [fuse, mesh]\n")
    cfg = load_config(path)
    assert cfg.reconstruction.stages == ["fuse", "mesh"] and cfg.reconstruction.stage_names() == ["fuse", "mesh"]


def test_unknown_stages_are_named_in_the_error_and_the_full_preset_is_dp_recon():
    assert [s.name for s in make_stages(PRESETS["full"])] == ["fuse", "geometry", "prior", "mesh", "texture"]
    with pytest.raises(ConfigError, match="bogus"):
        make_stages(["fuse", "bogus"])
    with pytest.raises(ConfigError, match="empty"):
        make_stages([])


def test_every_registered_stage_has_a_distinct_name_and_its_config_sections_exist():
    make_stages(["fuse"])  # registers the built-ins
    cfg = DpreconConfig()
    for name, cls in STAGES.items():
        assert cls.name == name
        for section in cls.config_sections:
            assert hasattr(cfg, section), (name, section)


def test_list_leaves_are_typed_and_schedules_shaped():
    cfg = DpreconConfig()
    set_leaf(cfg, "reconstruction.stages", ("fuse", "mesh"))
    assert cfg.reconstruction.stages == ["fuse", "mesh"]
    with pytest.raises(ConfigError, match="stages\\[1\\]"):
        set_leaf(cfg, "reconstruction.stages", ["fuse", 3])
    with pytest.raises(ConfigError, match="expected a list"):
        set_leaf(cfg, "reconstruction.stages", "fuse")
    scheduled = Scheduled()
    set_leaf(scheduled, "rate", [0, 1.0, 0.1, 500])
    assert scheduled.rate == [0.0, 1.0, 0.1, 500.0]
    with pytest.raises(ConfigError, match="schedule"):
        set_leaf(scheduled, "rate", [0.0, 1.0, 0.1])
    with pytest.raises(ConfigError, match="schedule"):
        set_leaf(scheduled, "rate", [500.0, 1.0, 0.1, 0.0])
    with pytest.raises(ConfigError, match="outside"):
        set_leaf(scheduled, "rate", [0.0, -1.0, 0.1, 10.0])
    assert DpreconConfig().reconstruction.stages == [] and Scheduled().rate == [0.0, 1.0, 1.0, 1.0]  # defaults not shared


@dataclass
class Scheduled:
    rate: list[float] = config_field([0.0, 1.0, 1.0, 1.0], "a value over the steps", (0.0, 100.0), schedule=True)


def test_nested_presets_are_sections():
    cfg = DpreconConfig()
    set_leaf(cfg, "geometry.cpu.iterations", 12)
    assert cfg.geometry.cpu.iterations == 12 and cfg.geometry.iterations == 1500
    with pytest.raises(ConfigError, match="expected a mapping"):
        set_leaf(cfg, "geometry.cpu", 3)
