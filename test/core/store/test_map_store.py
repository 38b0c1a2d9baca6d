"""Saved maps: a round trip gives the same map back; foreign, newer or damaged maps are refused clearly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import filled, tiny_geometry

from dprecon_ros.core.mapping.mapper import RECONSTRUCTED, UNCHANGED, Mapper
from dprecon_ros.core.store.manifest import MANIFEST, MapFormatError


def mapped(config, frames) -> Mapper:
    mapper = filled(config, frames)
    assert mapper.reconstruct().status == RECONSTRUCTED
    return mapper


def same_objects(a, b) -> None:
    assert [(o.object_id, o.label, o.observation_count) for o in a.objects] == [
        (o.object_id, o.label, o.observation_count) for o in b.objects
    ]
    for x, y in zip(a.objects, b.objects):
        assert np.array_equal(x.vertices, y.vertices) and np.array_equal(x.faces, y.faces)
        assert np.array_equal(x.vertex_colors, y.vertex_colors)
    assert {(r.subject, r.relation, r.object) for r in a.scene_graph.relations} == {
        (r.subject, r.relation, r.object) for r in b.scene_graph.relations
    }


def test_round_trip_gives_the_same_map_and_nothing_to_refit(coarse_config, small_frames, tmp_path):
    first = mapped(coarse_config, small_frames[0])
    assert first.save_map(tmp_path / "map") == len(first.keyframes)
    second = Mapper(coarse_config)
    assert second.load_map(tmp_path / "map").keyframes == len(first.keyframes)
    same_objects(first.latest, second.latest)
    assert {s.object_id: s.version for s in second.model.states()} == {s.object_id: s.version for s in first.model.states()}
    assert second.reconstruct().status == UNCHANGED  # association, keyframes and fingerprints all came back
    assert sorted(second.associator.objects) == sorted(first.associator.objects)


def test_round_trip_keeps_the_fields_and_appearance_of_the_geometry_stage(coarse_config, small_frames, tmp_path):
    cfg = tiny_geometry(coarse_config)
    cfg.reconstruction.backend = "neural"
    first = mapped(cfg, small_frames[0])
    first.save_map(tmp_path / "map")
    second = Mapper(cfg)
    second.load_map(tmp_path / "map")
    for a, b in zip(first.model.states(), second.model.states()):
        assert (
            all(torch.equal(p.detach(), q.detach()) for p, q in zip(a.field.levels, b.field.levels))
            and a.field.box.shape == b.field.box.shape
        )
    for name, tensor in first.model.appearance.state_dict().items():
        assert torch.equal(tensor, second.model.appearance.state_dict()[name])
    assert second.model.log_beta == pytest.approx(first.model.log_beta)
    same_objects(first.latest, second.latest)


def test_a_restarted_mapper_resumes_its_persisted_map(coarse_config, small_frames, tmp_path):
    coarse_config.keyframes.persist_dir = str(tmp_path / "persist")
    first = mapped(coarse_config, small_frames[0])
    restarted = Mapper(coarse_config)
    assert len(restarted.keyframes) == len(first.keyframes)
    same_objects(first.latest, restarted.latest)
    assert restarted.reconstruct().status == UNCHANGED


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / MANIFEST).unlink(), "not a saved dprecon_ros map"),
        (lambda d: (d / MANIFEST).write_text(json.dumps({"format": "something.else", "version": 1})), "is not 'dprecon_ros.map'"),
        (lambda d: (d / MANIFEST).write_text(json.dumps({**json.loads((d / MANIFEST).read_text()), "version": 99})), "newer"),
        (lambda d: (d / MANIFEST).write_text("{not json"), "unreadable manifest"),
        (lambda d: (d / "scene_model.npz").write_bytes((d / "scene_model.npz").read_bytes()[:-40]), "damaged"),
        (lambda d: (d / "association.json").unlink(), "missing"),
        (lambda d: (d / "association.npz").write_bytes((d / "association.npz").read_bytes()[:100]), "association state unreadable"),
    ],
)
def test_foreign_newer_or_damaged_maps_are_refused_clearly(coarse_config, small_frames, tmp_path, damage, message):
    first = mapped(coarse_config, small_frames[0][:4])
    first.save_map(tmp_path / "map")
    damage(tmp_path / "map")
    other = Mapper(coarse_config)
    with pytest.raises(MapFormatError, match=message):
        other.load_map(tmp_path / "map")
    assert len(other.keyframes) == 0 and other.latest is None  # nothing half-loaded


def test_an_eviction_after_the_last_save_keeps_the_persisted_map(coarse_config, small_frames, tmp_path):
    coarse_config.keyframes.persist_dir = str(tmp_path / "persist")
    first = mapped(coarse_config, small_frames[0])
    first.config.keyframes.max_keyframes = len(first.keyframes) - 1  # the next keyframe evicts one
    first.add_frame(only_pose_moved(small_frames[0][0]))
    restarted = Mapper(coarse_config)
    assert restarted.latest is not None and len(restarted.model.objects) == len(first.model.objects)
    assert restarted.counters.get("map_keyframes_missing") == 1
    assert len(restarted.keyframes) == len(first.keyframes)


def test_loading_a_map_replaces_what_the_persist_directory_mirrors(coarse_config, small_frames, tmp_path):
    frames = small_frames[0]
    other = mapped(coarse_config, frames[4:])
    other.save_map(tmp_path / "other")
    coarse_config.keyframes.persist_dir = str(tmp_path / "persist")
    node = mapped(coarse_config, frames[:5])
    node.load_map(tmp_path / "other")
    restarted = Mapper(coarse_config)
    assert [kf.frame.stamp for kf in restarted.keyframes.snapshot()] == [kf.frame.stamp for kf in other.keyframes.snapshot()]
    same_objects(other.latest, restarted.latest)


def only_pose_moved(frame):
    """The frame seen from 30 cm further along x: a new keyframe with the same content."""
    from dataclasses import replace

    T = frame.T_world_camera.copy()
    T[0, 3] += 0.3
    return replace(frame, stamp=frame.stamp + 50.0, T_world_camera=T)


@pytest.mark.parametrize("after_a_run", [True, False])
def test_resumed_keyframes_follow_merges_made_after_they_were_written(coarse_config, small_frames, tmp_path, after_a_run):
    coarse_config.keyframes.persist_dir = str(tmp_path / "persist")
    first = Mapper(coarse_config)
    for frame in small_frames[0]:
        first.add_frame(frame)
    if after_a_run:
        first.reconstruct()  # the map (with its manifest) is saved: a restart goes through load_map
    keep, drop = sorted(first.associator.objects)[:2]
    kept, dropped = first.associator.objects[keep], first.associator.objects.pop(drop)
    kept.add_keys(dropped.keys)
    first.associator.merged_into[drop] = keep
    first._persist_association()  # the keyframe files on disk still name `drop`
    restarted = Mapper(coarse_config)
    ids = {oid for kf in restarted.keyframes.snapshot() for oid in kf.instance_to_object.values()}
    assert drop not in ids and keep in ids


def test_a_reset_empties_the_persist_directory(coarse_config, small_frames, tmp_path):
    coarse_config.keyframes.persist_dir = str(tmp_path / "persist")
    first = mapped(coarse_config, small_frames[0])
    first.reset()
    restarted = Mapper(coarse_config)
    assert len(restarted.keyframes) == 0 and restarted.latest is None and not restarted.associator.objects
    first.add_frame(small_frames[0][0])
    assert len(Mapper(coarse_config).keyframes) == 1
