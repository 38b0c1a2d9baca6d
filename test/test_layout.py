"""The package's layers: no import cycles, the core never imports rclpy, the offline path needs no ROS."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dprecon_ros"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING" or isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def runtime_imports(path: Path) -> set[str]:
    """Modules of the package imported when the module is imported: anywhere at module level, also inside
    `try`, `if` or `with` blocks, but not inside functions (they run later) or under `if TYPE_CHECKING:`."""
    found: set[str] = set()

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) or is_type_checking(child):
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.update({child.module} | {f"{child.module}.{a.name}" for a in child.names})
            elif isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            walk(child)

    walk(ast.parse(path.read_text()))
    return {m for m in found if m.startswith("dprecon_ros")}


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in runtime_imports(path) if m in modules and m != name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_checker_finds_a_cycle(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\ntry:\n    import dprecon_ros.x\nexcept ImportError:\n    pass\n"
        "if TYPE_CHECKING:\n    import dprecon_ros.y\ndef f():\n    import dprecon_ros.z\n"
    )
    assert runtime_imports(source) == {"dprecon_ros.x"}


def test_no_import_cycles_in_the_package():
    assert find_cycle(import_graph()) is None


def all_imports(path: Path) -> set[str]:
    """Every module an import statement anywhere in the file names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_the_core_never_imports_ros():
    for path in (PACKAGE / "core").rglob("*.py"):
        bad = {m for m in all_imports(path) if m.split(".")[0] in ("rclpy", "rcl_interfaces") or m.startswith("dprecon_ros.ros")}
        assert not bad, (path, bad)


def test_the_offline_gpu_path_imports_neither_open3d_pybullet_nor_rclpy():
    """The device machine cannot install them: the offline reconstruction path must not need them."""
    code = (
        "import sys\n"
        "import dprecon_ros.tools.reconstruct, dprecon_ros.core.mapping.mapper, dprecon_ros.eval.evaluation, dprecon_ros.io.bags\n"
        "import dprecon_ros.core.stages.catalog, dprecon_ros.core.pipeline\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('open3d', 'pybullet', 'pybullet_data', 'rclpy'))\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
