"""How provenance is shown to consumers: an object's generated share, and a colour ramp from observed to
generated vertices.

`ObjectReconstruction.vertex_observed` is None where no visibility grid exists (the tsdf and neural
presets): then nothing is claimed, neither observed nor generated, so the generated share is 0 and views fall
back to the object's own colours. Numpy only, so the ROS conversions and the exporters can use it cheaply.
"""

from __future__ import annotations

import numpy as np

from dprecon_ros.core.types import ObjectReconstruction

MARKER_RGB = "rgb"  # markers show the vertex colours
MARKER_OBSERVED = "observed"  # markers show how observed each vertex was
MARKER_COLOUR_MODES = (MARKER_RGB, MARKER_OBSERVED)

# Two hues far apart for the ramp, so observed and generated parts stay distinct under shading and for
# the common colour-vision deficiencies (green against magenta differs in luminance too).
OBSERVED_RGB_U8 = np.array([40, 200, 90], np.uint8)
GENERATED_RGB_U8 = np.array([220, 40, 200], np.uint8)


def has_provenance(obj: ObjectReconstruction) -> bool:
    """Whether the object carries per-vertex observedness (one value per vertex)."""
    return obj.vertex_observed is not None and len(obj.vertex_observed) == len(obj.vertices)


def generated_share(obj: ObjectReconstruction) -> float:
    """The share of the surface that was generated (prior or hull), not observed; 0 without provenance,
    where nothing is known and so nothing is claimed."""
    if not has_provenance(obj):
        return 0.0
    return float(np.clip(1.0 - obj.completeness, 0.0, 1.0))


def observed_colours(vertex_colors: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """(N, 4) uint8 RGBA: a linear ramp from GENERATED (observed 0) to OBSERVED (observed 1) colour, keeping
    each vertex's alpha so transparency looks the same in both modes."""
    t = np.clip(np.asarray(observed, np.float32), 0.0, 1.0)[:, None]
    rgb = GENERATED_RGB_U8 + t * (OBSERVED_RGB_U8.astype(np.float32) - GENERATED_RGB_U8)
    out = np.array(vertex_colors, dtype=np.uint8, copy=True).reshape(-1, 4)
    out[:, :3] = np.rint(rgb).astype(np.uint8)
    return out


def display_colours(obj: ObjectReconstruction, mode: str) -> np.ndarray:
    """The (N, 4) uint8 vertex colours a view shows in `mode`; "observed" without provenance falls back to
    the vertex colours, since there is nothing to show."""
    if mode == MARKER_OBSERVED and has_provenance(obj):
        return observed_colours(obj.vertex_colors, obj.vertex_observed)
    return obj.vertex_colors
