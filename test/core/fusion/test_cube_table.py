"""The generated marching-cubes tables: conventions, per-configuration sanity, and closed outward meshes on fields."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import marching_cubes as skimage_marching_cubes
from skimage.measure import mesh_surface_area

from dprecon_ros.core.fusion.cube_table import CORNERS, EDGE_AXIS, EDGE_ORIGIN, EDGES, TRIANGLE_COUNT, TRIANGLES

N_CONFIGS = 256
ALL_NEGATIVE = N_CONFIGS - 1
MAX_TRIANGLES = 5
BORDER_VALUE = 1.0  # every field is positive on the grid border so its mesh is closed
SKIMAGE_TOLERANCE = 0.02
NOISE_SHAPE = (6, 6, 6)
NOISE_SEEDS = range(40)


# --- a small reference marching cubes built on the tables --------------------------------------------------------


def configs(field: np.ndarray) -> np.ndarray:
    """Configuration index of every cube: bit c set when corner c is negative."""
    nx, ny, nz = (n - 1 for n in field.shape)
    out = np.zeros((nx, ny, nz), dtype=np.int64)
    for c, (ox, oy, oz) in enumerate(CORNERS):
        out |= (field[ox : ox + nx, oy : oy + ny, oz : oz + nz] < 0).astype(np.int64) << c
    return out


def marching_cubes(field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indexed mesh (vertices in voxel units, triangles) with one vertex per crossed grid edge."""
    cfg = configs(field)
    cubes = np.argwhere(TRIANGLE_COUNT[cfg] > 0)
    cube_cfg = cfg[tuple(cubes.T)]
    counts = TRIANGLE_COUNT[cube_cfg]
    valid = np.arange(MAX_TRIANGLES) < counts[:, None]
    local = TRIANGLES[cube_cfg][valid]  # (T, 3) edge indices, cube by cube
    cube_of_tri = np.repeat(cubes, counts, axis=0)
    origin = cube_of_tri[:, None, :] + CORNERS[EDGE_ORIGIN[local]]
    global_edge = np.ravel_multi_index(tuple(np.moveaxis(origin, -1, 0)), field.shape) * 3 + EDGE_AXIS[local]
    unique_edges, faces = np.unique(global_edge, return_inverse=True)
    p0 = np.stack(np.unravel_index(unique_edges // 3, field.shape), -1)
    step = np.eye(3, dtype=np.int64)[unique_edges % 3]
    f0, f1 = field[tuple(p0.T)], field[tuple((p0 + step).T)]
    t = f0 / (f0 - f1)
    return p0 + t[:, None] * step, faces.reshape(-1, 3)


def signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    """Volume enclosed by a closed mesh, positive when its normals point outwards."""
    a, b, c = (verts[faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def area(verts: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = (verts[faces[:, i]] for i in range(3))
    return float(np.linalg.norm(np.cross(b - a, c - a), axis=1).sum() / 2.0)


def with_positive_border(field: np.ndarray) -> np.ndarray:
    field = field.copy()
    for axis in range(3):
        index = [slice(None)] * 3
        for end in (0, -1):
            index[axis] = end
            field[tuple(index)] = BORDER_VALUE
    return field


# --- fields (negative inside) ------------------------------------------------------------------------------------


def grid(n: int) -> np.ndarray:
    return np.stack(np.meshgrid(*(np.arange(n, dtype=np.float64),) * 3, indexing="ij"), -1)


def sphere(n: int = 40, radius: float = 13.3) -> np.ndarray:
    return np.linalg.norm(grid(n) - (n - 1) / 2 + 0.17, axis=-1) - radius


def ellipsoid() -> np.ndarray:
    p = (grid(32) - np.array([12.3, 17.6, 14.1])) / np.array([8.0, 11.0, 5.5])
    return np.linalg.norm(p, axis=-1) - 1.0


def touching_spheres() -> np.ndarray:
    """Two spheres that touch at an off-grid point on a diagonal, so cube faces near it are ambiguous."""
    p, r = grid(30), 6.4
    c1 = np.array([10.3, 14.6, 7.7])
    c2 = c1 + 2 * r * np.array([1.0, 0.0, 1.0]) / np.sqrt(2.0)
    return np.minimum(np.linalg.norm(p - c1, axis=-1), np.linalg.norm(p - c2, axis=-1)) - r


def gaussian_blobs(seed: int = 3, n: int = 24, count: int = 12, threshold: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = grid(n)
    total = np.zeros(p.shape[:3])
    for centre, sigma in zip(rng.uniform(4, n - 5, (count, 3)), rng.uniform(1.5, 3.5, count)):
        total += np.exp(-((p - centre) ** 2).sum(-1) / (2 * sigma**2))
    return with_positive_border(threshold - total)


def sign_noise(seed: int) -> np.ndarray:
    """Random signs and magnitudes inside a positive border: hits ambiguous faces and bodies."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.1, 1.0, NOISE_SHAPE) * rng.choice([-1.0, 1.0], NOISE_SHAPE)
    return with_positive_border(values)


SMOOTH_FIELDS = {
    "sphere": sphere,
    "ellipsoid": ellipsoid,
    "touching_spheres": touching_spheres,
    "gaussian_blobs": gaussian_blobs,
}
ALL_FIELDS = [pytest.param(f, id=name) for name, f in SMOOTH_FIELDS.items()] + [
    pytest.param(lambda seed=seed: sign_noise(seed), id=f"noise{seed}") for seed in NOISE_SEEDS
]


# --- table conventions and per-configuration sanity ---------------------------------------------------------------


def corner_negative(config: int) -> np.ndarray:
    return np.array([(config >> c) & 1 for c in range(len(CORNERS))], dtype=bool)


def crossing_edges(config: int) -> set[int]:
    neg = corner_negative(config)
    return {e for e, (a, b) in enumerate(EDGES) if neg[a] != neg[b]}


def triangles_of(config: int) -> np.ndarray:
    return TRIANGLES[config, : TRIANGLE_COUNT[config]]


def boundary(config: int) -> set[tuple[int, int]]:
    """Directed triangle edges whose reverse is not in the same cube: the loops' outlines."""
    directed = [(int(t[i]), int(t[(i + 1) % 3])) for t in triangles_of(config) for i in range(3)]
    assert len(set(directed)) == len(directed), f"config {config}: a directed edge is used twice"
    return {e for e in directed if e[::-1] not in directed}


def loop_count(outline: set[tuple[int, int]]) -> int:
    successor = dict(outline)
    assert len(successor) == len(outline), "an outline vertex starts two edges"
    loops = 0
    while successor:
        start = next(iter(successor))
        v = successor.pop(start)
        while v != start:
            v = successor.pop(v)
        loops += 1
    return loops


def edge_faces(edge: int) -> set[tuple[int, int]]:
    a = int(EDGE_ORIGIN[edge])
    return {(axis, (a >> axis) & 1) for axis in range(3) if axis != EDGE_AXIS[edge]}


def test_geometry_conventions():
    assert CORNERS.dtype == EDGES.dtype == EDGE_AXIS.dtype == EDGE_ORIGIN.dtype == np.int64
    assert TRIANGLES.dtype == TRIANGLE_COUNT.dtype == np.int64
    assert CORNERS.shape == (8, 3) and EDGES.shape == (12, 2) and TRIANGLES.shape == (N_CONFIGS, MAX_TRIANGLES, 3)
    for c, offset in enumerate(CORNERS):
        assert offset.tolist() == [(c >> 0) & 1, (c >> 1) & 1, (c >> 2) & 1]
    diff = CORNERS[EDGES[:, 1]] - CORNERS[EDGES[:, 0]]
    assert (diff >= 0).all() and (diff.sum(1) == 1).all()
    assert EDGE_AXIS.tolist() == diff.argmax(1).tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert EDGE_ORIGIN.tolist() == EDGES[:, 0].tolist()
    for axis in range(3):
        assert (np.diff(EDGES[EDGE_AXIS == axis, 0]) > 0).all()
    assert EDGES[0].tolist() == [0, 1] and EDGES[4].tolist() == [0, 2] and EDGES[8].tolist() == [0, 4]


def test_counts_and_padding():
    assert TRIANGLE_COUNT[0] == TRIANGLE_COUNT[ALL_NEGATIVE] == 0
    assert (TRIANGLE_COUNT[1:ALL_NEGATIVE] >= 1).all() and (TRIANGLE_COUNT <= MAX_TRIANGLES).all()
    used = np.arange(MAX_TRIANGLES)[None, :] < TRIANGLE_COUNT[:, None]
    assert (TRIANGLES[used] >= 0).all() and (TRIANGLES[used] < len(EDGES)).all()
    assert (TRIANGLES[~used] == -1).all()


def test_each_configuration_is_closed_polygons_on_its_crossing_edges():
    for config in range(N_CONFIGS):
        tris = triangles_of(config)
        crossed = crossing_edges(config)
        assert set(tris.ravel().tolist()) == crossed, config  # every vertex on a crossing edge, every one used
        assert all(len(set(t.tolist())) == 3 for t in tris)
        outline = boundary(config)
        # the outline walks every crossing edge once; each loop of k vertices gives k - 2 triangles
        assert {a for a, _ in outline} == crossed
        assert TRIANGLE_COUNT[config] == len(crossed) - 2 * loop_count(outline), config
        for a, b in outline:  # each outline segment lies on a cube face
            assert edge_faces(a) & edge_faces(b), (config, a, b)
        interior = {(int(t[i]), int(t[(i + 1) % 3])) for t in tris for i in range(3)} - outline
        for a, b in interior:  # no diagonal lies in a face, where the neighbouring cube could draw it too
            assert not edge_faces(a) & edge_faces(b), (config, a, b)


def test_complementary_configurations():
    for config in range(N_CONFIGS):
        other = ALL_NEGATIVE - config
        assert crossing_edges(config) == crossing_edges(other)
        n_loops, other_loops = loop_count(boundary(config)), loop_count(boundary(other))
        assert TRIANGLE_COUNT[config] + 2 * n_loops == TRIANGLE_COUNT[other] + 2 * other_loops
        if not any(len(face) == 4 for face in face_crossings(config).values()):
            # without an ambiguous face the loops are the same, walked the other way
            assert TRIANGLE_COUNT[config] == TRIANGLE_COUNT[other]
            assert boundary(other) == {(b, a) for a, b in boundary(config)}


def face_crossings(config: int) -> dict[tuple[int, int], set[int]]:
    out: dict[tuple[int, int], set[int]] = {}
    for e in crossing_edges(config):
        for face in edge_faces(e):
            out.setdefault(face, set()).add(e)
    return out


def test_face_segments_depend_only_on_the_face_signs():
    """Cubes that share a face draw the same segments on it, in opposite directions: the mesh is watertight."""
    flip_edge = {}  # edge on the high face of an axis -> the same edge seen from the next cube, on its low face
    for axis in range(3):
        for e, (a, b) in enumerate(EDGES.tolist()):
            if (a >> axis) & 1 and (b >> axis) & 1:
                flip_edge[axis, e] = EDGES.tolist().index([a & ~(1 << axis), b & ~(1 << axis)])
    seen: dict[tuple[int, tuple[bool, ...]], set[tuple[int, int]]] = {}
    for config in range(N_CONFIGS):
        neg = corner_negative(config)
        outline = boundary(config)
        for axis in range(3):
            for side in (0, 1):
                face_corners = [c for c in range(8) if (c >> axis) & 1 == side]
                segments = {(a, b) for a, b in outline if (axis, side) in edge_faces(a) & edge_faces(b)}
                if side:  # as the neighbouring cube sees it: on its low face and walked the other way
                    segments = {(flip_edge[axis, b], flip_edge[axis, a]) for a, b in segments}
                key = (axis, tuple(neg[face_corners].tolist()))
                assert seen.setdefault(key, segments) == segments, (config, axis, side)
    ambiguous = [k for k in seen if k[1] in ((True, False, False, True), (False, True, True, False))]
    assert len(ambiguous) == 6 and all(len(seen[k]) == 2 for k in ambiguous)  # negative corners kept apart


def trilinear_gradient(values: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Gradient at p in the unit cube of the trilinear interpolation of the 8 corner values."""
    grad = np.zeros(3)
    for value, corner in zip(values, CORNERS):
        weights = np.where(corner == 1, p, 1 - p)
        slopes = np.where(corner == 1, 1.0, -1.0)
        for axis in range(3):
            grad[axis] += value * slopes[axis] * np.prod(np.delete(weights, axis))
    return grad


def test_triangle_normals_point_towards_positive_values():
    """With corner values of +-1 and vertices at edge midpoints, each normal climbs the trilinear field."""
    midpoints = (CORNERS[EDGES[:, 0]] + CORNERS[EDGES[:, 1]]) / 2.0
    for config in range(N_CONFIGS):
        values = np.where(corner_negative(config), -1.0, 1.0)
        for tri in triangles_of(config):
            v = midpoints[tri]
            normal = np.cross(v[1] - v[0], v[2] - v[0])
            assert normal @ trilinear_gradient(values, v.mean(0)) > 0, (config, tri)


# --- meshes of fields ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make_field", ALL_FIELDS)
def test_mesh_is_closed_consistently_oriented_and_outward(make_field):
    field = make_field()
    verts, faces = marching_cubes(field)
    assert len(faces) > 0
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    # each directed edge once, and its reverse present: every undirected edge has exactly two triangles
    assert len(np.unique(directed, axis=0)) == len(directed)
    keys = directed[:, 0] * len(verts) + directed[:, 1]
    assert np.isin(directed[:, 1] * len(verts) + directed[:, 0], keys).all()
    assert signed_volume(verts, faces) > 0


def test_noise_hits_ambiguous_faces_and_every_configuration():
    """The noise fields exercise the face rule (otherwise the closedness test above proves little)."""
    hit = np.zeros(N_CONFIGS, dtype=bool)
    for seed in NOISE_SEEDS:
        hit[configs(sign_noise(seed)).ravel()] = True
    assert hit[ambiguous_configurations()].mean() > 0.9
    assert hit.mean() > 0.9


def ambiguous_configurations() -> list[int]:
    return [c for c in range(N_CONFIGS) if any(len(f) == 4 for f in face_crossings(c).values())]


def test_touching_spheres_cross_faces_ambiguously():
    assert np.isin(configs(touching_spheres()), ambiguous_configurations()).any()


@pytest.fixture(scope="module")
def sphere_meshes():
    field = sphere()
    ours = marching_cubes(field)
    ref_verts, ref_faces, _, _ = skimage_marching_cubes(field, level=0.0)
    return ours, (ref_verts, ref_faces)


def test_sphere_volume_matches_skimage(sphere_meshes):
    (verts, faces), (ref_verts, ref_faces) = sphere_meshes
    ours, ref = signed_volume(verts, faces), abs(signed_volume(ref_verts, ref_faces))
    assert ours == pytest.approx(ref, rel=SKIMAGE_TOLERANCE)


def test_sphere_area_matches_skimage(sphere_meshes):
    (verts, faces), (ref_verts, ref_faces) = sphere_meshes
    assert area(verts, faces) == pytest.approx(mesh_surface_area(ref_verts, ref_faces), rel=SKIMAGE_TOLERANCE)


def test_sphere_mesh_is_one_sphere(sphere_meshes):
    (verts, faces), _ = sphere_meshes
    edges = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1), axis=0)
    assert len(verts) - len(edges) + len(faces) == 2  # Euler characteristic of a sphere
