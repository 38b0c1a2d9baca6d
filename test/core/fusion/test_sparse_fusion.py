"""The sparse TSDF volume against the dense one, keyframes fused one at a time against all at once, taken out
again, object merges, and block marching cubes (full and incremental) against skimage."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from test_tsdf_meshing import RADIUS, K, sphere_depth, views

from dprecon_ros.core.fusion import block_mesh
from dprecon_ros.core.fusion.block_mesh import BlockMesher, extract_block_mesh
from dprecon_ros.core.fusion.config import TsdfConfig
from dprecon_ros.core.fusion.fuse import fuse_volume
from dprecon_ros.core.fusion.live_map import LiveMap, make_volume
from dprecon_ros.core.fusion.sparse_tsdf import DepthView, SparseTsdfVolume
from dprecon_ros.core.fusion.tsdf import TsdfVolume, VolumeSpec
from dprecon_ros.core.meshing import marching_cubes
from dprecon_ros.core.types import BACKGROUND_ID, Frame, Keyframe

CPU = torch.device("cpu")
VOXEL = 0.01
GREY = 200


def sphere_frame(T: np.ndarray, stamp: float = 1.0) -> Frame:
    depth = sphere_depth(T)
    rgb = np.full((K.height, K.width, 3), GREY, np.uint8)
    rgb[..., 0] = (np.arange(K.width) % 256).astype(np.uint8)  # colour varies across the image
    instance = np.where(np.isfinite(depth), 1, 0).astype(np.uint16)
    return Frame(stamp, rgb, depth, instance, {1: "ball"}, K, T)


def sphere_volume(carve: bool = False, samples_per_block: float = 3.0) -> SparseTsdfVolume:
    return SparseTsdfVolume(
        VOXEL, 4.0, 8, CPU, free_space_weight=0.5 if carve else 0.0, carve_in_frustum=carve, allocation_samples_per_block=samples_per_block
    )


def dense_grids(volume: SparseTsdfVolume, box=(np.full(3, -0.3), np.full(3, 0.3))):
    return volume.to_dense(box).grids()


def assert_same_blocks(volume: SparseTsdfVolume, reference: SparseTsdfVolume, atol: float = 1e-3) -> None:
    """Every block of `reference` is in `volume` with the same TSDF, weight and colour. `volume` may hold more
    blocks (ones a keyframe since taken out allocated): the band sampling can miss a block a view sees as a
    sliver, so such blocks are not worth the bookkeeping of freeing them."""
    rows = torch.arange(reference.num_blocks)
    keys = reference.index.keys_by_row()[rows]
    found = volume.index.lookup(keys)
    assert bool((found >= 0).all())
    np.testing.assert_allclose(volume.weight[found].numpy(), reference.weight[rows].numpy(), atol=atol)
    np.testing.assert_allclose(volume.tsdf(found).numpy(), reference.tsdf(rows).numpy(), atol=atol)
    np.testing.assert_allclose(volume.mean_colour(found).numpy(), reference.mean_colour(rows).numpy(), atol=100 * atol)


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    return [sphere_frame(T, float(k)) for k, T in enumerate(views(6))]


def integrate_all(volume: SparseTsdfVolume, frames: list[Frame]) -> SparseTsdfVolume:
    for f in frames:
        view = DepthView.of(f, CPU)
        volume.integrate(view, view.depth > 0)
    return volume


@pytest.mark.parametrize("samples_per_block, allocated", [(3.0, 0.99), (8.0, 1.0)])
def test_sparse_volume_matches_the_dense_one_where_both_observe(frames, samples_per_block, allocated):
    """Blocks seen only as slivers between sampled pixels may be missed; denser sampling finds all."""
    sparse = integrate_all(sphere_volume(samples_per_block=samples_per_block), frames)
    spec = VolumeSpec(np.full(3, -0.32), VOXEL, (64, 64, 64))
    dense = TsdfVolume(spec, 4.0, CPU)
    for f in frames:
        dense.integrate(f.depth_m, f.rgb, K, f.T_world_camera, np.isfinite(f.depth_m), free_space_weight=0.0)
    d_tsdf, d_weight, d_colour = dense.grids()
    s_tsdf, s_weight, s_colour = sparse.to_dense((spec.origin, spec.origin + VOXEL * (np.array(spec.shape) - 0.5))).grids()
    assert s_tsdf.shape == d_tsdf.shape
    band = (d_weight > 0) & (np.abs(d_tsdf) < 0.999)  # the truncation band, where the surface is
    assert band.sum() > 5000
    # the band's voxels are allocated, with the same readings: float32 against float64 projection
    assert (s_weight[band] > 0).mean() >= allocated
    both = band & (s_weight > 0)
    assert np.mean(s_weight[both] == d_weight[both]) >= allocated - 0.01
    assert np.median(np.abs(s_tsdf[both] - d_tsdf[both])) < 1e-4
    # colour is the plain mean of the band's readings: the green channel was the same everywhere
    coloured = s_colour[both][:, 1] > 0
    assert coloured.mean() > 0.98 and np.abs(s_colour[both][coloured, 1] - GREY).max() < 1e-3


def test_mean_is_order_free_and_a_keyframe_comes_out_exactly(frames):
    forward = integrate_all(sphere_volume(), frames)
    backward = integrate_all(sphere_volume(), frames[::-1])
    f_grids, b_grids = dense_grids(forward), dense_grids(backward)
    for a, b in zip(f_grids, b_grids, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    # take the third view out again: as if it had never been fused
    view = DepthView.of(frames[2], CPU)
    forward.integrate(view, view.depth > 0, sign=-1)
    without = dense_grids(integrate_all(sphere_volume(), frames[:2] + frames[3:]))
    taken_out = dense_grids(forward)
    np.testing.assert_allclose(taken_out[1], without[1], atol=1e-4)  # weights
    observed = without[1] > 0
    np.testing.assert_allclose(taken_out[0][observed], without[0][observed], atol=1e-4)
    np.testing.assert_allclose(taken_out[2][observed], without[2][observed], atol=1e-2)
    assert np.all(taken_out[0][~observed] == 1.0)  # voxels only that view saw are unobserved again


def keyframes_of(frames: list[Frame]) -> list[Keyframe]:
    return [Keyframe(k, f, {1: 1}) for k, f in enumerate(frames)]


def test_live_map_one_keyframe_at_a_time_equals_fusing_all_at_once(frames):
    """The carving object volume allocates blocks as views arrive: the ones found late catch up on the
    views fused before them, so the result is the batch fusion's."""
    config = TsdfConfig(object_voxel_m=VOXEL, background_voxel_m=0.04)
    live = LiveMap(config, CPU)
    keyframes = [replace(kf, instance_to_object={1: 1, 2: 1}) for kf in two_object_keyframes(frames)]
    for k in range(1, len(keyframes) + 1):
        live.sync(keyframes[:k])
    for volume_id in (1, BACKGROUND_ID):  # background: instance 3
        batch = fuse_volume(make_volume(config, volume_id, CPU), volume_id, keyframes, CPU)
        incremental = live.volumes[volume_id].volume
        assert incremental.num_blocks == batch.num_blocks > 0
        assert_same_blocks(incremental, batch)
    assert live.holds(1, keyframes) and not live.holds(1, keyframes[:-1])


