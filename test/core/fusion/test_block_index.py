"""The block index: block keys to storage rows, kept sorted for searchsorted lookups."""

from __future__ import annotations

import numpy as np
import torch

from dprecon_ros.core.fusion.blocks import BlockIndex, pack, unique_keys, unpack


def test_inserted_blocks_keep_their_rows_and_the_keys_stay_sorted():
    rng = np.random.default_rng(0)
    index, rows_of = BlockIndex(torch.device("cpu")), {}
    for _ in range(20):  # batches of distinct keys overlapping earlier ones, in random order
        coords = torch.as_tensor(rng.integers(-40, 40, size=(200, 3)))
        keys = unique_keys(pack(coords))
        keys = keys[torch.as_tensor(rng.permutation(len(keys)))]
        rows, new = index.insert(keys)
        for key, row, fresh in zip(keys.tolist(), rows.tolist(), new.tolist(), strict=True):
            assert fresh == (key not in rows_of)
            assert rows_of.setdefault(key, row) == row  # a block keeps its row
        keys_sorted = index.sorted_keys
        assert bool((keys_sorted[1:] > keys_sorted[:-1]).all())
    assert sorted(rows_of.values()) == list(range(len(rows_of)))  # rows handed out densely, in order
    everything = torch.tensor(list(rows_of))
    assert index.lookup(everything).tolist() == list(rows_of.values())
    assert index.lookup(pack(torch.tensor([[1000, 0, 0]]))).tolist() == [-1]
    assert torch.equal(index.keys_by_row()[torch.tensor(list(rows_of.values()))], everything)


def test_unique_keys_match_torch_unique_and_round_trip():
    coords = torch.as_tensor(np.random.default_rng(1).integers(-5, 5, size=(5000, 3)))
    keys = pack(coords)
    assert torch.equal(unique_keys(keys), torch.unique(keys))
    assert torch.equal(unpack(pack(coords)), coords)
