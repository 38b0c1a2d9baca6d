"""The observed/generated colour ramp and the generated share: what the markers and exports show of provenance."""

from __future__ import annotations

import numpy as np

from dprecon_ros.core.observedness import (
    GENERATED_RGB_U8,
    MARKER_OBSERVED,
    MARKER_RGB,
    OBSERVED_RGB_U8,
    display_colours,
    generated_share,
    observed_colours,
)
from dprecon_ros.core.types import ObjectReconstruction, OrientedBox

VERTICES = 5
ALPHA = 77  # an alpha the ramp must keep
COMPLETENESS = 0.25


def thing(observed: np.ndarray | None, completeness: float = 0.0) -> ObjectReconstruction:
    v = np.arange(VERTICES * 3, dtype=np.float64).reshape(-1, 3)
    colours = np.tile(np.array([10, 20, 30, ALPHA], np.uint8), (VERTICES, 1))
    box = OrientedBox(v.mean(0), 0.0, np.ones(3))
    return ObjectReconstruction(1, "thing", v, np.array([[0, 1, 2]]), colours, v.mean(0), box, 1, completeness, observed)


def test_the_ramp_runs_from_generated_to_observed_and_keeps_alpha():
    observed = np.array([0.0, 1.0, 0.5, -0.2, 1.3], np.float32)  # out-of-range values clip to the ends
    rgba = observed_colours(thing(observed).vertex_colors, observed)
    assert rgba.dtype == np.uint8 and rgba.shape == (VERTICES, 4)
    assert np.array_equal(rgba[0, :3], GENERATED_RGB_U8) and np.array_equal(rgba[3, :3], GENERATED_RGB_U8)
    assert np.array_equal(rgba[1, :3], OBSERVED_RGB_U8) and np.array_equal(rgba[4, :3], OBSERVED_RGB_U8)
    midway = (GENERATED_RGB_U8.astype(float) + OBSERVED_RGB_U8) / 2
    assert np.all(np.abs(rgba[2, :3] - midway) <= 1)
    assert np.all(rgba[:, 3] == ALPHA)


def test_observed_mode_shows_provenance_and_falls_back_to_rgb_without_it():
    observed = np.linspace(0.0, 1.0, VERTICES, dtype=np.float32)
    seen = thing(observed)
    assert np.array_equal(display_colours(seen, MARKER_OBSERVED), observed_colours(seen.vertex_colors, observed))
    assert np.array_equal(display_colours(seen, MARKER_RGB), seen.vertex_colors)
    unknown = thing(None)
    assert np.array_equal(display_colours(unknown, MARKER_OBSERVED), unknown.vertex_colors)


def test_the_generated_share_is_the_unobserved_share_only_where_provenance_exists():
    assert np.isclose(generated_share(thing(np.zeros(VERTICES, np.float32), COMPLETENESS)), 1 - COMPLETENESS)
    assert generated_share(thing(None, COMPLETENESS)) == 0.0  # unknown: nothing claimed
