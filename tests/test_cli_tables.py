"""Every obslab table stays readable in an 80-column terminal: headers wrap or columns go, but no header is
ever cut ("dimensi…", "selecti…"), and no line runs past the terminal.

Each table command runs for real (a subprocess with COLUMNS=80, as in a plain terminal) on synthetic events.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.events.synth import Effect, SynthConfig, generate, write_jsonl

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "slo.yaml"
OBSLAB = [sys.executable, "-c", "from toolkit.cli import main; main()"]


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> Path:
    cfg = SynthConfig(attempts=3000, canary_share=0.2, users=1000, duration_s=1800,
                      effects=(Effect(where={"release": "canary"}, failure_rate=0.06, latency_factor=1.6),))
    return write_jsonl(generate(cfg, seed=9), tmp_path_factory.mktemp("events") / "events.jsonl")


def _run(*args, cwd: Path = REPO) -> str:
    env = dict(os.environ, COLUMNS="80", LINES="50", TERM="xterm")
    r = subprocess.run(OBSLAB + [str(a) for a in args], capture_output=True, text=True, timeout=180, env=env, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _headers_whole(out: str, headers: list[str]) -> None:
    assert "…" not in out, f"a cell or header cut with an ellipsis:\n{out}"
    # (budget prints each SLO's one-sentence summary soft-wrapped: the terminal wraps it, not rich)
    too_long = [line for line in out.splitlines() if len(line) > 80 and "period allows" not in line]
    assert not too_long, "lines wider than 80 columns:\n" + "\n".join(too_long)
    for header in headers:
        for word in header.split():
            assert re.search(rf"(?<!\S){re.escape(word)}(?!\S)", out), f"header word {word!r} of {header!r} " \
                                                                        f"is not whole in:\n{out}"


def test_sli_tables(events):
    out = _run("sli", events, "--slo", SPEC, "--by", "region", "--window", "10m")
    _headers_whole(out, ["group", "metric", "value", "statistic", "num / den", "count behind it", "window start",
                         "attempts", "success rate", "succ / (succ+fail+aband)", "latency SLI", "p95 processing",
                         "p99 processing", "segment"])


def test_budget_table(events):
    out = _run("budget", events, "--slo", SPEC)
    _headers_whole(out, ["severity", "long/short", "fires when both burn", "long burn (bad/total)",
                         "short burn (bad/total)", "at as-of time", "first fired"])


def test_breakdown_table(events):
    out = _run("breakdown", events, "--select", "failed", "--top", "5")
    _headers_whole(out, ["dimension", "value", "selection", "baseline", "difference", "lift", "z", "dimension χ² p"])


def test_compare_table(events):
    out = _run("compare", events, "--control", "release=stable", "--treatment", "release=canary")
    _headers_whole(out, ["metric", "control", "treatment", "change [CI]", "allowed", "class"])


def test_drill_list_table():
    out = _run("drill", "list")
    _headers_whole(out, ["id", "difficulty", "title"])


def test_plan_list_table_keeps_every_id_whole():
    from toolkit.drills.launch import load_launches

    out = _run("plan", "list")
    _headers_whole(out, ["id", "difficulty", "title", "change"])
    assert all(launch_id in out for launch_id in load_launches()), out


def test_top_frame(events, tmp_path):
    data = tmp_path / "lab"
    (data / "data" / "events").mkdir(parents=True)
    (data / "data" / "events" / "events.jsonl").write_bytes(events.read_bytes())
    out = _run("top", "--data-dir", data, "--spec", SPEC, "--once")
    _headers_whole(out, ["SLO", "severity", "long window", "short window", "threshold", "over events", "first fired"])
