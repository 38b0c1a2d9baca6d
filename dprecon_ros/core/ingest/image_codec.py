"""Decode sensor_msgs/Image-like objects (rclpy or rosbags messages, duck-typed) into numpy arrays.

Replaces cv_bridge, which is not installable here; the rules follow REP-118 encodings.
"""

from __future__ import annotations

import numpy as np

_COLOUR = {"rgb8": (3, [0, 1, 2]), "bgr8": (3, [2, 1, 0]), "rgba8": (4, [0, 1, 2]), "bgra8": (4, [2, 1, 0])}
_DEPTH = {"32FC1": np.float32, "16UC1": np.uint16, "mono16": np.uint16}
_INSTANCE = {"16UC1": np.uint16, "mono16": np.uint16, "32SC1": np.int32, "8UC1": np.uint8, "mono8": np.uint8}


class ImageDecodeError(ValueError):
    """The image cannot be decoded: unknown encoding or inconsistent size."""


def _raw(msg, dtype: np.dtype, channels: int) -> np.ndarray:
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    itemsize = np.dtype(dtype).itemsize
    data = bytes(msg.data) if not isinstance(msg.data, (bytes, bytearray, memoryview, np.ndarray)) else msg.data
    buf = np.frombuffer(data, dtype=np.uint8)
    if h <= 0 or w <= 0 or step < w * channels * itemsize or buf.size < h * step:
        raise ImageDecodeError(f"image size inconsistent: {w}x{h}, step {step}, {buf.size} bytes, {msg.encoding}")
    rows = buf[: h * step].reshape(h, step)[:, : w * channels * itemsize]
    dt = np.dtype(dtype).newbyteorder(">" if getattr(msg, "is_bigendian", 0) else "<")
    arr = rows.copy().view(dt).reshape(h, w, channels)
    return arr.astype(np.dtype(dtype).newbyteorder("="), copy=False)


def decode_rgb(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB from rgb8/bgr8/rgba8/bgra8/mono8."""
    enc = msg.encoding
    if enc in _COLOUR:
        channels, order = _COLOUR[enc]
        return np.ascontiguousarray(_raw(msg, np.uint8, channels)[..., order])
    if enc in ("mono8", "8UC1"):
        return np.repeat(_raw(msg, np.uint8, 1), 3, axis=2)
    raise ImageDecodeError(f"unsupported colour encoding {enc!r}")


def decode_depth(msg) -> np.ndarray:
    """(H, W) float32 metres, NaN where there is no reading (0, NaN, inf)."""
    enc = msg.encoding
    if enc not in _DEPTH:
        raise ImageDecodeError(f"unsupported depth encoding {enc!r}")
    raw = _raw(msg, _DEPTH[enc], 1)[..., 0]
    depth = raw.astype(np.float32) * (0.001 if raw.dtype == np.uint16 else 1.0)
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


def decode_instance(msg) -> np.ndarray:
    """(H, W) int32 instance ids; 0 = background."""
    enc = msg.encoding
    if enc not in _INSTANCE:
        raise ImageDecodeError(f"unsupported instance encoding {enc!r}")
    return _raw(msg, _INSTANCE[enc], 1)[..., 0].astype(np.int32)


def encode_image(array: np.ndarray, encoding: str) -> tuple[int, int, int, bytes]:
    """(height, width, step, data) for an array in the given encoding (little-endian)."""
    dtype = {
        "rgb8": np.uint8,
        "bgr8": np.uint8,
        "mono8": np.uint8,
        "8UC1": np.uint8,
        "32FC1": np.float32,
        "16UC1": np.uint16,
        "mono16": np.uint16,
        "32SC1": np.int32,
        "rgba8": np.uint8,
        "bgra8": np.uint8,
    }
    if encoding not in dtype:
        raise ImageDecodeError(f"unsupported encoding {encoding!r}")
    arr = np.ascontiguousarray(array.astype(dtype[encoding], copy=False))
    h, w = arr.shape[:2]
    return h, w, arr.nbytes // h, arr.tobytes()
