"""Simulated rooms with ground truth, rendered with pybullet's TinyRenderer (CPU, no display)."""