def two_object_keyframes(frames: list[Frame]) -> list[Keyframe]:
    """Each view shows the sphere's left half as instance 1 and its right half as instance 2 (objects 1 and 2),
    plus a third object (instance 3) on a few rows."""
    out = []
    for k, f in enumerate(frames):
        instance = f.instance.copy()
        seen = instance > 0
        instance[seen & (np.arange(K.width)[None, :] >= K.width // 2)] = 2
        instance[seen & (np.arange(K.height)[:, None] < K.height // 3)] = 3
        out.append(Keyframe(k, replace(f, instance=instance), {1: 1, 2: 2, 3: 3}))
    return out


def test_a_merge_refuses_only_the_merged_objects(frames):
    config = TsdfConfig(object_voxel_m=VOXEL, background_voxel_m=0.04)
    live = LiveMap(config, CPU)
    keyframes = two_object_keyframes(frames)
    for k in range(1, len(keyframes) + 1):
        live.sync(keyframes[:k])
    untouched = {oid: live.volumes[oid].integrations for oid in (3, BACKGROUND_ID)}
    merged = [replace(kf, instance_to_object={1: 1, 2: 1, 3: 3}) for kf in keyframes]  # association merged 2 into 1
    report = live.sync(merged)
    assert report.dropped_volumes == [2] and report.touched == {1}
    assert {oid: live.volumes[oid].integrations for oid in (3, BACKGROUND_ID)} == untouched
    assert_same_blocks(live.volumes[1].volume, fuse_volume(make_volume(config, 1, CPU), 1, merged, CPU))


def test_evicted_keyframes_are_taken_out_of_the_live_map(frames):
    config = TsdfConfig(object_voxel_m=VOXEL, background_voxel_m=0.04)
    live = LiveMap(config, CPU)
    keyframes = keyframes_of(frames)
    live.sync(keyframes)
    kept = keyframes[1:4]
    report = live.sync(kept)
    assert report.removed == 2 * 3 and report.integrated == 0  # three keyframes out of the object and the background
    assert_same_blocks(live.volumes[1].volume, fuse_volume(make_volume(config, 1, CPU), 1, kept, CPU))


def test_block_marching_cubes_matches_skimage_and_closes_the_sphere(frames):
    volume = integrate_all(sphere_volume(), frames)
    vertices, faces, colours = extract_block_mesh(volume, min_weight=0.5)
    dense = volume.to_dense()
    tsdf, weight, _ = dense.grids()
    ref_vertices, ref_faces = marching_cubes(tsdf, weight, dense.spec, 0.5)
    # a cube is marched only with all eight corners observed; the dense mesher drops faces less strictly
    assert abs(len(faces) - len(ref_faces)) < 0.05 * len(ref_faces)
    from scipy.spatial import cKDTree

    assert np.percentile(cKDTree(ref_vertices).query(vertices)[0], 99) < 1e-4
    r = np.linalg.norm(vertices, axis=1)
    assert np.median(np.abs(r - RADIUS)) < 0.005
    tri = vertices[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert ((normals * tri.mean(axis=1)).sum(axis=1) > 0).mean() > 0.99  # outward
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, uses = np.unique(edges, axis=0, return_counts=True)
    assert uses.max() == 2 and (uses == 1).mean() < 0.05  # welded, manifold, open only where unobserved (the poles)
    assert np.abs(colours[:, 1].astype(int) - GREY).max() <= 1  # the green channel was constant


def test_incremental_meshing_remarches_changed_blocks_only(frames):
    volume = sphere_volume()
    mesher = BlockMesher(volume, min_weight=0.5)
    integrate_all(volume, frames[:5])
    mesher.mesh()
    first = mesher.marched_blocks
    assert first == volume.num_blocks
    mesher.mesh()
    assert mesher.marched_blocks == 0  # nothing changed
    integrate_all(volume, frames[5:])
    vertices, faces, _ = mesher.mesh()
    assert 0 < mesher.marched_blocks < volume.num_blocks
    full_vertices, full_faces, _ = extract_block_mesh(volume, 0.5)
    assert len(faces) == len(full_faces)
    np.testing.assert_array_equal(np.sort(vertices, axis=0), np.sort(full_vertices, axis=0))
    as_sets = {tuple(sorted(map(tuple, np.round(vertices[f], 6)))) for f in faces}
    full_sets = {tuple(sorted(map(tuple, np.round(full_vertices[f], 6)))) for f in full_faces}
    assert as_sets == full_sets


def test_a_volume_too_large_for_int32_edge_names_meshes_the_same_with_int64(frames, monkeypatch):
    volume = integrate_all(sphere_volume(), frames)
    narrow = extract_block_mesh(volume, 0.5)
    pieces = block_mesh.march_blocks(volume, torch.arange(volume.num_blocks), 0.5)
    assert pieces.face_edges.dtype == torch.int32 and pieces.vertex_block.dtype == torch.int32
    monkeypatch.setattr(block_mesh, "index_dtype", lambda volume: torch.int64)
    pieces = block_mesh.march_blocks(volume, torch.arange(volume.num_blocks), 0.5)
    assert pieces.face_edges.dtype == torch.int64 and pieces.vertex_edge.dtype == torch.int64
    wide = extract_block_mesh(volume, 0.5)
    for a, b in zip(narrow, wide, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_sign_change_prefilter_agrees_for_a_few_blocks_and_for_the_whole_map(frames):
    """may_cross reads every block's flags in place for most of the map, and only the blocks it needs for a few."""
    volume = integrate_all(sphere_volume(), frames)
    rows = torch.arange(volume.num_blocks)
    whole = block_mesh.may_cross(volume, rows, 0.5)
    assert 0 < int(whole.sum()) < volume.num_blocks
    few = rows[:: max(1, volume.num_blocks // 5)][:5]
    assert 8 * few.numel() < volume.num_blocks  # the other path
    assert torch.equal(block_mesh.may_cross(volume, few, 0.5), whole[few])


def test_the_int32_limit_of_edge_names_is_where_int64_takes_over():
    from types import SimpleNamespace

    limit = torch.iinfo(torch.int32).max // (8**3 * 3)  # blocks of 8^3 whose edges int32 can still name
    for blocks, dtype in ((limit, torch.int32), (limit + 1, torch.int64)):
        volume = SimpleNamespace(coords=torch.empty((blocks, 3), dtype=torch.int8), block_voxels=8)
        assert block_mesh.index_dtype(volume) == dtype


def test_the_kept_edge_table_grows_with_the_map_and_leaves_no_stale_entries(frames):
    volume = SparseTsdfVolume(VOXEL, 4.0, 8, CPU, initial_blocks=16)  # storage that has to grow
    integrate_all(volume, frames[:1])
    first = extract_block_mesh(volume, 0.5)
    small = block_mesh._EDGE_TABLES[volume].numel()
    assert small >= volume.weight.numel() * 3
    integrate_all(volume, frames[1:])
    grown_storage = volume.weight.numel() * 3 > small
    full = extract_block_mesh(volume, 0.5)  # a larger map: the table grows (or still covers the storage)
    assert block_mesh._EDGE_TABLES[volume].numel() >= volume.weight.numel() * 3
    assert grown_storage  # the sphere's frames outgrow the first frame's storage
    fresh = block_mesh.weld(block_mesh.march_blocks(volume, torch.arange(volume.num_blocks), 0.5))  # its own table
    for a, b in zip(full, fresh, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(first[1]) < len(full[1])
    # pieces missing a vertex (inconsistent): the faces that name its edge go, whatever the kept table held
    pieces = block_mesh.march_blocks(volume, torch.arange(volume.num_blocks), 0.5)
    gone = pieces.vertex_edge[0]
    named = (pieces.face_edges == gone).any(dim=1)
    assert named.any()
    keep = torch.arange(1, pieces.vertex_edge.numel())
    broken = block_mesh.MeshPieces(
        pieces.vertex_block[keep],
        pieces.vertex_edge[keep],
        pieces.positions[keep],
        pieces.colours[keep],
        pieces.face_block,
        pieces.face_edges,
    )
    _, faces, _ = block_mesh.weld(broken, volume)  # through the volume's kept table
    assert len(faces) == len(full[1]) - int(named.sum())


def test_the_live_mesh_is_read_only(frames):
    mesher = BlockMesher(integrate_all(sphere_volume(), frames[:3]), min_weight=0.5)
    vertices, faces, colours = mesher.mesh()
    with pytest.raises(ValueError):
        vertices[0, 0] = 1.0  # it may share memory with the pieces the mesher keeps


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_fuses_and_meshes_as_the_cpu_does(frames):
    cuda = torch.device("cuda")
    on_cpu = integrate_all(SparseTsdfVolume(VOXEL, 4.0, 8, CPU), frames[:3])
    on_gpu = SparseTsdfVolume(VOXEL, 4.0, 8, cuda)
    for i, frame in enumerate(frames[:3]):
        view = DepthView.of(frame, cuda, i)
        on_gpu.integrate(view, view.depth > 0)
    rows = torch.arange(on_cpu.num_blocks)
    found = on_gpu.index.lookup(on_cpu.index.keys_by_row()[rows].to(cuda)).cpu()
    assert on_gpu.num_blocks == on_cpu.num_blocks and bool((found >= 0).all())
    np.testing.assert_allclose(on_gpu.weight[found.to(cuda)].cpu().numpy(), on_cpu.weight[rows].numpy(), atol=1e-5)
    np.testing.assert_allclose(on_gpu.colour[found.to(cuda)].cpu().numpy(), on_cpu.colour[rows].numpy(), atol=1e-3)
    cpu_mesh, gpu_mesh = extract_block_mesh(on_cpu, 0.5), extract_block_mesh(on_gpu, 0.5)
    assert abs(len(cpu_mesh[1]) - len(gpu_mesh[1])) <= 0.001 * len(cpu_mesh[1])
    mesher = BlockMesher(on_gpu, 0.5)
    assert len(mesher.mesh()[1]) == len(gpu_mesh[1])


def test_meshes_crop_to_an_objects_box(frames):
    volume = integrate_all(sphere_volume(), frames)
    lo, hi = np.array([-0.3, -0.3, 0.0]), np.array([0.3, 0.3, 0.3])
    vertices, faces, _ = extract_block_mesh(volume, 0.5, (lo, hi))
    assert len(faces) > 100 and vertices[:, 2].min() > -VOXEL


def test_a_run_gets_the_live_volume_brought_to_its_own_keyframes(frames):
    """The live map may be a keyframe ahead of a run (or behind): the run's copy takes the difference out or
    in, and the live map itself is left as it was."""
    config = TsdfConfig(object_voxel_m=VOXEL, background_voxel_m=0.04)
    live = LiveMap(config, CPU)
    keyframes = keyframes_of(frames)
    live.sync(keyframes[:5])
    before = live.volumes[1].volume.tsdf_sum.clone()
    for run_keyframes in (keyframes[:4], keyframes):
        copy = live.volume_for(1, run_keyframes, config)
        assert_same_blocks(copy, fuse_volume(make_volume(config, 1, CPU), 1, run_keyframes, CPU))
    assert torch.equal(live.volumes[1].volume.tsdf_sum, before) and live.holds(1, keyframes[:5])


def test_a_changed_setting_is_not_served_from_the_old_live_volumes(frames):
    config = TsdfConfig(object_voxel_m=VOXEL, background_voxel_m=0.04)
    live = LiveMap(config, CPU)
    keyframes = keyframes_of(frames)
    live.sync(keyframes)
    finer = TsdfConfig(object_voxel_m=VOXEL / 2, background_voxel_m=0.04)
    assert live.volume_for(1, keyframes, finer) is None  # a run with the new setting fuses its own
    live.config = finer
    live.sync(keyframes)  # the live map fuses that volume again with it
    assert live.volumes[1].volume.voxel_size == VOXEL / 2 and live.volume_for(1, keyframes, finer) is not None


def test_a_copy_is_independent_of_its_volume(frames):
    volume = integrate_all(sphere_volume(), frames[:3])
    copy = volume.copy()
    weights = copy.weight[: copy.num_blocks].clone()
    integrate_all(volume, frames[3:])
    assert torch.equal(copy.weight[: copy.num_blocks], weights) and copy.num_blocks < volume.num_blocks


def test_readings_beyond_the_maximum_depth_are_not_fused(frames):
    near = SparseTsdfVolume(VOXEL, 4.0, 8, CPU, max_depth_m=0.9)  # the sphere's front is about 0.85-1 m away
    integrate_all(near, frames)
    view = DepthView.of(frames[0], CPU)
    beyond = (view.depth > 0.9).sum()
    assert beyond > 0 and near.num_blocks > 0
    far_only = SparseTsdfVolume(VOXEL, 4.0, 8, CPU, max_depth_m=0.5)  # nothing is that near
    integrate_all(far_only, frames)
    assert far_only.num_blocks == 0
    full = integrate_all(sphere_volume(), frames)
    assert near.num_blocks < full.num_blocks
    assert far_only.to_dense((np.full(3, -0.1), np.full(3, 0.1))).weight.sum() == 0  # an empty box, not None
    # the cut is the same as having no reading there: voxels of near blocks that see far pixels are not updated
    cut = [replace(f, depth_m=np.where(f.depth_m > 0.9, 0.0, f.depth_m).astype(np.float32)) for f in frames]
    without_far = integrate_all(SparseTsdfVolume(VOXEL, 4.0, 8, CPU), cut)
    assert without_far.num_blocks == near.num_blocks
    assert_same_blocks(near, without_far, atol=0.0)


def test_skipping_blocks_without_a_sign_change_loses_no_face(frames, monkeypatch):
    from dprecon_ros.core.fusion import block_mesh

    volume = integrate_all(sphere_volume(), frames)
    vertices, faces, _ = extract_block_mesh(volume, 0.5)
    monkeypatch.setattr(block_mesh, "may_cross", lambda v, rows, w: torch.ones(rows.numel(), dtype=torch.bool))
    all_vertices, all_faces, _ = extract_block_mesh(volume, 0.5)
    assert len(faces) == len(all_faces)
    np.testing.assert_array_equal(np.sort(vertices, axis=0), np.sort(all_vertices, axis=0))
