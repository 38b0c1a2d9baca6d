"""dprecon-reconstruct's command line: the device, the stage list and the preset reach the configuration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dprecon_ros.tools.reconstruct import build_parser, config_from_args, main


def test_device_stages_and_backend_reach_the_config():
    args = build_parser().parse_args(["--bag", "b", "--out", "o", "--device", "cuda:1", "--stages", "fuse", "geometry", "mesh"])
    cfg = config_from_args(args)
    assert cfg.compute.device == "cuda:1" and cfg.reconstruction.stage_names() == ["fuse", "geometry", "mesh"]
    cfg = config_from_args(build_parser().parse_args(["--bag", "b", "--out", "o", "--backend", "neural", "--device", "cpu"]))
    assert cfg.compute.device == "cpu" and cfg.reconstruction.stage_names() == ["fuse", "geometry", "mesh"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_an_unavailable_device_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "bag").mkdir()
    assert main(["--bag", str(tmp_path / "bag"), "--out", str(tmp_path / "out"), "--device", "cuda", "--quiet"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_neither_bag_nor_map_is_refused(tmp_path, capsys):
    assert main(["--out", str(tmp_path)]) == 2
    assert "--bag, --resume" in capsys.readouterr().err


def test_prior_model_and_edits_reach_the_run(tmp_path, capsys):
    from conftest import make_frame

    from dprecon_ros.core.geometry import make_transform
    from dprecon_ros.testing.tiny_map import write_tiny_map

    args = build_parser().parse_args(["--bag", "b", "--out", "o", "--backend", "full", "--prior-model", "/models/sd21"])
    assert config_from_args(args).prior.model == "/models/sd21"
    assert main(["--resume", str(tmp_path), "--out", str(tmp_path / "o"), "--edit", "three=a vase"]) == 2
    assert "expected ID=PROMPT" in capsys.readouterr().err
    frames = [make_frame(stamp=float(i), T=make_transform(np.eye(3), [0.3 * i, 0.0, 0.0])) for i in range(4)]
    write_tiny_map(tmp_path / "map", frames)  # the tsdf preset: no fields a prior could edit
    code = main(["--resume", str(tmp_path / "map"), "--out", str(tmp_path / "o"), "--edit", "1=a vase", "--quiet"])
    assert code == 1 and "edit refused" in capsys.readouterr().err and not (tmp_path / "o" / "scene_graph.json").exists()
