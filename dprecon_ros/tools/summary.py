"""Human-readable summaries of a reconstruction (objects, relations, timings)."""

from __future__ import annotations

from dprecon_ros.core.types import Reconstruction
from dprecon_ros.eval.evaluation import format_table


def reconstruction_summary(recon: Reconstruction, keyframes: int, frames: int, counters: dict[str, int]) -> str:
    labels = {o.object_id: o.label for o in recon.objects}
    labels[recon.scene_graph.background_id] = recon.scene_graph.background_label
    objects = format_table(
        ["id", "label", "faces", "observations", "observed share", "centroid (m)", "box extent (m)"],
        [
            [
                o.object_id,
                o.label,
                len(o.faces),
                o.observation_count,
                f"{o.completeness:.2f}" if o.vertex_observed is not None else "-",
                " ".join(f"{v:+.2f}" for v in o.centroid),
                " ".join(f"{v:.2f}" for v in o.box.extent),
            ]
            for o in recon.objects
        ],
    )
    relations = [
        f"  {labels.get(r.subject, r.subject)}({r.subject}) {r.relation} {labels.get(r.object, r.object)}({r.object})"
        f"  conf {r.confidence:.2f}"
        for r in recon.scene_graph.relations
    ]
    timings = ", ".join(f"{k} {v:.2f} s" for k, v in recon.timings_s.items())
    dropped = ", ".join(f"{k}={v}" for k, v in counters.items()) or "none"
    return "\n".join(
        [
            f"backend {recon.backend}: {len(recon.objects)} objects from {keyframes} keyframes ({frames} frames)",
            objects,
            "relations:",
            *(relations or ["  (none)"]),
            *([f"prior: {recon.prior_status}"] if recon.prior_status else []),
            f"timings: {timings}",
            f"input events: {dropped}",
        ]
    )
