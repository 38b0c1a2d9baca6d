"""Prompts: from labels through the template, per-object overrides that refit only their object, edits kept."""

from __future__ import annotations

import dataclasses

import numpy as np

from dprecon_ros.config import DpreconConfig
from dprecon_ros.config_fields import fingerprinted
from dprecon_ros.core.pipeline import fingerprints
from dprecon_ros.core.scene_model import ObjectState, SceneModel
from dprecon_ros.core.stages.catalog import make_stages
from dprecon_ros.core.stages.prior.config import PriorConfig, prompt_overrides
from dprecon_ros.core.stages.prior.stage import prompt_for
from dprecon_ros.core.types import ObjectSeed


def model_with(*labels: str) -> SceneModel:
    return SceneModel(objects={i + 1: ObjectState(i + 1, label) for i, label in enumerate(labels)}, background=ObjectState(0, "background"))


def test_label_template_override_edit_and_background_prompts():
    cfg = PriorConfig(prompts=["2=a red teddy bear", "junk", "x=y", "3="], negative_prompt="blurry")
    model = model_with("mug", "teddy", "duck")
    model.objects[3].prompt = "a rubber duck made of gold"  # an earlier edit
    assert prompt_for(model, 1, cfg, {}).text == "a 3D model of a mug" and prompt_for(model, 1, cfg, {}).negative == "blurry"
    assert prompt_for(model, 2, cfg, {}).text == "a red teddy bear"
    assert prompt_for(model, 3, cfg, {}).text == "a rubber duck made of gold"
    assert prompt_for(model, 1, cfg, {1: "a vase"}).text == "a vase"  # the edit being run wins
    model.objects[2].prompt = "an old edit"
    assert prompt_for(model, 2, cfg, {}).text == "a red teddy bear"  # an override set after an edit wins over it
    assert prompt_for(model, 0, cfg, {}).text == cfg.background_prompt
    assert prompt_overrides(cfg.prompts) == {2: "a red teddy bear"}  # malformed entries are ignored


def test_overriding_one_objects_prompt_refits_that_object_alone():
    config = DpreconConfig()
    config.reconstruction.backend = "full"
    stages = make_stages(config.reconstruction.stage_names())
    seeds = [ObjectSeed(i, "mug", np.zeros(3) + i, np.ones(3) + i, 3) for i in (1, 2, 3)]
    seen = {1: (0,), 2: (0, 1), 3: (1,)}
    before = fingerprints(config, stages, [], seeds, seen)
    config.prior.prompts = ["2=a teddy bear"]
    after = fingerprints(config, stages, [], seeds, seen)
    assert [oid for oid in before if before[oid] != after[oid]] == [2]
    config.prior.guidance_scale = 7.5  # any other prior setting refits everything
    assert all(after[oid] != fingerprints(config, stages, [], seeds, seen)[oid] for oid in after)


def test_weights_that_appear_later_refit_what_ran_without_them(tmp_path):
    config = DpreconConfig()
    config.reconstruction.backend = "full"
    config.prior.model = str(tmp_path / "checkpoint")
    stages = make_stages(config.reconstruction.stage_names())
    seeds = [ObjectSeed(1, "mug", np.zeros(3), np.ones(3), 3)]
    without = fingerprints(config, stages, [], seeds, {1: (0,)})
    for part in ("unet", "text_encoder", "tokenizer", "scheduler"):
        (tmp_path / "checkpoint" / part).mkdir(parents=True)
    assert fingerprints(config, stages, [], seeds, {1: (0,)})[1] != without[1]


def test_settings_of_how_a_stage_runs_refit_nothing():
    config = DpreconConfig()
    config.reconstruction.backend = "full"
    stages = make_stages([*config.reconstruction.stage_names(), "texture"])
    seeds = [ObjectSeed(1, "mug", np.zeros(3), np.ones(3), 3)]
    before = fingerprints(config, stages, [], seeds, {1: (0,)})
    config.texture.unwrap_ahead, config.texture.unwrap_timeout_s = 7, 60.0  # processes and time limits
    config.texture.views_ahead = 3  # when views are rasterised, not which
    assert fingerprints(config, stages, [], seeds, {1: (0,)}) == before
    config.texture.object_size = 512  # what the stage makes
    assert fingerprints(config, stages, [], seeds, {1: (0,)})[1] != before[1]


def test_fingerprints_hash_every_setting_but_those_marked_as_how_a_stage_runs():
    """Saved maps keep their fingerprints: each section hashes as `dataclasses.asdict` did, less the fields
    marked fingerprint=False (a change here would refit every saved map)."""
    config = DpreconConfig()

    def without_unmarked(section) -> dict:
        out = dataclasses.asdict(section)
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if not f.metadata.get("fingerprint", True):
                del out[f.name]
            elif dataclasses.is_dataclass(value):
                out[f.name] = without_unmarked(value)
        return out

    for f in dataclasses.fields(config):
        section = getattr(config, f.name)
        assert fingerprinted(section) == without_unmarked(section), f.name
    assert "unwrap_ahead" not in fingerprinted(config.texture) and "cpu" in fingerprinted(config.texture)
