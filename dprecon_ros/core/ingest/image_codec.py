"""Decode sensor_msgs/Image-like objects (rclpy or rosbags messages, duck-typed) into numpy arrays.

Replaces cv_bridge, which is not installable here; the rules follow REP-118 encodings.
"""

from __future__ import annotations

import numpy as np

_COLOUR = {"rgb8": (3, [0, 1, 2]), "bgr8": (3, [2, 1, 0]), "rgba8": (4, [0, 1, 2]), "bgra8": (4, [2, 1, 0])}
_DEPTH = {"32FC1": np.float32, "16UC1": np.uint16, "mono16": np.uint16}
_INSTANCE = {"16UC1": np.uint16, "mono16": np.uint16, "32SC1": np.int32, "8UC1": np.uint8, "mono8": np.uint8}


KIND_NAMES = {"rgb": "colour", "depth": "depth", "instance": "instance"}


class ImageDecodeError(ValueError):
    """The image cannot be decoded: unknown encoding or inconsistent size."""


def _payload(msg):
    """The pixel bytes without a copy where the container allows it (rclpy gives array.array('B'))."""
    data = msg.data
    if isinstance(data, (bytes, bytearray, memoryview, np.ndarray)):
        return data
    try:
        return memoryview(data).cast("B")
    except TypeError:  # a plain list of ints
        return bytes(data)


def _check_layout(msg, dtype: np.dtype, channels: int) -> None:
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    size = len(_payload(msg))
    if h <= 0 or w <= 0 or step < w * channels * np.dtype(dtype).itemsize or size < h * step:
        raise ImageDecodeError(f"image size inconsistent: {w}x{h}, step {step}, {size} bytes, {msg.encoding}")


def _raw(msg, dtype: np.dtype, channels: int) -> np.ndarray:
    _check_layout(msg, dtype, channels)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    itemsize = np.dtype(dtype).itemsize
    buf = np.frombuffer(_payload(msg), dtype=np.uint8)
    rows = buf[: h * step].reshape(h, step)[:, : w * channels * itemsize]
    dt = np.dtype(dtype).newbyteorder(">" if getattr(msg, "is_bigendian", 0) else "<")
    arr = rows.copy().view(dt).reshape(h, w, channels)
    return arr.astype(np.dtype(dtype).newbyteorder("="), copy=False)


def _layout(kind: str, encoding: str) -> tuple[np.dtype, int]:
    """(dtype, channels) of a supported encoding for `kind` (rgb, depth or instance)."""
    if kind == "rgb":
        if encoding in _COLOUR:
            return np.dtype(np.uint8), _COLOUR[encoding][0]
        if encoding in ("mono8", "8UC1"):
            return np.dtype(np.uint8), 1
    elif kind == "depth" and encoding in _DEPTH:
        return np.dtype(_DEPTH[encoding]), 1
    elif kind == "instance" and encoding in _INSTANCE:
        return np.dtype(_INSTANCE[encoding]), 1
    raise ImageDecodeError(f"unsupported {KIND_NAMES.get(kind, kind)} encoding {encoding!r}")


def check_image(msg, kind: str) -> None:
    """The checks of decoding without its copies: raw images can wait undecoded (most are never decoded),
    and a bad one is still refused on arrival."""
    _check_layout(msg, *_layout(kind, msg.encoding))


def raw_nbytes(msg) -> int:
    return len(_payload(msg))


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
