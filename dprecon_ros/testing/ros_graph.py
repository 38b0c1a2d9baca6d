"""Start dprecon processes on a private localhost ROS domain and talk to them from the test process."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

from dprecon_ros.testing.processes import sigint_ignored, start_logged, stop_process

BIN = Path(sys.executable).parent
_domains = itertools.count(int(os.environ.get("ROS_DOMAIN_ID", "100")) + 1)


def run_tool(executable: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300.0) -> subprocess.CompletedProcess:
    """Run a console script of the package to completion."""
    from dprecon_ros.testing.ros_env import localhost_ros_env

    return subprocess.run([str(BIN / executable), *args], env=env or localhost_ros_env(), capture_output=True, text=True, timeout=timeout)


class RosGraph:
    """Processes plus an rclpy context, all on one fresh domain id; everything stops on close."""

    def __init__(self, log_dir: Path) -> None:
        import rclpy

        from dprecon_ros.testing.ros_env import localhost_ros_env

        self.domain = next(_domains) % 200 + 1
        self.env = localhost_ros_env(self.domain)
        self.log_dir = log_dir
        self.procs: list[tuple[subprocess.Popen, Path]] = []
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain)
        self._client = None

    def start(self, executable: str, *ros_args: str, name: str | None = None, ignoring_sigint: bool = False) -> subprocess.Popen:
        """`ignoring_sigint`: started as a shell's background job is, with SIGINT ignored."""
        log = self.log_dir / f"{name or executable}.{len(self.procs)}.log"
        cmd = [str(BIN / executable), "--ros-args", *ros_args]
        if ignoring_sigint:
            cmd = sigint_ignored(cmd)
        proc = start_logged(cmd, self.env, log)
        self.procs.append((proc, log))
        return proc

    def run(self, executable: str, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
        return run_tool(executable, *args, env=self.env, timeout=timeout)

    def client(self):
        if self._client is None:
            from dprecon_ros.testing.graph_client import DpreconClient

            self._client = DpreconClient(client_name=f"test_client_{self.domain}", context=self.context)
        return self._client

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for _, log in self.procs if log.exists())

    @staticmethod
    def stop(proc: subprocess.Popen, timeout: float = 15.0) -> int:
        return stop_process(proc, timeout)

    def close(self) -> None:
        import rclpy

        if self._client is not None:
            self._client.close()
        for proc, _ in self.procs:
            self.stop(proc)
        rclpy.try_shutdown(context=self.context)


def params(values: dict[str, object]) -> list[str]:
    """`-p name:=value` arguments for each entry."""
    out: list[str] = []
    for name, value in values.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        out += ["-p", f"{name}:={text}"]
    return out


def sim_params(views: int, **extra: object) -> list[str]:
    """The simulator as the tests run it: 4 frames a second, exiting when done, waiting for its subscribers."""
    base = {"rate_hz": 4.0, "exit_when_done": True, "linger_s": 0.5, "sim.num_views": views, "wait_for_subscribers_s": 30.0}
    return params({**base, **{k.replace("__", "."): v for k, v in extra.items()}})
