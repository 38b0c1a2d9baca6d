"""The `neural` backend: DP-Recon stage 1, compositional SDF fields fitted by volume rendering."""
