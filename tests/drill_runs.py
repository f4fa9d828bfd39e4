"""Drill runs for tests.

- ``build_run``: a finished drill run built over seeded synthetic events, its report written by the real
  report writer (``toolkit.drills.report.write_report``): the fixture the story and debrief tests read;
- ``start_drill`` and ``wait_for``: a real drill started on a running service (conftest's ``service``
  fixtures), and waiting on what it does;
- ``CountingRun``: a run directory that counts how often its files are read.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pytest

from toolkit.drills.lab import Lab
from toolkit.drills.state import CURRENT, RunDir, RunState, append_jsonl
from toolkit.events.synth import Effect, SynthConfig, generate, write_jsonl

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "slo.yaml"
START = datetime(2026, 1, 5, 10, 0, 0, tzinfo=timezone.utc)
RUN_ID = "20260105T100000-regional-storage-outage"
DURATION_S = 600.0
FAULT = (300.0, 360.0)  # seconds from the start


def build_run(data_dir: Path, *, speed: float = 1.0, learner: list[dict] | None = None,
              answers: list[dict] | None = None, write: bool = True, auto: bool = False) -> RunDir:
    """Ten minutes of lab traffic with eu-west failing for a minute, as a regional-storage-outage run
    that has finished; ``learner`` steps and ``answers`` are recorded as the learner's own."""
    cfg = SynthConfig(attempts=1500, duration_s=DURATION_S, start=START, cancel_rate=0.02, abandon_rate=0.0,
                      effects=(Effect(where={"region": "eu-west"}, start_s=FAULT[0], end_s=FAULT[1],
                                      failure_rate=0.9, error_class="chunk_missing"),))
    events = data_dir / "data" / "events"
    events.mkdir(parents=True)
    write_jsonl(generate(cfg, seed=11), events / "events.jsonl")
    start = START.timestamp()
    run = RunDir(data_dir / "drills" / RUN_ID)
    run.path.mkdir(parents=True)
    (data_dir / "drills" / CURRENT).write_text(json.dumps({"run_dir": RUN_ID}))
    run.write_state(RunState(run_id=RUN_ID, drill_id="regional-storage-outage", seed=7, speed=speed,
                             url="http://127.0.0.1:1", data_dir=str(data_dir), started_at=start,
                             duration_s=DURATION_S, events_dir=str(events), auto=auto))
    run.write_truth({"fault_start_s": FAULT[0], "fault_duration_s": FAULT[1] - FAULT[0],
                     "fault_applied_at": start + FAULT[0], "fault_removed_at": start + FAULT[1]})
    append_jsonl(run.timeline_file, {"t": start, "kind": "drill_started"})
    for rec in learner or ():
        append_jsonl(run.path / "learner.jsonl", {"t": start + rec["scenario_s"] / speed, **rec})
    for a in answers or ():
        append_jsonl(run.answers_file, {"by": "learner", **a})
        append_jsonl(run.timeline_file, {"t": start + a["at_s"], "kind": "answer", **a})
    append_jsonl(run.timeline_file, {"t": start + DURATION_S, "kind": "drill_finished"})
    if auto:  # as the scheduler does for --auto: the solver's diagnosis recorded as the answer, in auto.json
        from toolkit.drills.auto import solve
        from toolkit.drills.runner import record_diagnosis
        from toolkit.slo.spec import load_spec

        record_diagnosis(run, solve(run, load_spec(SPEC)))
    if write:
        from toolkit.drills.report import write_report
        from toolkit.slo.spec import load_spec

        write_report(run, load_spec(SPEC))
    return run


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """The predicate's first truthy value, polled every 0.2 s; the test fails naming ``what`` if none comes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def start_drill(service, drill_id: str, *, seed: int, speed: float = 10) -> tuple[Lab, RunDir]:
    """A real drill on a running service (``tests/conftest.py``'s handle), as ``obslab drill start`` starts it:
    its flags set, its detached scheduler and Locust running. The lab (its ``drills_dir`` for ``runner.stop``)
    and the run."""
    from toolkit.drills import runner

    lab = Lab(service.data_dir, service.base_url, service.admin_token)
    return lab, runner.start(drill_id, lab, seed=seed, speed=speed)


def fault_applied_at(run: RunDir, timeout_s: float = 40) -> float:
    """Wall time the scheduler applied the run's fault, once it has."""
    return wait_for(lambda: run.read_truth().get("fault_applied_at"), timeout_s, "the fault")


class CountingRun(RunDir):
    """A run directory that counts the reads of its timeline, state and truth (``reads``): what a scheduler
    tick may read is part of its contract."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.reads: Counter[str] = Counter()

    def timeline(self) -> list[dict[str, Any]]:
        self.reads["timeline"] += 1
        return super().timeline()

    def read_state(self) -> RunState:
        self.reads["state"] += 1
        return super().read_state()

    def read_truth(self) -> dict[str, Any]:
        self.reads["truth"] += 1
        return super().read_truth()
