"""Signed-distance fields in normalised scene units: dense SDF grids, the colour network, the composite scene,
and their initialisation from fused volumes. Fields do not sample rays or know the losses."""
