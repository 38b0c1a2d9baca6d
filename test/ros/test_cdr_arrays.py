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


def random_object(oid: int, vertices: int, faces: int, rng: np.random.Generator, provenance: bool | None = None) -> ObjectReconstruction:
    """With provenance (per-vertex observedness; by default ids not divisible by 3, so SIZES has it at both
    length parities) or without, as from the tsdf preset."""
    v = rng.normal(size=(vertices, 3)) + [oid, 0.0, 0.5]
    f = rng.integers(0, max(vertices, 1), size=(faces, 3))
    colours = rng.integers(0, 256, size=(vertices, 4), dtype=np.uint8)
    box = oriented_box(v if vertices >= 4 else rng.normal(size=(8, 3)))
    obj = ObjectReconstruction(oid, f"thing{oid}", v, f, colours, v.mean(0) if vertices else np.zeros(3), box, 3)
    if provenance or (provenance is None and oid % 3 != 0):
        obj.vertex_observed = rng.random(vertices).astype(np.float32)
        obj.completeness = float(rng.random())
    return obj


def assert_provenance_read_back(spliced: bytes, objects: list[ObjectReconstruction]) -> None:
    """Each object's observedness, value for value, from the spliced bytes (a plain build that lost the field
    would compare equal to a spliced one that lost it too)."""
    by_id = {m.id: m for m in deserialize_message(spliced, MapObjectArray).objects}
    for obj in objects:
        expected = obj.vertex_observed if obj.vertex_observed is not None else np.zeros(0, np.float32)
        assert np.array_equal(np.asarray(by_id[obj.object_id].vertex_observed, np.float32), expected), obj.object_id


FLOAT_PLACEHOLDERS_MAX = 3  # a float32 array is two or three placeholder values until spliced

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
    assert_provenance_read_back(spliced, objects)

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
    assert_provenance_read_back(fallback, objects)


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
        assert_provenance_read_back(spliced, objects)


def test_float_arrays_are_spliced_not_built_and_keep_every_later_field():
    """Observedness of every length parity goes in as bytes: the message rclpy serialises holds only the few
    placeholder values, and the fields after each array (shares, counts, the next object) read back intact."""
    rng = np.random.default_rng(4)
    objects = [random_object(i + 1, v, f, rng, provenance=True) for i, (v, f) in enumerate([(3, 2), (4, 3), (5, 4), (50, 96), (301, 600)])]
    recon = Reconstruction(objects, None, SceneGraph(objects, []), 7.0)
    slots = ArraySlots()
    msg = objects_message(recon, "map", slots)
    assert all(len(m.vertex_observed) <= FLOAT_PLACEHOLDERS_MAX for m in msg.objects)
    spliced = slots.serialize(msg)
    assert_provenance_read_back(spliced, objects)
    read = deserialize_message(spliced, MapObjectArray).objects
    assert [m.observation_count for m in read] == [o.observation_count for o in objects]
    assert np.allclose([m.generated_share for m in read], [1 - o.completeness for o in objects], atol=1e-6)
