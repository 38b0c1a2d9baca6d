"""The node's job actions, `~/reconstruct` and `~/edit_object`: every goal gets an answer.

The mapper runs one job at a time, and rclpy answers a goal only when its execute callback returns, so a
goal waiting for its turn holds an executor thread. Goals are therefore held up to
`reconstruction.max_queued_goals` at once (the node sizes its executor for that many plus its own work) and
start in arrival order; beyond that a goal is rejected at once, counted as `goal_rejected`. At shutdown
the held goals are aborted with a message before the node goes.
"""

from __future__ import annotations

import threading
import traceback
from collections import deque
from collections.abc import Callable

from dprecon_msgs.action import EditObject, Reconstruct
from rclpy.action import ActionServer, CancelResponse, GoalResponse

from dprecon_ros.config import ConfigError
from dprecon_ros.core.counters import EventCounters
from dprecon_ros.core.mapping.mapper import CANCELLED, RECONSTRUCTED, UNCHANGED, Mapper, RunJob, RunReport
from dprecon_ros.core.scene_model import BACKGROUND_ID
from dprecon_ros.core.stages.catalog import make_stages
from dprecon_ros.ros.service_guard import REQUESTS, describe

FEEDBACK_PERIOD_S = 0.2  # action feedback while a goal's run goes on; also how often a waiting goal looks again
SHUTTING_DOWN = "the node is shutting down"


class JobAction:
    """A mapper job behind an action: goals held and started in arrival order, feedback from the job's
    progress, an answer for every goal. Subclasses say which action, how a goal is checked and started, and
    what its result says."""

    action_type: type = Reconstruct
    action_name = "~/reconstruct"

    def __init__(
        self,
        node,
        mapper: Mapper,
        counters: EventCounters,
        capacity: int,
        on_done: Callable[[RunJob], None],
        callback_group,
    ) -> None:
        self.mapper, self.counters, self.capacity, self.on_done = mapper, counters, capacity, on_done
        self.logger = node.get_logger()
        self._cond = threading.Condition()
        self._held = 0  # accepted goals whose execute callback has not returned
        self._waiting: deque[object] = deque()  # tokens of held goals not started yet, in arrival order
        self._stopping = False
        self.server = ActionServer(
            node,
            self.action_type,
            self.action_name,
            execute_callback=self._execute,
            goal_callback=self._accept,
            cancel_callback=lambda goal: CancelResponse.ACCEPT,
            callback_group=callback_group,
            goal_service_qos_profile=REQUESTS,
            result_service_qos_profile=REQUESTS,
            cancel_service_qos_profile=REQUESTS,
        )

    # ----------------------------------------------------------------- goals
    # ------------------------------------------------------------ subclasses
    def check(self, goal) -> None:
        """Raise ValueError or ConfigError saying why a goal cannot run."""

    def start_job(self, goal) -> RunJob | None:
        raise NotImplementedError

    def result(self, report: RunReport):
        raise NotImplementedError

    # ----------------------------------------------------------------- goals
    def _accept(self, goal) -> GoalResponse:
        name = self.action_name
        try:
            self.check(goal)
        except (ConfigError, ValueError) as exc:
            return self._reject(f"{name} goal rejected: {exc}")
        except Exception as exc:  # a goal must never end the node
            return self._reject(f"{name} goal rejected: {describe(exc)}")
        with self._cond:
            if self._stopping:
                return self._reject(f"{name} goal rejected: {SHUTTING_DOWN}")
            if self._held >= self.capacity:
                return self._reject(
                    f"{name} goal rejected: {self._held} goals are already held (reconstruction.max_queued_goals={self.capacity})"
                )
            self._held += 1
        return GoalResponse.ACCEPT

    def _reject(self, message: str) -> GoalResponse:
        self.counters.count("goal_rejected", message)
        return GoalResponse.REJECT

    def _execute(self, goal_handle):
        token = object()
        with self._cond:
            self._waiting.append(token)
        try:
            return self._run(goal_handle, token)
        except Exception as exc:  # the goal is answered whatever happens
            self.counters.count("service_error", f"{self.action_name} failed: {describe(exc)}")
            self.logger.debug(traceback.format_exc())
            if goal_handle.is_active:
                goal_handle.abort()
            return self.action_type.Result(success=False, message=f"{self.action_name} failed: {describe(exc)}")
        finally:
            with self._cond:
                if token in self._waiting:
                    self._waiting.remove(token)
                self._held -= 1
                self._cond.notify_all()

    def _start_in_turn(self, goal_handle, token: object) -> RunJob | None:
        """Wait until this goal is first in line and the mapper is free, then start its run; None if the
        goal was cancelled or the node stops first (the goal is then ended here)."""
        while True:
            if self._stopping:
                goal_handle.abort()
                return None
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
                return None
            with self._cond:
                first = self._waiting[0] is token
                if first:
                    job = self.start_job(goal_handle.request)
                    if job is not None:
                        self._waiting.popleft()
                        self._cond.notify_all()
                        return job
                else:
                    self._cond.wait(FEEDBACK_PERIOD_S)
                    continue
            running = self.mapper.job  # a periodic run or the previous goal's: this goal runs after it
            if running is not None and running.running:
                running.wait(FEEDBACK_PERIOD_S)
            else:
                with self._cond:
                    self._cond.wait(FEEDBACK_PERIOD_S)

    def _run(self, goal_handle, token: object):
        job = self._start_in_turn(goal_handle, token)
        if job is None:
            message = SHUTTING_DOWN if self._stopping else "cancelled before it started"
            return self.action_type.Result(success=False, message=message)
        while not job.wait(FEEDBACK_PERIOD_S):
            if goal_handle.is_cancel_requested or self._stopping:
                job.cancel()
            p = job.progress
            goal_handle.publish_feedback(
                self.action_type.Feedback(stage=p.stage, stage_index=p.stage_index, stage_count=p.stage_count, progress=p.fraction)
            )
        report = job.report
        result = self.result(report)
        if report.status == CANCELLED and self._stopping:
            result.message = f"{SHUTTING_DOWN}; the run was cancelled"
            goal_handle.abort()
        elif report.status == CANCELLED and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif result.success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return result

    # -------------------------------------------------------------- shutdown
    def stop_accepting(self) -> int:
        """New goals are rejected; held ones end (aborted) as soon as they look again. How many are held."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            return self._held

    def wait_answered(self, timeout_s: float) -> bool:
        """Wait until every held goal's execute callback has returned (its result is then sent)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._held == 0, timeout_s)


