"""Evaluation against ground truth: surface metrics (Chamfer, F-score, normal consistency) and matching."""
