"""Meshes serialised from arrays read back as the messages rclpy makes from one object per element (rclpy
leaves padding bytes uninitialised, so bytes are compared through a read-back, lengths directly)."""

from __future__ import annotations

import numpy as np
import pytest
from dprecon_msgs.msg import MapObjectArray
from rclpy.serialization import deserialize_message, serialize_message
from visualization_msgs.msg import MarkerArray

from dprecon_ros.core.boxes import oriented_box
from dprecon_ros.core.types import ObjectReconstruction, Reconstruction, SceneGraph
from dprecon_ros.ros.cdr_arrays import ArraySlots
from dprecon_ros.ros.conversions import marker_update, objects_message


def random_object(oid: int, vertices: int, faces: int, rng: np.random.Generator) -> ObjectReconstruction:
    v = rng.normal(size=(vertices, 3)) + [oid, 0.0, 0.5]
    f = rng.integers(0, max(vertices, 1), size=(faces, 3))
    colours = rng.integers(0, 256, size=(vertices, 4), dtype=np.uint8)
    box = oriented_box(v if vertices >= 4 else rng.normal(size=(8, 3)))
    return ObjectReconstruction(oid, f"thing{oid}", v, f, colours, v.mean(0) if vertices else np.zeros(3), box, 3)


# sizes around the placeholder rules: below SMALL, odd and even triangle counts (one or two placeholders)
SIZES = [(0, 0), (1, 1), (3, 2), (4, 3), (5, 4), (7, 5), (50, 96), (51, 97), (301, 600)]


@pytest.mark.parametrize("seed", [0, 1])
def test_objects_and_markers_serialise_the_same_from_arrays(seed):
    rng = np.random.default_rng(seed)
    objects = [random_object(i + 1, v, f, rng) for i, (v, f) in enumerate(SIZES)]
    rng.shuffle(objects)
    recon = Reconstruction(objects, random_object(0, 40, 70, rng), SceneGraph(objects, []), 12.25)
    recon.versions = {o.object_id: 1 for o in objects}

    slots = ArraySlots()
    spliced = slots.serialize(objects_message(recon, "map", slots))
    plain = objects_message(recon, "map")
    assert len(spliced) == len(serialize_message(plain))
    assert deserialize_message(spliced, MapObjectArray) == deserialize_message(serialize_message(plain), MapObjectArray)

    slots = ArraySlots()
    markers, _ = marker_update(recon, "map", None, slots)
    spliced = slots.serialize(markers)
    plain, _ = marker_update(recon, "map", None)
    assert len(spliced) == len(serialize_message(plain))
    assert deserialize_message(spliced, MarkerArray) == deserialize_message(serialize_message(plain), MarkerArray)
    assert sum(len(m.points) for m in plain.markers) == 3 * sum(len(o.faces) for o in [*objects, recon.background])


def test_a_placeholder_that_is_missing_is_an_error_not_a_wrong_message():
    slots = ArraySlots()
    slots.points(np.zeros((10, 3)))  # registered, but never put into the message
    with pytest.raises(ValueError, match="placeholder"):
        slots.serialize(MarkerArray())


def test_the_full_build_a_message_falls_back_to_is_the_same_message():
    """Where a length cannot be located (padding that reads as the length both times), the elements are built
    after all: that path must give the same message."""
    rng = np.random.default_rng(3)
    objects = [random_object(i + 1, v, f, rng) for i, (v, f) in enumerate(SIZES)]
    recon = Reconstruction(objects, None, SceneGraph(objects, []), 3.5)
    slots = ArraySlots()
    msg = objects_message(recon, "map", slots)
    fallback = slots._plain(msg)
    plain = objects_message(recon, "map")
    assert deserialize_message(fallback, MapObjectArray) == deserialize_message(serialize_message(plain), MapObjectArray)


def test_many_random_meshes_round_trip_without_error():
    """Random sizes and strings that shift every alignment; some of these hit the fallback, depending on what
    the padding holds."""
    rng = np.random.default_rng(2)
    for _ in range(200):
        sizes = [(int(v), int(f)) for v, f in rng.choice([0, 1, 2, 3, 4, 7, 12, 33, 64], size=(int(rng.integers(1, 4)), 2))]
        objects = [random_object(i + 1, v, f, rng) for i, (v, f) in enumerate(sizes)]
        for o in objects:
            o.label = "x" * int(rng.integers(0, 9))
        recon = Reconstruction(objects, None, SceneGraph(objects, []), float(rng.random()))
        slots = ArraySlots()
        spliced = slots.serialize(objects_message(recon, "map", slots))
        expected = serialize_message(objects_message(recon, "map"))
        assert deserialize_message(spliced, MapObjectArray) == deserialize_message(expected, MapObjectArray)
