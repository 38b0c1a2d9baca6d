"""Saved maps on disk: a versioned manifest with checksums, the scene model, association state, keyframes.
Owns the format; does not decide when to save."""
