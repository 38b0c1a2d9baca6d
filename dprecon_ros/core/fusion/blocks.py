"""Where the voxel blocks of a sparse volume live: block coordinates to storage rows, in torch (CPU or CUDA).

torch has no hash map, so the index keeps its block keys sorted and looks them up with `searchsorted`: one
vectorised call per frame on either device, with no Python loop over blocks.
"""

from __future__ import annotations

import torch

KEY_BITS = 20  # bits per axis of a packed voxel coordinate (block keys pack block coordinates the same way)
KEY_BIAS = 1 << (KEY_BITS - 1)  # coordinates in [-KEY_BIAS, KEY_BIAS) are representable
AXES = 3


def pack(coords: torch.Tensor) -> torch.Tensor:
    """Integer (..., 3) coordinates to one int64 key each; keys sort like (x, y, z) tuples."""
    c = coords.to(torch.int64) + KEY_BIAS
    return (c[..., 0] << (2 * KEY_BITS)) | (c[..., 1] << KEY_BITS) | c[..., 2]


def unpack(keys: torch.Tensor) -> torch.Tensor:
    mask = (1 << KEY_BITS) - 1
    return torch.stack([(keys >> (2 * KEY_BITS)) & mask, (keys >> KEY_BITS) & mask, keys & mask], dim=-1) - KEY_BIAS


class BlockIndex:
    """Block keys -> storage rows. Rows are handed out in insertion order and never move."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.sorted_keys = torch.zeros(0, dtype=torch.int64, device=device)
        self.sorted_rows = torch.zeros(0, dtype=torch.int64, device=device)

    def __len__(self) -> int:
        return int(self.sorted_keys.numel())

    def lookup(self, keys: torch.Tensor) -> torch.Tensor:
        """The row of each key, -1 where the block is not allocated."""
        if len(self) == 0 or keys.numel() == 0:
            return torch.full(keys.shape, -1, dtype=torch.int64, device=self.device)
        pos = torch.searchsorted(self.sorted_keys, keys).clamp(max=len(self) - 1)
        found = self.sorted_keys[pos] == keys
        return torch.where(found, self.sorted_rows[pos], torch.full_like(pos, -1))

    def insert(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of unique `keys`, allocating the missing ones; also the mask of keys that were new."""
        rows = self.lookup(keys)
        new = rows < 0
        count = int(new.sum())
        if count:
            rows[new] = torch.arange(len(self), len(self) + count, device=self.device)
            merged_keys = torch.cat([self.sorted_keys, keys[new]])
            merged_rows = torch.cat([self.sorted_rows, rows[new]])
            order = torch.argsort(merged_keys)
            self.sorted_keys, self.sorted_rows = merged_keys[order], merged_rows[order]
        return rows, new

    def keys_by_row(self) -> torch.Tensor:
        """The key of every row, in row order."""
        out = torch.empty_like(self.sorted_keys)
        out[self.sorted_rows] = self.sorted_keys
        return out
