"""The generated dprecon_msgs/action/Reconstruct works end to end: an rclpy ActionServer in another process,
an ActionClient here; feedback, a SUCCEEDED result, and a long goal that is cancelled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.ros

try:
    from dprecon_ros.testing.ros_env import localhost_ros_env
except ImportError:  # before the testing/ package existed
    from dprecon_ros.tools.ros_env import localhost_ros_env

ACTION = "/test_action_server/reconstruct"
# A domain of its own, away from the ones RosGraph counts up from ROS_DOMAIN_ID + 1.
DOMAIN = (int(os.environ["ROS_DOMAIN_ID"]) + 150) % 200 + 1

SERVER_CODE = r"""
import os, sys, time
import rclpy
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from dprecon_msgs.action import Reconstruct

ACTION = sys.argv[1]
FEEDBACK_TOPIC = ACTION + "/_action/feedback"
parent = os.getppid()
context = rclpy.Context()
rclpy.init(context=context, domain_id=int(os.environ["ROS_DOMAIN_ID"]))
node = rclpy.create_node("test_action_server", context=context)


def wait_for_feedback_subscriber(deadline_s=10.0):
    end = time.monotonic() + deadline_s
    while node.count_subscribers(FEEDBACK_TOPIC) < 1 and time.monotonic() < end:
        time.sleep(0.01)


def execute(goal_handle):
    goal = goal_handle.request
    stages = list(goal.stages) or ["fuse", "geometry", "mesh"]
    wait_for_feedback_subscriber()
    start = time.monotonic()
    if goal.force:  # the long run: small steps, cancellable between them
        end = start + 60.0
        step = 0
        while time.monotonic() < end:
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
                return Reconstruct.Result(success=False, message="canceled", duration_s=time.monotonic() - start)
            if step % 10 == 0:
                goal_handle.publish_feedback(
                    Reconstruct.Feedback(stage="geometry", stage_index=1, stage_count=3, progress=min(step / 3000.0, 1.0)))
            step += 1
            time.sleep(0.02)
        goal_handle.abort()
        return Reconstruct.Result(success=False, message="never cancelled")
    for i, stage in enumerate(stages):
        goal_handle.publish_feedback(
            Reconstruct.Feedback(stage=stage, stage_index=i, stage_count=len(stages), progress=(i + 1) / len(stages)))
        time.sleep(0.05)
    goal_handle.succeed()
    return Reconstruct.Result(success=True, message="ran " + ",".join(stages), refitted=2, objects=5, relations=3,
                              duration_s=time.monotonic() - start)


server = ActionServer(
    node, Reconstruct, ACTION, execute_callback=execute,
    goal_callback=lambda request: GoalResponse.ACCEPT,
    cancel_callback=lambda goal_handle: CancelResponse.ACCEPT,  # the default rejects every cancel request
    callback_group=ReentrantCallbackGroup())
executor = MultiThreadedExecutor(num_threads=4, context=context)
executor.add_node(node)
print("server ready", flush=True)
end = time.monotonic() + 120.0
try:
    while rclpy.ok(context=context) and time.monotonic() < end and os.getppid() == parent:
        executor.spin_once(timeout_sec=0.1)
except (KeyboardInterrupt, ExternalShutdownException):
    pass
finally:
    server.destroy()
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=context)
print("server exit", flush=True)
"""


@pytest.fixture
def action_client(tmp_path):
    import rclpy
    from dprecon_msgs.action import Reconstruct
    from rclpy.action import ActionClient
    from rclpy.executors import SingleThreadedExecutor

    log_path = tmp_path / "action_server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER_CODE, ACTION], env=localhost_ros_env(DOMAIN), stdout=log, stderr=subprocess.STDOUT
        )
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN)
    node = rclpy.create_node(f"test_action_client_{DOMAIN}", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    client = ActionClient(node, Reconstruct, ACTION)

    def logs() -> str:
        return "\n--- action server log\n" + log_path.read_text()[-3000:]

    try:
        deadline = time.monotonic() + 10.0
        while not client.server_is_ready() and time.monotonic() < deadline:
            assert proc.poll() is None, logs()
            executor.spin_once(timeout_sec=0.05)
        assert client.server_is_ready(), "action server not discovered in 10 s" + logs()
        yield client, executor, logs
    finally:
        client.destroy()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def wait_future(executor, future, timeout_s: float):
    executor.spin_until_future_complete(future, timeout_sec=timeout_s)
    return future.result() if future.done() else None


def send_goal(client, executor, goal, feedback_callback=None):
    """The goal handle; sent a second time if the first request got no answer: the client can see the server
    before the server has matched the client's response reader, and rmw_fastrtps then drops the response."""
    for _ in range(2):
        handle = wait_future(executor, client.send_goal_async(goal, feedback_callback=feedback_callback), 5.0)
        if handle is not None:
            return handle
    return None


def test_goal_reports_feedback_and_succeeds(action_client):
    from action_msgs.msg import GoalStatus
    from dprecon_msgs.action import Reconstruct

    client, executor, logs = action_client
    feedback = []
    goal = Reconstruct.Goal(stages=["fuse", "geometry", "mesh"], force=False)
    handle = send_goal(client, executor, goal, lambda m: feedback.append(m.feedback))
    assert handle is not None and handle.accepted, logs()
    response = wait_future(executor, handle.get_result_async(), 10.0)
    assert response is not None, "no result in 10 s" + logs()
    assert response.status == GoalStatus.STATUS_SUCCEEDED, logs()
    result = response.result
    assert (result.success, result.message) == (True, "ran fuse,geometry,mesh")
    assert (result.refitted, result.objects, result.relations) == (2, 5, 3)
    assert 0.0 < result.duration_s < 10.0
    # the result may overtake the last feedback message: give the feedback topic its own deadline
    deadline = time.monotonic() + 3.0
    while len(feedback) < 3 and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    assert [f.stage for f in feedback] == ["fuse", "geometry", "mesh"], logs()
    assert [(f.stage_index, f.stage_count) for f in feedback] == [(0, 3), (1, 3), (2, 3)]
    assert feedback[-1].progress == pytest.approx(1.0)


def test_long_goal_is_cancelled(action_client):
    from action_msgs.msg import GoalStatus
    from action_msgs.srv import CancelGoal
    from dprecon_msgs.action import Reconstruct

    client, executor, logs = action_client
    feedback = []
    goal = Reconstruct.Goal(stages=[], force=True)
    handle = send_goal(client, executor, goal, lambda m: feedback.append(m.feedback))
    assert handle is not None and handle.accepted, logs()
    # the goal is executing once its first feedback arrives
    deadline = time.monotonic() + 5.0
    while not feedback and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    assert feedback and feedback[0].stage == "geometry", logs()

    result_future = handle.get_result_async()
    start = time.monotonic()
    cancel = wait_future(executor, handle.cancel_goal_async(), 2.0)
    assert cancel is not None and cancel.return_code == CancelGoal.Response.ERROR_NONE, logs()
    assert [g.goal_id.uuid.tolist() for g in cancel.goals_canceling] == [list(handle.goal_id.uuid)]
    response = wait_future(executor, result_future, max(0.0, 2.0 - (time.monotonic() - start)))
    elapsed = time.monotonic() - start
    assert response is not None, f"no result {elapsed:.2f} s after the cancel request" + logs()
    assert response.status == GoalStatus.STATUS_CANCELED, logs()
    assert (response.result.success, response.result.message) == (False, "canceled")
    assert elapsed < 2.0
