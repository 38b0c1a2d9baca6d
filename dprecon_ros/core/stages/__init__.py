"""Stages of a run (`fuse`, `geometry`, `mesh`), each `run(model, ctx) -> model`, registered by name in
`catalog.py`. A stage refits the objects in `ctx.dirty` and never imports another stage; shared pieces live a
floor below (fusion, fields, render, meshing)."""
