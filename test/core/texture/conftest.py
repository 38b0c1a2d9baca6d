"""The texture tests' cube scene (dprecon_ros/testing/raster_scene.py), built once per session."""

import pytest

from dprecon_ros.testing import raster_scene


@pytest.fixture(scope="session")
def cube_keyframes():
    return raster_scene.cube_keyframes()


@pytest.fixture(scope="session")
def cube_mesh():
    return raster_scene.cube_mesh()
