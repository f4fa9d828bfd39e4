"""Every OBSLAB_* environment variable the code reads is a documented constant of contract.env."""

import ast
import re
from pathlib import Path

import contract.env as env

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"\bOBSLAB_[A-Z0-9_]+\b")
# Strings that look like variables but are not: Flask config keys and a benchmark's output marker.
NOT_VARIABLES = {"OBSLAB_DASHBOARD": "Flask config key of the dashboard app",
                 "OBSLAB_CLOCK": "Flask config key (tests pin the dashboard's clock)",
                 "OBSLAB_RESULT": "marker line the overhead benchmark's wrk script prints"}


def _names_in_code() -> dict[str, str]:
    found: dict[str, str] = {}
    for package in ("contract", "demo_service", "loadtests", "toolkit"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    for name in NAME.findall(node.value):
                        found.setdefault(name, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_every_variable_is_a_documented_constant():
    undocumented = {name: where for name, where in _names_in_code().items()
                    if name not in env.ALL and name != env.LOAD_PREFIX and name not in NOT_VARIABLES}
    assert not undocumented, "OBSLAB_* names not in contract/env.py: " + ", ".join(
        f"{n} ({w})" for n, w in sorted(undocumented.items()))


def test_every_constant_has_its_documentation():
    source = (ROOT / "contract" / "env.py").read_text()
    tree = ast.parse(source)
    body = tree.body
    for i, node in enumerate(body):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and node.value.value in env.ALL:
            nxt = body[i + 1] if i + 1 < len(body) else None
            assert isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and nxt.value.value.strip(), \
                f"{node.targets[0].id} has no docstring"
    assert len(env.ALL) == len(set(env.ALL)) and len(env.ALL) >= 30
