"""What a viewer (RViz, Foxglove) shows after applying a sequence of MarkerArray messages."""

from __future__ import annotations

from visualization_msgs.msg import Marker


def replay_markers(arrays) -> dict[tuple[str, int], Marker]:
    """(ns, id) -> marker after applying ADD, DELETE and DELETEALL in order."""
    shown: dict[tuple[str, int], Marker] = {}
    for array in arrays:
        for m in array.markers:
            if m.action == Marker.DELETEALL:
                shown.clear()
            elif m.action == Marker.DELETE:
                shown.pop((m.ns, m.id), None)
            else:
                shown[(m.ns, m.id)] = m
    return shown
