"""Marching-cubes lookup tables, generated from the cube's geometry at import time.

The classic 256-row triangle table is usually pasted in as a block of magic numbers that nobody can review,
and published copies differ in corner numbering, winding and how they resolve ambiguous faces. Here the
tables are derived from three rules instead, so every row can be traced back to them:

1. On each cube face, the sign-changing edges are paired into segments. A face with four crossings (its
   corners alternate in sign) always separates its negative corners, a choice that depends only on that
   face's four signs, so the two cubes sharing a face draw the same segments and the mesh is watertight.
2. Each segment is directed so that, seen from outside the cube, positive values lie on its left. The
   segments then chain into closed loops (every crossing edge lies on exactly two faces).
3. Each loop is fan-triangulated in loop order, which makes every triangle's right-hand normal point from
   negative (inside) to positive (outside) values.

Conventions: corner c sits at ((c >> 0) & 1, (c >> 1) & 1, (c >> 2) & 1); a configuration index sets bit c
when corner c is negative; edges are ordered x-edges, y-edges, z-edges, each group by its lower corner.
"""

from __future__ import annotations

import numpy as np

N_AXES = 3
N_CORNERS = 1 << N_AXES
N_EDGES = N_AXES * (N_CORNERS // 2)
N_CONFIGS = 1 << N_CORNERS
MAX_TRIANGLES = 5  # the most triangles any configuration needs
TRIANGLE_PAD = -1  # fills the unused rows of TRIANGLES
FACE_CROSSINGS_AMBIGUOUS = 4  # a face whose corners alternate in sign has all four of its edges crossed

CORNERS = np.array([[(c >> axis) & 1 for axis in range(N_AXES)] for c in range(N_CORNERS)], dtype=np.int64)
EDGES = np.array(
    [(c, c | (1 << axis)) for axis in range(N_AXES) for c in range(N_CORNERS) if not (c >> axis) & 1],
    dtype=np.int64,
)
EDGE_AXIS = np.array([int(b ^ a).bit_length() - 1 for a, b in EDGES], dtype=np.int64)
EDGE_ORIGIN = EDGES[:, 0].copy()

_Face = tuple[int, int]  # (axis of the outward normal, side 0 or 1)


def _faces() -> list[_Face]:
    """The six faces as (axis, side); the outward normal is (2 * side - 1) along the axis."""
    return [(axis, side) for axis in range(N_AXES) for side in (0, 1)]


def _face_edges(face: _Face) -> list[int]:
    """Indices of the four edges that lie on a face."""
    axis, side = face
    return [e for e, (a, b) in enumerate(EDGES.tolist()) if (a >> axis) & 1 == side and (b >> axis) & 1 == side]


def _edge_faces(edge: int) -> set[_Face]:
    """The two faces an edge lies on."""
    a = int(EDGE_ORIGIN[edge])
    return {(axis, (a >> axis) & 1) for axis in range(N_AXES) if axis != EDGE_AXIS[edge]}


_FACES = _faces()
_FACE_EDGES = [_face_edges(f) for f in _FACES]
_FACE_CORNERS = [[c for c in range(N_CORNERS) if (c >> axis) & 1 == side] for axis, side in _FACES]
_EDGE_CORNERS = [tuple(edge) for edge in EDGES.tolist()]
_CORNER_XYZ = CORNERS.tolist()
_MIDPOINTS = [[(pa + pb) / 2 for pa, pb in zip(_CORNER_XYZ[a], _CORNER_XYZ[b])] for a, b in _EDGE_CORNERS]
_SHARE_FACE = [[i != j and bool(_edge_faces(i) & _edge_faces(j)) for j in range(N_EDGES)] for i in range(N_EDGES)]


def _face_segments(config: int, face_index: int) -> list[tuple[int, int]]:
    """Directed segments (edge from, edge to) of the surface on one face, positive side on the left from outside."""
    neg = [bool((config >> c) & 1) for c in range(N_CORNERS)]
    crossed = [e for e in _FACE_EDGES[face_index] if neg[_EDGE_CORNERS[e][0]] != neg[_EDGE_CORNERS[e][1]]]
    if not crossed:
        return []
    # (edge, edge, a corner on the side of the segment where all corners share its sign)
    if len(crossed) == FACE_CROSSINGS_AMBIGUOUS:
        # separate the negative corners: pair the two edges that meet at each negative corner
        pairs = [(*(e for e in crossed if c in _EDGE_CORNERS[e]), c) for c in _FACE_CORNERS[face_index] if neg[c]]
    else:
        # two crossings: each side of the segment is uniformly signed, so any corner will do
        pairs = [(crossed[0], crossed[1], _FACE_CORNERS[face_index][0])]
    axis, side = _FACES[face_index]
    u, v = (axis + 1) % N_AXES, (axis + 2) % N_AXES  # (u, v, outward axis) is right-handed
    segments = []
    for p, q, probe in pairs:  # the probe is never on the segment's line, which joins two edge midpoints
        d = [_MIDPOINTS[q][i] - _MIDPOINTS[p][i] for i in range(N_AXES)]
        w = [_CORNER_XYZ[probe][i] - _MIDPOINTS[p][i] for i in range(N_AXES)]
        # (outward normal x d) . w, with the normal +-1 along `axis`; plain floats keep the import fast
        left = (2 * side - 1) * (d[u] * w[v] - d[v] * w[u])
        probe_on_left = left > 0
        segments.append((p, q) if probe_on_left != neg[probe] else (q, p))
    return segments


def _loops(config: int) -> list[list[int]]:
    """The closed loops of crossing edges, in the winding order of the surface's outward normal."""
    successor: dict[int, int] = {}
    for face_index in range(len(_FACES)):
        for p, q in _face_segments(config, face_index):
            successor[p] = q
    loops = []
    while successor:
        loop = [min(successor)]
        while (nxt := successor.pop(loop[-1])) != loop[0]:
            loop.append(nxt)
        loops.append(loop)
    return loops


def _fan(loop: list[int]) -> list[tuple[int, int, int]]:
    """Fan-triangulate a loop from an apex whose diagonals never join two edges of one face.

    Such a diagonal would lie in the face, and the neighbouring cube could draw it too, leaving a mesh edge
    shared by four triangles.
    """
    m = len(loop)
    apex = next(
        (r for r in range(m) if not any(_SHARE_FACE[loop[r]][loop[(r + j) % m]] for j in range(2, m - 1))),
        0,
    )
    ring = loop[apex:] + loop[:apex]
    return [(ring[0], ring[i], ring[i + 1]) for i in range(1, m - 1)]


def _build() -> tuple[np.ndarray, np.ndarray]:
    """TRIANGLES (N_CONFIGS, MAX_TRIANGLES, 3) padded with TRIANGLE_PAD, and TRIANGLE_COUNT (N_CONFIGS,)."""
    triangles = np.full((N_CONFIGS, MAX_TRIANGLES, N_AXES), TRIANGLE_PAD, dtype=np.int64)
    counts = np.zeros(N_CONFIGS, dtype=np.int64)
    for config in range(N_CONFIGS):
        tris = [t for loop in _loops(config) for t in _fan(loop)]
        if len(tris) > MAX_TRIANGLES:
            raise RuntimeError(f"configuration {config} needs {len(tris)} triangles")
        counts[config] = len(tris)
        if tris:
            triangles[config, : len(tris)] = tris
    return triangles, counts


TRIANGLES, TRIANGLE_COUNT = _build()

__all__ = ["CORNERS", "EDGES", "EDGE_AXIS", "EDGE_ORIGIN", "TRIANGLES", "TRIANGLE_COUNT"]
