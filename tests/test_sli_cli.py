"""The sli and budget commands as a user runs them (subprocess): formats, labels, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden.jsonl"
OBSLAB = str(Path(sys.executable).with_name("obslab"))
SLO = str(ROOT / "slo.yaml")


def run(*args):
    return subprocess.run([OBSLAB, *args], capture_output=True, text=True, timeout=120)


def test_sli_json_has_the_documented_shape():
    p = run("sli", str(GOLDEN), "--slo", SLO, "--format", "json", "--by", "release,region", "--window", "10m",
            "--where", "app_version=5.4.0", "--synthetic", "exclude")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["schema"] == "obslab.sli/v1"
    assert set(d) == {"schema", "inputs", "slo", "scope", "totals", "series", "breakdown"}
    assert d["scope"]["segment"] == {"app_version": "5.4.0"} and d["scope"]["synthetic"] == "excluded"
    fig = d["totals"]["primary"][0]
    assert set(fig) == {"name", "value", "unit", "statistic", "definition", "count", "counted", "numerator",
                        "denominator", "note", "scope"}
    assert (fig["numerator"], fig["denominator"]) == (2, 4)
    assert d["series"]["window"] == "10m" and d["breakdown"]["by"] == ["release", "region"]
    assert all(set(s["scope"]["segment"]) == {"app_version", "release", "region"} for s in d["breakdown"]["segments"])


def test_sli_table_and_markdown_label_every_figure():
    t = run("sli", str(GOLDEN), "--slo", SLO)
    assert t.returncode == 0, t.stderr
    assert "synthetic included" in t.stdout and "3 / 5" in t.stdout and "nearest-rank" in t.stdout
    m = run("sli", str(GOLDEN), "--slo", SLO, "--format", "markdown", "--by", "release")
    assert m.returncode == 0
    assert "| primary | publish_success_rate | 60.000% | ratio | 3 / 5 |" in m.stdout
    assert "### Breakdown by release" in m.stdout


@pytest.mark.parametrize("window", ["0", "0s"])
def test_sli_window_zero_means_no_series(window):
    p = run("sli", str(GOLDEN), "--slo", SLO, "--format", "json", "--window", window)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["series"] == {"window": None, "points": []}
    assert d["totals"]["counts"]["attempts"] == 7
    t = run("sli", str(GOLDEN), "--slo", SLO, "--window", window)
    assert t.returncode == 0, t.stderr
    assert "Time series" not in t.stdout


@pytest.mark.parametrize("args, message", [
    (["--by", "planet"], "--by planet: unknown dimension"),
    (["--where", "region"], "expected dim=value"),
    (["--format", "xml"], "--format 'xml'"),
    (["--window", "soon"], "expected a duration"),
    (["--until", "yesterday"], "not a time"),
    (["--since", "2026-01-05T10:20:00Z", "--until", "2026-01-05T10:10:00Z"],
     "the scope (since, until] is inverted (--since is after --until)"),
    (["--since", "2026-01-05T10:10:00Z", "--until", "2026-01-05T10:10:00Z"],
     "the scope (since, until] is empty (zero length)"),
])
def test_sli_user_errors_are_one_line(args, message):
    p = run("sli", str(GOLDEN), "--slo", SLO, *args)
    assert p.returncode == 2
    assert message in p.stderr and "Traceback" not in p.stderr and p.stderr.count("\n") == 1


def test_budget_json_and_table():
    p = run("budget", str(GOLDEN), "--slo", SLO, "--profile", "lab", "--format", "json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["schema"] == "obslab.budget/v2" and d["profile"] == "lab"
    assert [s["slo"] for s in d["slos"]] == ["publish-success", "publish-latency"]
    assert d["slos"][0]["budget"]["bad"] == 2 and d["slos"][0]["total"] == 5
    assert d["slos"][0]["budget"]["period"] == "12h" and d["slos"][0]["budget"]["remaining"] == \
        pytest.approx(1 - d["slos"][0]["budget"]["spent"])
    t = run("budget", str(GOLDEN), "--slo", SLO, "--at", "2026-01-05T10:03:00Z")
    assert t.returncode == 0, t.stderr
    assert "Error budget at 2026-01-05T10:03:00.000Z" in t.stdout and "prod profile (time ÷ 1)" in t.stdout
    bad = run("budget", str(GOLDEN), "--slo", SLO, "--profile", "staging")
    assert bad.returncode == 2 and "no profile 'staging'" in bad.stderr


@pytest.mark.parametrize("command", ["sli", "budget"])
def test_one_synthetic_vocabulary(command):
    only = run(command, str(GOLDEN), "--slo", SLO, "--synthetic", "only", "--format", "json")
    assert only.returncode == 0, only.stderr
    d = json.loads(only.stdout)
    assert (d["scope"]["synthetic"] if command == "sli" else d["synthetic"]) == "only"
    bad = run(command, str(GOLDEN), "--slo", SLO, "--synthetic", "maybe")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "--synthetic 'maybe': expected one of include, exclude, only" in bad.stderr