class ReconstructAction(JobAction):
    """`~/reconstruct`: a run over the keyframes held now (optionally a given stage list, forced)."""

    action_type = Reconstruct
    action_name = "~/reconstruct"

    def check(self, goal) -> None:
        if goal.stages:
            make_stages(list(goal.stages))

    def start_job(self, goal) -> RunJob | None:
        return self.mapper.start(force=goal.force, stages=list(goal.stages) or None, on_done=self.on_done)

    def result(self, report: RunReport) -> Reconstruct.Result:
        recon = report.reconstruction
        return Reconstruct.Result(
            success=report.status in (RECONSTRUCTED, UNCHANGED),
            message=report.message,
            refitted=len(report.refitted_objects),
            objects=len(recon.objects) if recon is not None else 0,
            relations=len(recon.scene_graph.relations) if recon is not None else 0,
            duration_s=float(report.duration_s),
        )


class EditAction(JobAction):
    """`~/edit_object`: a text-driven edit of one object (the prior re-run for it with a new prompt)."""

    action_type = EditObject
    action_name = "~/edit_object"

    def check(self, goal) -> None:
        if not goal.prompt.strip():
            raise ValueError("the prompt is empty")
        if goal.object_id not in self.mapper.model.objects and goal.object_id != BACKGROUND_ID:
            raise ValueError(f"no object {goal.object_id} in the map (have: {sorted(self.mapper.model.objects)})")

    def start_job(self, goal) -> RunJob | None:
        return self.mapper.start(on_done=self.on_done, edits={int(goal.object_id): goal.prompt.strip()})

    def result(self, report: RunReport) -> EditObject.Result:
        return EditObject.Result(success=report.status == RECONSTRUCTED, message=report.message, duration_s=float(report.duration_s))
