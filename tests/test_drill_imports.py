"""The drills package's import graph has no cycle, counting imports inside functions too:
analysis (auto) returns a diagnosis, the runner records answers, the scheduler drives both."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "toolkit" / "drills"
PREFIX = "toolkit.drills"


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules ``path`` imports, wherever the import statement sits."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n.removeprefix(PREFIX + ".") for n in names if n.startswith(PREFIX + ".")} & modules
    return found


def _graph() -> dict[str, set[str]]:
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return {m: _imports(PACKAGE / f"{m}.py", modules) - {m} for m in modules}


def test_drills_import_graph_has_no_cycle():
    graph = _graph()
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as e:
        raise AssertionError(f"import cycle in {PREFIX}: {' -> '.join(e.args[1])}") from None


def test_analysis_does_not_record_answers():
    graph = _graph()
    assert "runner" not in graph["auto"] and "scheduler" not in graph["auto"]
    assert "scheduler" not in graph["runner"]
