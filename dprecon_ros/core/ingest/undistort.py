"""Remap images from a plumb_bob (radial-tangential) camera to its ideal pinhole model.

For every pixel of the undistorted image the forward distortion model gives its source pixel directly, so no
iterative inversion is needed. Nearest-neighbour sampling keeps depth and instance ids exact.
"""

from __future__ import annotations

import numpy as np

from dprecon_ros.core.types import CameraIntrinsics

SUPPORTED_MODELS = ("plumb_bob", "rational_polynomial")


def is_distorted(coefficients: np.ndarray, eps: float = 1e-9) -> bool:
    return coefficients.size > 0 and bool(np.any(np.abs(coefficients) > eps))


class Undistorter:
    def __init__(self, intrinsics: CameraIntrinsics, coefficients: np.ndarray) -> None:
        d = np.zeros(8)
        d[: min(8, coefficients.size)] = coefficients[:8]
        k1, k2, p1, p2, k3, k4, k5, k6 = d
        v, u = np.mgrid[0 : intrinsics.height, 0 : intrinsics.width].astype(np.float64)
        x = (u - intrinsics.cx) / intrinsics.fx
        y = (v - intrinsics.cy) / intrinsics.fy
        r2 = x * x + y * y
        radial = (1 + k1 * r2 + k2 * r2**2 + k3 * r2**3) / (1 + k4 * r2 + k5 * r2**2 + k6 * r2**3)
        xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        us = np.rint(xd * intrinsics.fx + intrinsics.cx).astype(np.int64)
        vs = np.rint(yd * intrinsics.fy + intrinsics.cy).astype(np.int64)
        self.valid = (us >= 0) & (us < intrinsics.width) & (vs >= 0) & (vs < intrinsics.height)
        self.src_u = np.clip(us, 0, intrinsics.width - 1)
        self.src_v = np.clip(vs, 0, intrinsics.height - 1)

    def apply(self, image: np.ndarray, fill: float | int = 0) -> np.ndarray:
        out = image[self.src_v, self.src_u]
        out[~self.valid] = fill
        return out
