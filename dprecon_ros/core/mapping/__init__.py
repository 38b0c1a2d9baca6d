"""Keyframes, mask-to-object association and the `Mapper` that drives a map. Owns what is observed and which
object each mask is; does not fit geometry (the stages do)."""
