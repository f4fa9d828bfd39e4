"""A drill run's files under ``<data-dir>/drills/``.

``current.json`` points at the active run. Each run has its own directory:

- ``run.json``: public facts (drill id, seed, speed, URL, start time, scheduler pid);
- ``truth.json``: the fault's actual start/end and the ground truth, mode 0600; only
  the scheduler, the grader and the report read it, never ``status``/``hint``;
- ``timeline.jsonl``: what happened when (drill started, fault applied/removed,
  hints shown, answers), one JSON object a line, ``t`` in Unix seconds;
- ``metrics.jsonl``: the scheduler's samples of the service's ``/metrics``;
- ``answers.jsonl``: every answer, graded at report time.

Everything here is the drill's private record: nothing of it reaches the lab's event log, metrics
or traces (the fault is applied with a neutral name and kept out of the service's audit events).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from toolkit.drills.clock import ScenarioClock, clock_from
__all__ = ["RunState", "RunDir", "NoDrillRunning", "current_run", "new_run", "append_jsonl", "read_jsonl"]

CURRENT = "current.json"


class NoDrillRunning(RuntimeError):
    """No drill was started in this data directory."""


@dataclass(frozen=True)
class RunState:
    run_id: str
    drill_id: str
    seed: int
    speed: float
    url: str
    data_dir: str
    started_at: float  # Unix seconds
    duration_s: float  # wall seconds the clock runs (drill duration / speed), pauses excluded
    auto: bool = False
    scheduler_pid: int | None = None
    events_dir: str = ""  # the lab's event log directory
    prometheus_url: str | None = None  # the lab's Prometheus, when one was running at the start
    slo_spec: str | None = None  # the SLO spec the lab ran with, when it said (lab.json)
    profile: str = "lab"  # the profile of the lab's Prometheus rules (paced to ``speed`` during the run)
    auto_mitigate: bool = False  # --auto-mitigate: the solver also takes the mitigation step while the drill runs


class RunDir:
    def __init__(self, path: Path):
        self.path = path

    @property
    def run_file(self) -> Path:
        return self.path / "run.json"

    @property
    def truth_file(self) -> Path:
        return self.path / "truth.json"

    @property
    def timeline_file(self) -> Path:
        return self.path / "timeline.jsonl"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def answers_file(self) -> Path:
        return self.path / "answers.jsonl"

    @property
    def report_dir(self) -> Path:
        return self.path / "report"

    @property
    def log_file(self) -> Path:
        return self.path / "scheduler.log"

    def read_state(self) -> RunState:
        return RunState(**json.loads(self.run_file.read_text()))

    def write_state(self, state: RunState) -> None:
        _atomic_write(self.run_file, json.dumps(asdict(state), indent=2))

    def write_truth(self, truth: dict[str, Any]) -> None:
        _atomic_write(self.truth_file, json.dumps(truth, indent=2), mode=0o600)

    def read_truth(self) -> dict[str, Any]:
        return json.loads(self.truth_file.read_text())

    def log(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Append a record to the timeline; the record, for a caller that keeps the timeline in memory."""
        record = {"t": time.time(), "kind": kind, **fields}
        append_jsonl(self.timeline_file, record)
        return record

    def timeline(self) -> list[dict[str, Any]]:
        return list(read_jsonl(self.timeline_file))

    def answers(self) -> list[dict[str, Any]]:
        return list(read_jsonl(self.answers_file))

    def clock(self) -> ScenarioClock:
        """The run's scenario clock (speed and pauses so far)."""
        state = self.read_state()
        return clock_from(state.started_at, state.speed, self.timeline())


def _atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash


def new_run(drills_dir: Path, drill_id: str) -> RunDir:
    drills_dir.mkdir(parents=True, exist_ok=True)
    run_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{drill_id}"
    path = drills_dir / run_id
    n = 1
    while path.exists():
        n += 1
        path = drills_dir / f"{run_id}-{n}"
    path.mkdir()
    _atomic_write(drills_dir / CURRENT, json.dumps({"run_dir": path.name}))
    return RunDir(path)


def current_run(drills_dir: Path) -> RunDir:
    pointer = drills_dir / CURRENT
    if not pointer.is_file():
        raise NoDrillRunning(f"no drill started in {drills_dir.parent} (start one with `obslab drill start ID`)")
    run = RunDir(drills_dir / json.loads(pointer.read_text())["run_dir"])
    if not run.run_file.is_file():
        raise NoDrillRunning(f"the current drill's files are missing from {run.path}")
    return run
