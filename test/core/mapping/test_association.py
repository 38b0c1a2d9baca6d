"""Instances -> stable objects, by 3D overlap and label, with ids kept constant or shuffled per frame."""

from collections import Counter

import numpy as np
from conftest import make_frame

from dprecon_ros.config import AssociationConfig
from dprecon_ros.core.mapping.association import ObjectAssociator


def test_shuffled_ids_map_to_one_object_per_physical_object(sim_frames):
    frames, gt = sim_frames
    assoc = ObjectAssociator(AssociationConfig())
    seen: dict[int, Counter] = {}
    for frame, _ in frames:
        for inst, oid in assoc.associate(frame).items():
            seen.setdefault(oid, Counter())[frame.labels[inst]] += 1
    final = {assoc.resolve(o): c for o, c in seen.items()}
    labels = sorted(assoc.objects[o].label for o in final if o in assoc.objects)
    assert labels == sorted(gt), f"objects {labels} != {sorted(gt)}"
    for oid, counts in final.items():
        assert len(counts) == 1, f"object {oid} mixes labels {counts}"


def test_same_object_keeps_its_id_across_frames():
    assoc = ObjectAssociator(AssociationConfig())
    first = assoc.associate(make_frame(instance_value=5))
    second = assoc.associate(make_frame(instance_value=77, seed=1))
    assert first[5] == second[77]


def test_label_mismatch_creates_a_new_object():
    assoc = ObjectAssociator(AssociationConfig())
    a = make_frame(instance_value=1)
    b = make_frame(instance_value=1)
    b.labels = {1: "vase"}
    assert assoc.associate(a)[1] != assoc.associate(b)[1]
    assoc2 = ObjectAssociator(AssociationConfig(require_label_match=False))
    assert assoc2.associate(a)[1] == assoc2.associate(b)[1]


def test_disjoint_objects_get_distinct_ids():
    assoc = ObjectAssociator(AssociationConfig())
    near = make_frame(depth=1.0)
    far = make_frame(depth=3.0)
    assert assoc.associate(near)[1] != assoc.associate(far)[1]
    assert np.isfinite(list(assoc.objects.values())[0].bounds(0.025)[0]).all()
