"""Stage `prior`: DP-Recon stage 2, unseen geometry completed by score distillation."""
