"""Rays from keyframes, error-bounded sampling and volume rendering of a field passed in at call time. The
renderer owns no fields and no optimiser."""
