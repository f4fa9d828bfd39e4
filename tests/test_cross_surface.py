"""One data directory, one as-of time: every surface shows the same figures.

``obslab sli --format json``, ``obslab budget --format json`` (both as a user runs them), ``obslab top``
(its rendered frame) and the dashboard's ``/api/snapshot`` (Flask test client) must agree on the
success rate, p50/p95/p99, the budget's spent and remaining, the burn rate of every alert window
and the first page. The figures are read off each surface by ``tests/cross_surface.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from rich.console import Console

from cross_surface import (assert_same_figures, figures_from_budget_json, figures_from_sli_json,
                           figures_from_snapshot, figures_from_top_text)
from toolkit.events import load_events
from toolkit.measures.definitions import load_outcomes, to_us
from toolkit.slo.spec import load_spec
from toolkit.events.synth import Effect, SynthConfig, generate, write_jsonl
from toolkit.lab.top import TopSource, render, take_snapshot
from toolkit.lab.web import DashboardConfig, create_app

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "slo.yaml"
START = datetime(2026, 1, 5, 10, 0, 0, tzinfo=timezone.utc)
# Whole seconds: the dashboard's as-of time is the clock minus settle_s, rounded down to a second.
AS_OF = START + timedelta(seconds=630)
SETTLE_S = 2.0


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Ten minutes of lab traffic with a 30-second fault that fails most publishes, so a page fires."""
    cfg = SynthConfig(attempts=900, duration_s=600, start=START, cancel_rate=0.05, abandon_rate=0.0,
                      effects=(Effect(start_s=300, end_s=330, failure_rate=0.7),))
    d = tmp_path_factory.mktemp("cross-surface")
    (d / "events").mkdir()
    write_jsonl(generate(cfg, seed=5), d / "events" / "events.jsonl")
    return d


def _obslab(*args: str) -> dict:
    p = subprocess.run([str(Path(sys.executable).with_name("obslab")), *args], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def surfaces_at(data_dir: Path, spec: Path, as_of: datetime) -> list:
    """Every surface's figures for one data directory, spec and as-of time (lab profile)."""
    events = str(data_dir / "events")
    sli = _obslab("sli", events, "--slo", str(spec), "--until", _iso(as_of), "--format", "json")
    budget = _obslab("budget", events, "--slo", str(spec), "--profile", "lab", "--at", _iso(as_of),
                     "--format", "json")
    now = as_of + timedelta(seconds=SETTLE_S)
    app = create_app(DashboardConfig(data_dir=data_dir, spec_path=spec, settle_s=SETTLE_S),
                     {"OBSLAB_CLOCK": lambda: now})
    snapshot = app.test_client().get("/api/snapshot").get_json()
    assert snapshot["as_of"] == _iso(as_of)
    source = TopSource.from_data_dir(data_dir, spec, "lab")
    top_snapshot = take_snapshot(source, now=now)
    console = Console(record=True, width=240, file=open("/dev/null", "w"))
    console.print(render(top_snapshot))
    return [figures_from_sli_json(sli), figures_from_budget_json(budget), figures_from_snapshot(snapshot),
            figures_from_snapshot(top_snapshot, "obslab top snapshot"), figures_from_top_text(console.export_text())]


def test_every_surface_shows_the_same_figures(data_dir: Path):
    # No outcome lands exactly on the as-of time, where "up to as of" could be read two ways.
    spec = load_spec(SPEC)
    outcomes = load_outcomes(load_events([data_dir / "events"], until=AS_OF.replace(tzinfo=None)), spec,
                             spec.slos[0], as_of=AS_OF.replace(tzinfo=None))
    assert to_us(AS_OF) not in set(outcomes.times_us.tolist())
    figures = surfaces_at(data_dir, SPEC, AS_OF)
    assert_same_figures(*figures)
    sli, budget, snapshot = figures[0], figures[1], figures[2]
    # The fixture does what it is for: failures, a page, and budget spent but not all of it.
    assert 0.9 < sli.success_rate < 0.99 and sli.success_total > 800
    assert snapshot.first_page["publish-success"] is not None
    assert "2026-01-05T10:05:00" < snapshot.first_page["publish-success"] < "2026-01-05T10:06:00"
    spent, remaining = budget.budget["publish-success"]
    assert 0 < spent < 1 and remaining == pytest.approx(1 - spent)
    assert any(lb is not None for lb, _, _ in budget.burn.values())


def _drill_report(data_dir: Path, as_of: datetime) -> dict:
    """A drill run over the fixture's traffic (started with it, ended at the as-of time, its fault the
    fixture's) and its report.json, as `obslab drill report` writes it."""
    from toolkit.drills.report import write_report
    from toolkit.drills.state import RunDir, RunState, append_jsonl

    start, end = START.timestamp(), as_of.timestamp()
    run = RunDir(data_dir / "drills" / "run-cross-surface")
    run.path.mkdir(parents=True)
    run.write_state(RunState(run_id="run-cross-surface", drill_id="regional-storage-outage", seed=1, speed=1.0,
                             url="http://127.0.0.1:1", data_dir=str(data_dir), started_at=start,
                             duration_s=end - start, events_dir=str(data_dir / "events")))
    run.write_truth({"fault_start_s": 300.0, "fault_duration_s": 30.0, "fault_applied_at": start + 300,
                     "fault_removed_at": start + 330})
    for kind, t in (("drill_started", start), ("drill_finished", end)):
        append_jsonl(run.timeline_file, {"t": t, "kind": kind})
    md = write_report(run, load_spec(SPEC))
    return json.loads((md.parent / "report.json").read_text())


def test_a_drill_report_shows_the_same_figures(data_dir: Path):
    from cross_surface import figures_from_drill_report

    report = figures_from_drill_report(_drill_report(data_dir, AS_OF))
    sli, budget, snapshot = surfaces_at(data_dir, SPEC, AS_OF)[:3]
    assert_same_figures(sli, budget, snapshot, report)
    # Every figure is there to compare: success, latency, budget, burn per window, first page.
    assert None not in (report.success_rate, report.p50_s, report.p95_s, report.p99_s)
    assert report.budget["publish-success"] == budget.budget["publish-success"]
    assert report.burn == {k: v for k, v in budget.burn.items() if k[0] == "publish-success"}
    assert report.first_page["publish-success"] == budget.first_page["publish-success"] is not None


def test_a_spec_counting_cancellations_moves_every_surface_alike(data_dir: Path, tmp_path: Path):
    import yaml

    raw = yaml.safe_load(SPEC.read_text())
    raw["slos"][0]["events"]["total"] = ["succeeded", "failed", "abandoned", "cancelled"]
    spec = tmp_path / "slo-with-cancellations.yaml"
    spec.write_text(yaml.safe_dump(raw))
    shipped = surfaces_at(data_dir, SPEC, AS_OF)
    counting = surfaces_at(data_dir, spec, AS_OF)
    assert_same_figures(*counting)
    # The same attempts succeeded; the total grew by the cancellations, on every surface at once.
    before, after = shipped[0], counting[0]
    assert after.success_good == before.success_good and after.success_total > before.success_total
    for a, b in zip(shipped[:4], counting[:4]):
        assert (b.success_total - a.success_total) == (after.success_total - before.success_total), b.surface
        assert b.success_rate == b.success_good / b.success_total < a.success_rate, b.surface
