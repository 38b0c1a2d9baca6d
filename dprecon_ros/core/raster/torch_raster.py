"""A rasteriser in plain torch, for the CPU (and CUDA without nvdiffrast), with nvdiffrast's conventions.

Triangles are rasterised in homogeneous coordinates (Olano and Greer): for a pixel p = (x, y, 1) in NDC and a
triangle whose clip vertices give the columns of M = [x; y; w], a = M⁻¹ p is proportional to the
perspective-correct barycentrics, with factor 1 / w of the surface point. The pixel is covered where every
a_i ≥ 0, which also rejects points behind the camera, so triangles that cross the camera plane need no
clipping. Candidate pixels are each triangle's screen box, taken from its part in front of the near plane; the nearest z/w in [−1, 1] wins, ties to the higher triangle id.

Gradients flow through `interpolate` and `texture` to attributes and textures, not from the raster to the
positions (texture fitting never moves geometry).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PAIRS_PER_CHUNK = 1 << 22  # (triangle, pixel) candidates tested at once: bounds memory at ~100 MB per chunk
SINGULAR_EPS = 1e-12  # |det M| below this: the triangle is seen edge-on and covers nothing
W_EPS = 1e-9  # a clip w at or below this is on or behind the camera plane


class TorchRasteriser:
    name = "torch"

    def rasterize(self, clip: torch.Tensor, faces: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        height, width = size
        out = torch.zeros((clip.shape[0], height, width, 4), dtype=torch.float32, device=clip.device)
        faces = faces.long()
        with torch.no_grad():
            for b in range(clip.shape[0]):
                out[b] = _rasterize_one(clip[b].float(), faces, height, width)
        return out

    def interpolate(self, attributes: torch.Tensor, rast: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = rast.shape
        if attributes.dim() == 2:
            attributes = attributes.unsqueeze(0).expand(batch, -1, -1)
        tri_id = rast[..., 3].long() - 1
        covered = tri_id >= 0
        corners = faces.long()[tri_id.clamp(min=0)]  # (B, H, W, 3)
        gathered = torch.stack([attributes[b][corners[b]] for b in range(batch)])  # (B, H, W, 3, C)
        u, v = rast[..., 0:1], rast[..., 1:2]
        values = u * gathered[..., 0, :] + v * gathered[..., 1, :] + (1 - u - v) * gathered[..., 2, :]
        return values * covered.unsqueeze(-1)

    def texture(self, image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        if image.shape[0] == 1 and uv.shape[0] > 1:
            image = image.expand(uv.shape[0], -1, -1, -1)
        grid = uv * 2 - 1  # grid_sample: x = -1 is the left edge of texel 0, as uv = 0 is
        sampled = F.grid_sample(image.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="border", align_corners=False)
        return sampled.permute(0, 2, 3, 1)


def _screen_boxes(clip: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, ...]:
    """Per triangle (F, 3, 4): first and last candidate column and row, from the part of the triangle in front
    of the near plane (z ≥ −w; fragments before it are discarded anyway), so a triangle that crosses the
    camera plane gets a finite box."""
    ahead = clip[..., 2] + clip[..., 3]  # >= 0 in front of the near plane
    points = [clip]
    for i, j in ((0, 1), (1, 2), (2, 0)):  # where each edge crosses the near plane (NaN-free: t clamped)
        di, dj = ahead[:, i : i + 1], ahead[:, j : j + 1]
        t = (di / torch.where((di - dj).abs() > 0, di - dj, torch.ones_like(di))).clamp(0, 1)
        crossing = clip[:, i] + t * (clip[:, j] - clip[:, i])
        points.append(torch.where(((di >= 0) != (dj >= 0)), crossing, clip[:, i]).unsqueeze(1))
    candidates = torch.cat(points, dim=1)  # (F, 6, 4)
    valid = (candidates[..., 2] + candidates[..., 3] >= -1e-6 * candidates[..., 3].abs()) & (candidates[..., 3] > W_EPS)
    w = torch.where(valid, candidates[..., 3], torch.ones_like(candidates[..., 3]))
    # pixel j has its centre at NDC (2j + 1) / W - 1, i.e. j = (x + 1) W / 2 - 1/2
    px = (candidates[..., 0] / w + 1) * width / 2 - 0.5
    py = (candidates[..., 1] / w + 1) * height / 2 - 0.5
    inf = torch.full_like(px, float("inf"))
    x0 = torch.ceil(torch.where(valid, px, inf).amin(dim=1)).clamp(0, width)
    x1 = torch.floor(torch.where(valid, px, -inf).amax(dim=1)).clamp(-1, width - 1)
    y0 = torch.ceil(torch.where(valid, py, inf).amin(dim=1)).clamp(0, height)
    y1 = torch.floor(torch.where(valid, py, -inf).amax(dim=1)).clamp(-1, height - 1)
    return x0.long(), x1.long(), y0.long(), y1.long()


def _rasterize_one(clip: torch.Tensor, faces: torch.Tensor, height: int, width: int) -> torch.Tensor:
    device = clip.device
    out = torch.zeros((height * width, 4), dtype=torch.float32, device=device)
    if len(faces) == 0:
        return out.view(height, width, 4)
    tri = clip[faces]  # (F, 3, 4)
    m = torch.stack([tri[..., 0], tri[..., 1], tri[..., 3]], dim=1).double()  # rows x, y, w; columns vertices
    det = torch.linalg.det(m)
    scale = m.abs().amax(dim=(1, 2)).clamp(min=1e-30) ** 3
    usable = (det.abs() > SINGULAR_EPS * scale) & (tri[..., 3] > W_EPS).any(dim=1)
    keep = torch.nonzero(usable).squeeze(1)
    if len(keep) == 0:
        return out.view(height, width, 4)
    m_inv = torch.linalg.inv(m[keep])  # (K, 3, 3)
    z = tri[keep][..., 2].double()  # (K, 3)
    w = tri[keep][..., 3].double()
    x0, x1, y0, y1 = _screen_boxes(tri[keep], height, width)
    box_w = (x1 - x0 + 1).clamp(min=0)
    counts = box_w * (y1 - y0 + 1).clamp(min=0)
    winners_z = torch.full((height * width,), float("inf"), dtype=torch.float64, device=device)
    candidates: list[tuple[torch.Tensor, ...]] = []
    for first, last in _chunks(counts):
        idx = torch.arange(first, last, device=device)
        n = counts[idx]
        if int(n.sum()) == 0:
            continue
        owner = torch.repeat_interleave(idx, n)
        start = torch.cumsum(n, 0) - n
        offset = torch.arange(int(n.sum()), device=device) - torch.repeat_interleave(start, n)
        col = x0[owner] + offset % box_w[owner]
        row = y0[owner] + torch.div(offset, box_w[owner], rounding_mode="floor")
        p = torch.stack(
            [(2 * col + 1).double() / width - 1, (2 * row + 1).double() / height - 1, torch.ones_like(col, dtype=torch.float64)],
            dim=1,
        )
        a = torch.einsum("nij,nj->ni", m_inv[owner], p)
        total = a.sum(dim=1)
        inside = (a >= 0).all(dim=1) & (total > 0)
        bary = a[inside] / total[inside].unsqueeze(1)
        owner, pixel = owner[inside], (row * width + col)[inside]
        depth = (bary * z[owner]).sum(dim=1) / (bary * w[owner]).sum(dim=1)
        in_range = (depth >= -1) & (depth <= 1)
        owner, pixel, depth, bary = owner[in_range], pixel[in_range], depth[in_range], bary[in_range]
        winners_z.scatter_reduce_(0, pixel, depth, reduce="amin")
        candidates.append((owner, pixel, depth, bary))
    if not candidates:
        return out.view(height, width, 4)
    owner, pixel, depth, bary = (torch.cat(c) for c in zip(*candidates, strict=True))
    nearest = depth == winners_z[pixel]
    face_id = keep[owner]
    winner_face = torch.full((height * width,), -1, dtype=torch.long, device=device)
    winner_face.scatter_reduce_(0, pixel[nearest], face_id[nearest], reduce="amax")
    chosen = nearest & (face_id == winner_face[pixel])
    pixel, bary, depth, face_id = pixel[chosen], bary[chosen], depth[chosen], face_id[chosen]
    out[pixel, 0] = bary[:, 0].float()
    out[pixel, 1] = bary[:, 1].float()
    out[pixel, 2] = depth.float()
    out[pixel, 3] = (face_id + 1).float()
    return out.view(height, width, 4)


def _chunks(counts: torch.Tensor) -> list[tuple[int, int]]:
    """Consecutive triangle ranges of at most PAIRS_PER_CHUNK candidates (a single larger triangle alone)."""
    ends = torch.cumsum(counts, 0)
    bounds: list[tuple[int, int]] = []
    first, base = 0, 0
    n = len(counts)
    while first < n:
        last = int(torch.searchsorted(ends, base + PAIRS_PER_CHUNK, right=True))
        last = max(last, first + 1)
        bounds.append((first, last))
        base = int(ends[last - 1])
        first = last
    return bounds
