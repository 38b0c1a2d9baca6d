"""The test client's goal sending: a goal request lost before the server matched this client is sent again
with the same goal id (the server accepts an id once), and a rejection is returned as it is."""

from __future__ import annotations

from dataclasses import dataclass

from dprecon_msgs.action import Reconstruct
from rclpy.task import Future

from dprecon_ros.testing import graph_client
from dprecon_ros.testing.ros_graph import RosGraph


@dataclass
class Answer:
    accepted: bool


class LossyAction:
    """An action client whose first `lost` goal requests never get an answer."""

    def __init__(self, lost: int, accept: bool) -> None:
        self.lost, self.accept, self.goal_ids, self.futures = lost, accept, [], []

    def wait_for_server(self, timeout_sec: float) -> bool:
        return True

    def send_goal_async(self, goal, feedback_callback=None, goal_uuid=None) -> Future:
        self.goal_ids.append(bytes(goal_uuid.uuid))
        future = Future()
        self.futures.append(future)
        if len(self.goal_ids) > self.lost:
            future.set_result(Answer(self.accept))
        return future


class LateAction(LossyAction):
    """The first request is accepted, but its answer comes only after the resent copy's duplicate rejection."""

    def __init__(self) -> None:
        super().__init__(lost=1, accept=False)

    def answer_the_first(self) -> None:
        if len(self.futures) > 1 and not self.futures[0].done():
            self.futures[0].set_result(Answer(True))


def test_a_lost_goal_request_is_sent_again_with_the_same_id(tmp_path, monkeypatch):
    monkeypatch.setattr(graph_client, "GOAL_RESEND_S", 0.2)
    graph = RosGraph(tmp_path)
    try:
        client = graph.client()
        action = LossyAction(lost=2, accept=True)
        handle = client.send_goal(action, Reconstruct.Goal(), "~/reconstruct", timeout_s=10.0)
        assert handle.accepted and len(action.goal_ids) == 3 and len(set(action.goal_ids)) == 1
        rejected = LossyAction(lost=0, accept=False)
        assert not client.send_goal(rejected, Reconstruct.Goal(), "~/reconstruct", timeout_s=10.0).accepted
        assert len(rejected.goal_ids) == 1
        late = LateAction()
        spin_once = client.executor.spin_once
        calls = []

        def spin_then_answer(timeout_sec=None):  # the original's answer arrives a few spins after the copy's
            calls.append(0)
            if len(calls) > 3:
                late.answer_the_first()
            spin_once(timeout_sec=timeout_sec)

        monkeypatch.setattr(client.executor, "spin_once", spin_then_answer)
        assert client.send_goal(late, Reconstruct.Goal(), "~/reconstruct", timeout_s=10.0).accepted
    finally:
        graph.close()
