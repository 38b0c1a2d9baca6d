"""Run the Khronos glTF validator (scripts/validate_gltf.cjs, installed by scripts/setup.sh) from Python."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "validate_gltf.cjs"
NODE_MODULES = ROOT / ".tools" / "node_modules"


def validator_missing() -> str:
    """Why the validator cannot run here, or '' when it can."""
    if shutil.which("node") is None:
        return "node is not installed (scripts/setup.sh installs it)"
    if not (NODE_MODULES / "gltf-validator" / "package.json").exists():
        return f"gltf-validator is not under {NODE_MODULES} (scripts/setup.sh installs it)"
    return ""


def validate(paths: list[Path]) -> list[dict]:
    """One validator report per file (its `issues` hold numErrors, numWarnings and the messages)."""
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
    done = subprocess.run(["node", str(SCRIPT), *map(str, paths)], capture_output=True, text=True, env=env, timeout=120)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"the glTF validator failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def errors(report: dict) -> list[str]:
    return [f"{m['code']} at {m.get('pointer', '?')}: {m['message']}" for m in report["issues"]["messages"] if m["severity"] == 0]
