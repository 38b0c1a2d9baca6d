"""Textures: UV atlases, colours baked from the keyframes, fills and seams (DP-Recon stage 4)."""
