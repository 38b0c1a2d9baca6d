"""The rasterisers: coverage, perspective-correct barycentrics, depth order, triangles behind the camera,
texture sampling; and the torch rasteriser against nvdiffrast where a CUDA GPU is present."""

import numpy as np
import pytest
import torch
import trimesh

from dprecon_ros.config import DpreconConfig
from dprecon_ros.core.raster import make_rasteriser, project_to_clip, project_to_square_views
from dprecon_ros.core.raster.torch_raster import TorchRasteriser
from dprecon_ros.core.stages.prior.cameras import orbit_cameras
from dprecon_ros.core.types import CameraIntrinsics
from dprecon_ros.testing.raster_scene import look_at

K = CameraIntrinsics(60.0, 60.0, 39.5, 29.5, 80, 60)
NEAR, FAR = 0.05, 20.0


def clip_of(vertices, T=None):
    return project_to_clip(torch.as_tensor(vertices, dtype=torch.float32), np.eye(4) if T is None else T, K, NEAR, FAR)[None]


def pixel_rays():
    """Unit-depth ray per pixel in the camera (OpenCV): (H, W, 3)."""
    u, v = np.meshgrid(np.arange(K.width), np.arange(K.height))
    return np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u, dtype=float)], axis=-1)


def test_a_tilted_quad_gives_the_analytic_depth_and_perspective_correct_attributes():
    # the plane z = 2 + 0.5 x, seen head-on by the identity camera; the attribute is the camera-frame point
    corners = np.array([[-2.0, -2.0, 1.0], [2.0, -2.0, 3.0], [2.0, 2.0, 3.0], [-2.0, 2.0, 1.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
    r = TorchRasteriser()
    rast = r.rasterize(clip_of(corners), faces, (K.height, K.width))
    assert bool((rast[0, ..., 3] > 0).all())  # the quad fills the view
    points = r.interpolate(torch.as_tensor(corners, dtype=torch.float32), rast, faces)[0].numpy()
    rays = pixel_rays()
    depth = 2.0 / (1.0 - 0.5 * rays[..., 0])  # z = 2 + 0.5 x with x = ray_x z
    assert np.allclose(points[..., 2], depth, atol=1e-4)
    assert np.allclose(points, rays * depth[..., None], atol=1e-4)  # the interpolated point lies on each pixel's ray
    zndc = rast[0, ..., 2].numpy()
    assert np.allclose(2 * FAR * NEAR / ((FAR + NEAR) - zndc * (FAR - NEAR)), depth, atol=1e-3)


def test_the_nearer_surface_wins_whatever_the_face_order():
    near = np.array([[-1, -1, 2.0], [1, -1, 2.0], [0, 1, 2.0]])
    far = np.array([[-3, -3, 4.0], [3, -3, 4.0], [0, 3, 4.0]])
    for order in ((near, far), (far, near)):
        vertices = np.concatenate(order)
        faces = torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32)
        rast = TorchRasteriser().rasterize(clip_of(vertices), faces, (K.height, K.width))
        near_id = 1 if order[0] is near else 2
        centre = rast[0, int(K.cy), int(K.cx)]
        assert int(centre[3]) == near_id
        ids = set(np.unique(rast[0, ..., 3].numpy()).astype(int))
        assert ids == {0, 1, 2}


def test_a_floor_under_the_camera_crossing_its_plane_is_drawn_without_clipping():
    # a camera 1 m above a large floor, looking level: the floor extends behind the camera
    T = look_at(np.array([0.0, 0.0, 1.0]), np.array([5.0, 0.0, 1.0]))
    floor = np.array([[-50, -50, 0.0], [50, -50, 0.0], [50, 50, 0.0], [-50, 50, 0.0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
    r = TorchRasteriser()
    rast = r.rasterize(clip_of(floor, T), faces, (K.height, K.width))
    covered = (rast[0, ..., 3] > 0).numpy()
    rows = np.arange(K.height)
    assert not covered[rows < K.cy].any()  # nothing above the horizon
    below = rows > K.cy + 1
    depth_expected = K.fy / (rows[below] - K.cy)  # the floor 1 m down meets row v at z = fy / (v - cy)
    reachable = depth_expected < FAR
    assert covered[below][reachable].all()
    world = r.interpolate(torch.as_tensor(floor, dtype=torch.float32), rast, faces)[0].numpy()
    assert np.allclose(world[below][reachable][:, :, 2], 0.0, atol=1e-4)
    x = world[below][reachable][:, int(K.cx), 0]
    assert np.allclose(x, depth_expected[reachable], rtol=1e-3)


def test_textures_are_sampled_at_texel_centres_with_row_zero_at_v_zero():
    image = torch.arange(12, dtype=torch.float32).view(1, 3, 4, 1)  # 3 rows, 4 columns
    r = TorchRasteriser()
    u = (torch.arange(4) + 0.5) / 4
    v = (torch.arange(3) + 0.5) / 3
    uv = torch.stack(torch.meshgrid(u, v, indexing="xy"), dim=-1)[None]
    assert torch.allclose(r.texture(image, uv), image, atol=1e-5)
    between = r.texture(image, torch.tensor([[[[0.25, 0.5 / 3]]]]))  # halfway between texels (0, 0) and (0, 1)
    assert float(between) == pytest.approx(0.5)


def test_textures_clamp_at_their_border():
    image = torch.arange(12, dtype=torch.float32).view(1, 3, 4, 1)
    outside = torch.tensor([[[[-0.5, -0.5], [1.5, 1.5], [1.5, -0.5]]]])  # beyond each corner
    assert torch.allclose(TorchRasteriser().texture(image, outside).flatten(), torch.tensor([0.0, 11.0, 3.0]), atol=1e-5)


def test_make_rasteriser_on_the_cpu_is_the_torch_one():
    assert make_rasteriser("cpu").name == "torch"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (nvdiffrast)")
def test_torch_and_nvdiffrast_agree():
    r_gpu = make_rasteriser("cuda")
    assert r_gpu.name == "nvdiffrast"
    mesh = trimesh.creation.icosphere(4)
    mesh.vertices += np.random.default_rng(0).normal(0, 0.01, mesh.vertices.shape)
    views = [look_at(np.array([3 * np.cos(a), 3 * np.sin(a), 1.0]), np.zeros(3)) for a in np.linspace(0, 2 * np.pi, 5)[:4]]
    clip = torch.cat([clip_of(mesh.vertices, T) for T in views])
    faces = torch.as_tensor(mesh.faces, dtype=torch.int32)
    cpu = TorchRasteriser().rasterize(clip, faces, (K.height, K.width))
    gpu = r_gpu.rasterize(clip.cuda(), faces.cuda(), (K.height, K.width)).cpu()
    covered_cpu, covered_gpu = cpu[..., 3] > 0, gpu[..., 3] > 0
    both = covered_cpu & covered_gpu
    assert float((covered_cpu == covered_gpu).float().mean()) > 0.995  # silhouettes differ by edge rules only
    same = both & (cpu[..., 3] == gpu[..., 3])
    # at pixels on an edge between two triangles each rasteriser may pick either (seen: 3.7 % of the pixels of
    # this small mesh); where they pick the same one, barycentrics and depth agree
    assert float(same.sum() / both.sum()) > 0.9
    assert torch.allclose(cpu[same][:, :3], gpu[same][:, :3], atol=1e-3)
    attrs = torch.as_tensor(mesh.vertices, dtype=torch.float32)
    a_cpu = TorchRasteriser().interpolate(attrs, cpu, faces)
    a_gpu = r_gpu.interpolate(attrs.cuda()[None], gpu.cuda(), faces.cuda()).cpu()
    gap = (a_cpu[both] - a_gpu[both]).norm(dim=-1)
    print(
        f"co-covered pixels {int(both.sum())}, same triangle {float(same.sum() / both.sum()):.4f}, surface gap median "
        f"{float(gap.median()):.2e} m, 99th percentile {float(gap.quantile(0.99)):.2e} m, max {float(gap.max()):.2e} m"
    )
    # either triangle at an edge gives the same surface point; a silhouette pixel may show a surface behind instead
    assert float((gap < 2e-3).float().mean()) > 0.99
    tex = torch.rand(1, 16, 16, 3)
    uv = torch.rand(4, K.height, K.width, 2)
    assert torch.allclose(TorchRasteriser().texture(tex, uv), r_gpu.texture(tex.cuda(), uv.cuda()).cpu(), atol=1e-4)


def test_cameras_drawn_on_the_device_project_as_one_camera_at_a_time_does():
    vertices = torch.as_tensor(trimesh.creation.icosphere(2, radius=0.3).vertices, dtype=torch.float32) + torch.tensor([0.5, -0.2, 0.4])
    size = 64
    poses, fovs = orbit_cameras(torch.tensor([0.5, -0.2, 0.4]), 0.3, 6, DpreconConfig().prior, 2, torch.Generator().manual_seed(3))
    together = project_to_square_views(vertices, poses, fovs, size, NEAR, FAR)
    for view, (pose, fov) in enumerate(zip(poses, fovs, strict=True)):
        f = (size / 2) / float(np.tan(float(fov) / 2))
        alone = project_to_clip(vertices, pose.numpy(), CameraIntrinsics(f, f, (size - 1) / 2, (size - 1) / 2, size, size), NEAR, FAR)
        assert torch.allclose(together[view], alone, atol=1e-5, rtol=1e-5), view
