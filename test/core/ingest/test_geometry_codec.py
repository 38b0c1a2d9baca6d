import numpy as np
import pytest

from dprecon_ros.core.geometry import interpolate_pose, invert, look_at, make_transform, matrix_to_quat, pose_distance, quat_to_matrix
from dprecon_ros.core.ingest.image_codec import ImageDecodeError, decode_depth, decode_instance, decode_rgb, encode_image
from dprecon_ros.io.frame_messages import image_message


def random_rotation(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    return quat_to_matrix(*q)


def test_quaternion_round_trip_and_orthonormal():
    rng = np.random.default_rng(1)
    for _ in range(50):
        R = random_rotation(rng)
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-9)
        assert np.allclose(quat_to_matrix(*matrix_to_quat(R)), R, atol=1e-9)
    with pytest.raises(ValueError):
        quat_to_matrix(0, 0, 0, 0)


def test_pose_interpolation_and_distance():
    rng = np.random.default_rng(2)
    T0 = make_transform(random_rotation(rng), rng.normal(size=3))
    T1 = make_transform(random_rotation(rng), rng.normal(size=3))
    assert np.allclose(interpolate_pose(T0, T1, 0.0), T0, atol=1e-9)
    assert np.allclose(interpolate_pose(T0, T1, 1.0), T1, atol=1e-9)
    mid = interpolate_pose(T0, T1, 0.5)
    d0, r0 = pose_distance(T0, mid)
    d1, r1 = pose_distance(mid, T1)
    assert d0 == pytest.approx(d1) and r0 == pytest.approx(r1)
    assert np.allclose(invert(T0) @ T0, np.eye(4), atol=1e-9)


def test_look_at_is_an_optical_frame():
    T = look_at(np.array([1.0, 0, 1]), np.array([0.0, 0, 1]))
    assert np.allclose(T[:3, 2], [-1, 0, 0])  # +z looks at the target
    assert T[2, 1] < 0  # +y (image down) points down in the world


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_encodings_decode_to_rgb(encoding):
    rgb = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    src = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.dstack([rgb, np.full((5, 7), 255, np.uint8)]),
        "bgra8": np.dstack([rgb[..., ::-1], np.zeros((5, 7), np.uint8)]),
    }[encoding]
    assert np.array_equal(decode_rgb(image_message(src, encoding, 1.0, "cam")), rgb)


def test_depth_encodings_and_invalid_readings():
    mm = np.array([[0, 1500], [2000, 65535]], np.uint16)
    d = decode_depth(image_message(mm, "16UC1", 1.0, "cam"))
    assert np.isnan(d[0, 0]) and d[0, 1] == pytest.approx(1.5)
    m = np.array([[np.nan, 1.5], [np.inf, -1.0]], np.float32)
    d = decode_depth(image_message(m, "32FC1", 1.0, "cam"))
    assert np.isnan(d[0, 0]) and np.isnan(d[1, 0]) and np.isnan(d[1, 1]) and d[0, 1] == pytest.approx(1.5)


def test_big_endian_and_row_padding():
    arr = np.array([[1, 2, 3], [4, 5, 6]], dtype=">u2")
    msg = image_message(np.zeros((2, 3), np.uint16), "16UC1", 1.0, "cam")
    padded = np.zeros((2, 8), np.uint8)  # step 8 > 6 bytes per row
    padded[:, :6] = arr.view(np.uint8).reshape(2, 6)
    msg.data, msg.step, msg.is_bigendian = padded.reshape(-1), 8, 1
    assert np.array_equal(decode_instance(msg), arr.astype(np.int32))


def test_bad_images_raise_decode_errors():
    msg = image_message(np.zeros((4, 4, 3), np.uint8), "rgb8", 1.0, "cam")
    msg.encoding = "yuv422"
    with pytest.raises(ImageDecodeError):
        decode_rgb(msg)
    msg.encoding = "rgb8"
    msg.data = msg.data[:10]
    with pytest.raises(ImageDecodeError):
        decode_rgb(msg)
    with pytest.raises(ImageDecodeError):
        encode_image(np.zeros((2, 2)), "jpeg")
