"""Every catalogue drill, run unattended (--auto) against the real service, compressed and in parallel.

One module fixture starts each drill on a service of its own (gunicorn API + transcoder on free
loopback ports, its own data dir) with `obslab drill start ID --auto --speed S`, a few at a time,
and keeps what each run wrote; the tests then check, per drill, that the toolkit's own analysis
ranked the injected cause and cohort first, and that the report's numbers are the SLI engine's
numbers over the same events and window.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from toolkit.drills.schema import load_catalogue
from toolkit.lab.processes import ServiceProcesses

pytestmark = pytest.mark.slow

DRILLS = sorted(load_catalogue())
SPEED = float(os.environ.get("OBSLAB_DRILL_TEST_SPEED", "10"))
# A 5 % canary needs more time than the others to collect enough canary failures to judge.
SPEEDS = {"bad-canary": SPEED / 2}
PARALLEL = int(os.environ.get("OBSLAB_DRILL_TEST_PARALLEL", "4"))
SEED = 20261128


@dataclass
class LiveRun:
    drill_id: str
    returncode: int
    stdout: str
    stderr: str
    run_dir: Path | None
    events_dir: Path


def _run_one(base: Path, drill_id: str) -> LiveRun:
    data_dir = base / drill_id
    with ServiceProcesses(data_dir / "data", workers=2) as svc:
        proc = subprocess.run(
            [sys.executable, "-c", "from toolkit.cli import main; main()", "drill", "start", drill_id,
             "--auto", "--speed", str(SPEEDS.get(drill_id, SPEED)), "--seed", str(SEED), "--data-dir", str(data_dir),
             "--url", svc.base_url],
            capture_output=True, text=True, timeout=600, env={**os.environ, "OBSLAB_ADMIN_TOKEN": svc.admin_token})
        runs = sorted((data_dir / "drills").glob("*-" + drill_id))
        return LiveRun(drill_id, proc.returncode, proc.stdout, proc.stderr, runs[-1] if runs else None,
                       svc.events_dir)


@pytest.fixture(scope="module")
def live_runs(tmp_path_factory) -> dict[str, LiveRun]:
    base = tmp_path_factory.mktemp("drills")
    wanted = [d for d in DRILLS if not os.environ.get("OBSLAB_DRILL_TEST_ONLY")
              or d in os.environ["OBSLAB_DRILL_TEST_ONLY"].split(",")]
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        # The longest drill first, so it does not start last.
        wanted.sort(key=lambda d: SPEEDS.get(d, SPEED))
        return dict(zip(wanted, pool.map(lambda d: _run_one(base, d), wanted)))


def _get(live_runs, drill_id) -> LiveRun:
    if drill_id not in live_runs:
        pytest.skip(f"{drill_id} not selected by OBSLAB_DRILL_TEST_ONLY")
    run = live_runs[drill_id]
    assert run.returncode == 0, f"{drill_id}: {run.stderr}\n{run.stdout}"
    assert run.run_dir is not None
    return run


@pytest.mark.parametrize("drill_id", DRILLS)
def test_auto_finds_the_injected_cause_and_cohort_first(live_runs, drill_id):
    run = _get(live_runs, drill_id)
    drill = load_catalogue()[drill_id]
    auto = json.loads((run.run_dir / "auto.json").read_text())
    assert auto["causes"][0]["cause"] == drill.truth.cause, json.dumps(auto["causes"], indent=1)
    assert auto["cohorts"][0]["cohort"] == drill.truth.cohort, json.dumps(auto["cohorts"][:3], indent=1)
    report = json.loads((run.run_dir / "report" / "report.json").read_text())
    assert report["grade"]["points"]["cause"] == 50 and report["grade"]["points"]["cohort"] == 30


@pytest.mark.parametrize("drill_id", DRILLS)
def test_report_numbers_are_what_obslab_sli_computes(live_runs, drill_id):
    from datetime import datetime, timezone

    run = _get(live_runs, drill_id)
    report = json.loads((run.run_dir / "report" / "report.json").read_text())
    start, end = report["fault_window"]

    def iso(t):
        return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    proc = subprocess.run([sys.executable, "-c", "from toolkit.cli import main; main()", "sli", str(run.events_dir),
                           "--since", iso(start), "--until", iso(end), "--format", "json"],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    sli = json.loads(proc.stdout)["totals"]
    success = next(f for f in sli["primary"] if f["name"] == "publish_success_rate")
    assert report["sli_fault_window"]["good"] == success["numerator"]
    assert report["sli_fault_window"]["total"] == success["denominator"]
    counts = sli["counts"]
    assert report["figures"]["failed_publishes"]["value"] == counts["failed"] + counts["abandoned"]
    latency = {f["statistic"]: f["value"] for f in sli["latency"] if f["name"].startswith("processing_latency_p")}
    assert report["sli_fault_window"]["processing_latency_ms"] == latency
    md = (run.run_dir / "report" / "report.md").read_text()
    assert f"{success['numerator']}/{success['denominator']}" in md
    for png in ("sli-burn.png", "latency.png", "cohorts.png"):
        assert (run.run_dir / "report" / png).stat().st_size > 10_000
