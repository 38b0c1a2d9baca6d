"""The live fusion thread: a failing pass clears the live map and is counted, and the thread goes on."""

from __future__ import annotations

import torch

from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.fusion.config import TsdfConfig
from dprecon_ros.core.fusion.live_map import LiveMap
from dprecon_ros.core.mapping.live_fusion import LiveFusion

WAIT_S = 10.0


class Owner:
    """A LiveSource with no keyframes."""

    def live_snapshot(self):
        return [], [], 0

    def map_epoch(self) -> int:
        return 0

    def mesh_min_weight(self) -> float:
        return 0.5


class FailingMap(LiveMap):
    """Raises the queued errors, one per sync, then syncs normally."""

    def __init__(self, errors: list[Exception]) -> None:
        super().__init__(TsdfConfig(), torch.device("cpu"))
        self.errors, self.cleared = errors, 0

    def sync(self, keyframes, check_cancelled=None):
        if self.errors:
            raise self.errors.pop(0)
        return super().sync(keyframes, check_cancelled)

    def clear(self) -> None:
        self.cleared += 1
        super().clear()


def test_a_failed_pass_is_counted_the_map_cleared_and_the_next_pass_runs():
    owner, counters = Owner(), EventCounters()
    live = FailingMap([ValueError("a bug"), RuntimeError("CUDA out of memory"), RuntimeError("another bug")])
    fusion = LiveFusion(TsdfConfig(), live, owner, counters).start()
    try:
        for _ in range(4):
            fusion.notify()
            assert fusion.wait_idle(WAIT_S)
        assert counters.get("live_fusion_failed") == 2  # the ValueError and the RuntimeError that is not memory
        assert counters.get("gpu_out_of_memory") == 1
        assert live.cleared == 3 and fusion.passes == 1  # only the last pass got through
        assert fusion._thread.is_alive()
    finally:
        assert fusion.stop(WAIT_S)
