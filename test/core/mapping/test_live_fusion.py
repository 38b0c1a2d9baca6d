"""The live fusion thread: a failing pass clears the live map and is counted, and the thread goes on; at
interpreter exit every fusion thread is joined, also one whose owner and LiveFusion were already collected."""

from __future__ import annotations

import gc
import threading
import weakref

import torch

from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.fusion.config import TsdfConfig
from dprecon_ros.core.fusion.live_map import LiveMap
from dprecon_ros.core.mapping import live_fusion
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


def pause_threads_at_their_end(paused: threading.Event, release: threading.Event):
    """A `threading.settrace` hook that holds each thread started under it where `Thread.run` returns: its
    target (and all the target held) is gone, the thread itself still runs."""

    def on_call(frame, event, arg):
        if event != "call" or frame.f_code.co_name != "run" or frame.f_globals.get("__name__") != "threading":
            return None

        def in_run(frame, event, arg):
            if event == "return":
                paused.set()
                release.wait(WAIT_S)
            return in_run

        return in_run

    return on_call


def exit_hook_of_this_test_only(monkeypatch) -> None:
    """`_stop_all` acting on the fusions this test starts, not on those of the rest of the process."""
    monkeypatch.setattr(live_fusion, "_RUNNING", weakref.WeakSet())
    monkeypatch.setattr(live_fusion, "_THREADS", set())


def test_at_exit_running_fusions_are_stopped_and_joined(monkeypatch):
    exit_hook_of_this_test_only(monkeypatch)
    monkeypatch.setattr(live_fusion, "EXIT_JOIN_S", 2.0)
    owners = [Owner(), Owner()]  # kept alive: the fusions are running, not winding down
    fusions = [LiveFusion(TsdfConfig(), LiveMap(TsdfConfig(), torch.device("cpu")), o, EventCounters()).start() for o in owners]
    assert {f._thread for f in fusions} == live_fusion._THREADS
    live_fusion._stop_all()
    assert not any(f._thread.is_alive() for f in fusions)


def test_a_fusion_whose_thread_failed_to_start_does_not_break_the_exit_hook(monkeypatch):
    exit_hook_of_this_test_only(monkeypatch)
    fusion = LiveFusion(TsdfConfig(), LiveMap(TsdfConfig(), torch.device("cpu")), Owner(), EventCounters())

    def no_thread():
        raise RuntimeError("can't start new thread")

    fusion._thread.start = no_thread
    try:
        fusion.start()
    except RuntimeError:
        pass
    assert not live_fusion._THREADS
    live_fusion._stop_all()  # joining a thread never started would raise here


def test_at_exit_the_thread_of_a_collected_owner_is_joined_while_it_winds_down(monkeypatch):
    # A mapper dropped just before the interpreter exits (the offline tool's) stops its fusion thread, which then
    # winds down with no LiveFusion left to find it by; finalising the interpreter under it aborts the process.
    exit_hook_of_this_test_only(monkeypatch)
    paused, release = threading.Event(), threading.Event()
    threading.settrace(pause_threads_at_their_end(paused, release))
    try:
        owner = Owner()
        fusion = LiveFusion(TsdfConfig(), LiveMap(TsdfConfig(), torch.device("cpu")), owner, EventCounters()).start()
    finally:
        threading.settrace(None)
    thread, gone = fusion._thread, weakref.ref(fusion)
    original_join = thread.join

    def join(timeout=None):  # the exit hook joining this thread lets it finish
        release.set()
        original_join(timeout)

    thread.join = join
    try:
        del fusion, owner  # the owner's finaliser stops the thread
        gc.collect()
        assert paused.wait(WAIT_S)
        gc.collect()
        assert gone() is None and thread.is_alive()
        live_fusion._stop_all()
        assert not thread.is_alive()
    finally:
        release.set()
        original_join(WAIT_S)
