"""The README is part of the product: every command it shows exists with the options it uses,
and every document it links to is there. (The flows themselves run in the lab, drill, load
and SLI tests; this keeps the README from drifting away from the CLI.)"""

from __future__ import annotations

import os
import re
import subprocess
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toolkit.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
    inline = re.findall(r"`(obslab [^`]+)`", README)
    lines = [l.split("#", 1)[0].strip() for b in blocks for l in b.splitlines()] + inline
    return sorted({l for l in lines if l.startswith("obslab ")})


def _subcommand_path(argv: list[str]) -> list[str]:
    """The command words before the first option or argument, e.g. ['drill', 'start']."""
    path = []
    for word in argv:
        if word.startswith("-") or "/" in word or "." in word or word.isupper():
            break
        path.append(word)
        result = CliRunner().invoke(app, path + ["--help"])
        if "Commands" not in result.output:
            break
    return path


@pytest.mark.parametrize("command", _readme_commands())
def test_readme_command_exists_with_its_options(command):
    argv = shlex.split(command)[1:]
    # "obslab top --data-dir .obslab" or "obslab bench overhead|sli|…": expand alternatives
    if any("|" in w for w in argv):
        head, alts = argv[:-1], argv[-1].split("|")
        argv = head + [alts[0]]
    path = _subcommand_path(argv)
    assert path or argv == ["--help"], f"no subcommand in {command!r}"
    result = CliRunner().invoke(app, path + ["--help"], terminal_width=200)
    assert result.exit_code == 0, f"{' '.join(path)} --help failed: {result.output}"
    for option in (w.split("=", 1)[0] for w in argv if w.startswith("--")):
        assert option in result.output, f"README uses {option} but `obslab {' '.join(path)}` has no such option"


def test_readme_commands_were_found():
    commands = _readme_commands()
    assert any(c.startswith("obslab drill start") for c in commands)
    assert any(c.startswith("obslab sli") for c in commands)


def test_readme_links_resolve():
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if "://" in target:
            continue
        assert (ROOT / target).exists(), f"README links to missing {target}"


def test_quickstart_targets_exist():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^lab:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_make_lessons_runs_the_lesson_checks_at_the_default_speed():
    """`make lessons` (in the README) takes 90 minutes, so CI only checks what it would run."""
    assert "make lessons" in README
    # Run from `make test` itself, a nested make would print its directory changes: a clean environment.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    plan = subprocess.run(["make", "--no-print-directory", "-n", "lessons", "LESSON_TABLE=/tmp/table.md"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env=env)
    assert plan.returncode == 0, plan.stderr
    joined = plan.stdout.replace("\\\n", " ")  # one command, continued lines joined
    command = next((line for line in joined.splitlines() if "OBSLAB_DRILL_LESSON_SPEED" in line), joined)
    assert "OBSLAB_DRILL_LESSON_SPEED=1 " in command and "tests/test_drill_lessons.py" in command, command
    assert "OBSLAB_DRILL_LESSON_SEEDS=20261130,20261201" in command and "OBSLAB_DRILL_LESSON_TABLE=/tmp/table.md" in command
