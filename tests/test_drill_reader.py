"""Drills read events through the engine's reader and per-attempt fold, once per question.

Same reader as `obslab sli`: Parquet archives (and their stored folds) read like JSONL,
structurally invalid lines skipped and counted; an auto-solved drill opens the events once.
"""

from __future__ import annotations

import json

import duckdb
import pytest

from toolkit.drills import auto, runner
from toolkit.drills.report import build_report_data
from toolkit.drills.state import CURRENT, append_jsonl
from toolkit.events import compact

from test_drill_analysis import CASES, DURATION, SPEC, _events, _fake_run


def _samples(run, start):
    """Metric samples with the outcome counters, so the solver also compares them with the log."""
    for i in range(0, int(DURATION) + 1, 5):
        append_jsonl(run.metrics_file, {"t": start + i, "values": {
            'obslab_publish_outcomes_total{outcome="failed"}': i * 0.1,
            'obslab_publish_outcomes_total{outcome="succeeded"}': i * 6.0,
            'obslab_http_requests_total{route="/v1/uploads"}': i * 40.0}})


@pytest.fixture
def outage(tmp_path):
    events_dir, start = _events(tmp_path, CASES["regional-storage-outage"]["effect"])
    run = _fake_run(tmp_path, "regional-storage-outage", events_dir, start, [])
    (run.path.parent / CURRENT).write_text(json.dumps({"run_dir": run.path.name}))
    _samples(run, start)
    return run, events_dir, start


class _Connections:
    """Counts DuckDB connections opened: each is one read of the event files."""

    def __init__(self, monkeypatch):
        self.n = 0
        real = duckdb.connect

        def connect(*args, **kwargs):
            self.n += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(duckdb, "connect", connect)


def test_an_auto_solved_drill_reads_its_events_once(outage, monkeypatch):
    run, _, _ = outage
    reads = _Connections(monkeypatch)
    diagnosis = auto.solve(run, SPEC)
    assert reads.n == 1
    assert diagnosis.cause == "storage_outage" and dict(diagnosis.cohort) == {"region": "eu-west"}
    runner.record_diagnosis(run, diagnosis)
    assert run.answers()[-1]["by"] == "auto" and json.loads((run.path / "auto.json").read_text())["causes"]
    reads.n = 0
    build_report_data(run, SPEC)
    assert reads.n == 2  # as of the fault's end, and as of the drill's end


def test_a_compacted_parquet_archive_gives_the_same_drill(outage, tmp_path):
    run, events_dir, _ = outage
    on_jsonl = build_report_data(run, SPEC)
    d_jsonl = auto.solve(run, SPEC)
    archive = tmp_path / "archive"
    compact([events_dir], archive)
    state = run.read_state()
    from dataclasses import replace

    run.write_state(replace(state, events_dir=str(archive)))
    on_parquet = build_report_data(run, SPEC)
    d_parquet = auto.solve(run, SPEC)
    assert on_parquet.read_summary == on_jsonl.read_summary
    assert on_parquet.sli_incident == on_jsonl.sli_incident and on_parquet.sli_drill == on_jsonl.sli_drill
    assert {k: f.value for k, f in on_parquet.impact.figures.items()} == \
        {k: f.value for k, f in on_jsonl.impact.figures.items()}
    assert on_parquet.first_page_at == on_jsonl.first_page_at
    assert (d_parquet.cause, dict(d_parquet.cohort), d_parquet.impact_value) == \
        (d_jsonl.cause, dict(d_jsonl.cohort), d_jsonl.impact_value)


def test_invalid_lines_are_skipped_and_counted_as_obslab_sli_does(outage):
    run, events_dir, start = outage
    before = build_report_data(run, SPEC)
    with open(events_dir / "events.jsonl", "a") as f:
        f.write('{"schema_version": 1, "event": "not_an_event", "ts": "2026-01-05T10:04:00.000Z"}\n')
        f.write("not json at all\n")
    after = build_report_data(run, SPEC)
    assert "2 invalid line(s) skipped" in after.read_summary
    assert after.sli_incident == before.sli_incident
