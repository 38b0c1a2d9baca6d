"""Guidance: what scores rendered views of an object against a prior (rendered maps + cameras + prompt in, a
loss out). The prior and texture stages use it by name; a new prior is a new registered class."""
