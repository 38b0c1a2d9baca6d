"""DP-Recon stage 1: compositional SDF fields fitted to the keyframes by volume rendering (config, losses, the
optimisation loop, the stage)."""
