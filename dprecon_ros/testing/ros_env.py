"""Keep ROS traffic on this machine and on a private domain (tests, demo, tools that spawn nodes)."""

from __future__ import annotations

import os
import random

DOMAIN_RANGE = (20, 99)


def localhost_ros_env(domain_id: int | None = None) -> dict[str, str]:
    """Environment for ROS processes: localhost-only discovery and a domain id (random unless given/set)."""
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if domain_id is None:
        domain_id = int(env.get("ROS_DOMAIN_ID") or random.randint(*DOMAIN_RANGE))
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("ROS_LOG_DIR", os.path.join(env.get("TMPDIR", "/tmp"), "dprecon_ros_logs"))
    env.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    return env


def apply_localhost_ros_env(domain_id: int | None = None) -> dict[str, str]:
    env = localhost_ros_env(domain_id)
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "ROS_LOG_DIR")})
    return env
