"""Gravity-aligned oriented boxes from points (yaw from 2D PCA of the footprint; map z is up)."""

from __future__ import annotations

import numpy as np

from dprecon_ros.core.types import OrientedBox


def oriented_box(points: np.ndarray) -> OrientedBox:
    if len(points) == 0:
        return OrientedBox(np.zeros(3), 0.0, np.zeros(3))
    xy = points[:, :2]
    centred = xy - xy.mean(axis=0)
    if len(points) >= 3 and np.ptp(centred, axis=0).max() > 0:
        _, vecs = np.linalg.eigh(centred.T @ centred)
        major = vecs[:, -1]
        yaw = float(np.arctan2(major[1], major[0]))
    else:
        yaw = 0.0
    yaw = (yaw + np.pi / 2) % np.pi - np.pi / 2
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    local = points @ R
    lo, hi = local.min(axis=0), local.max(axis=0)
    return OrientedBox(center=R @ ((lo + hi) / 2), yaw=yaw, extent=hi - lo)
