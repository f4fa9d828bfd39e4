"""A rollout call drill run for real: the service (gunicorn API + transcoder on free loopback ports), the drill's
detached scheduler and Locust load at --speed 10, the calls made with `obslab drill decide` as each comes due.

rollout-capacity-cliff: continue at 1 % and 5 %, roll back at 25 % (where its regression starts). Checks that the
service's flag really moved 1 → 5 → 25 % and back to 0 %, that the regression was applied only from 25 %, that
everything is removed at the end, and that the report grades every call against the truth with the judge's
evidence and the power at each stage. About 60 s wall on the 2-core CI machine.
"""

from __future__ import annotations

import json
import time

import pytest
import requests
from typer.testing import CliRunner

from toolkit.cli.base import app
from toolkit.drills import runner
from toolkit.lab.processes import ServiceProcesses

pytestmark = pytest.mark.slow

DRILL = "rollout-capacity-cliff"
CALLS = {1.0: "continue", 5.0: "continue", 25.0: "rollback"}


def _flag(svc) -> dict:
    r = requests.get(f"{svc.base_url}/admin/flags/release", timeout=5,
                     headers={"Authorization": f"Bearer {svc.admin_token}"})
    r.raise_for_status()
    return r.json()


def test_a_rollout_drill_runs_stage_by_stage_on_the_learners_calls(tmp_path, monkeypatch):
    t0 = time.monotonic()
    cli = CliRunner()
    base = tmp_path
    with ServiceProcesses(base / "data", workers=2) as svc:
        monkeypatch.setenv("OBSLAB_ADMIN_TOKEN", svc.admin_token)
        dd = ["--data-dir", str(base)]
        out = cli.invoke(app, ["drill", "start", DRILL, "--speed", "10", "--seed", "7", "--url", svc.base_url] + dd)
        assert out.exit_code == 0, out.output
        assert "obslab drill decide" in out.output
        drills = base / "drills"
        seen_flags, made = [], []
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                rs = runner.rollout_status(drills)
                if rs.phase == "ended":
                    break
                if rs.phase == "call_due" and (rs.percent, rs.round) not in [m[:2] for m in made]:
                    seen_flags.append((rs.percent, _flag(svc)))
                    status = cli.invoke(app, ["drill", "status"] + dd)
                    assert "call due" in status.output, status.output
                    call = CALLS[rs.percent]
                    res = cli.invoke(app, ["drill", "decide", call] + dd)
                    assert res.exit_code == 0, res.output
                    made.append((rs.percent, rs.round, call))
                time.sleep(0.2)
            st = runner.wait_finished(drills, timeout_s=60)
            assert st.phase == "finished", st.phase
            after = _flag(svc)
            faults = requests.get(f"{svc.base_url}/admin/faults", timeout=5,
                                  headers={"Authorization": f"Bearer {svc.admin_token}"}).json()
        finally:
            runner.stop(drills) if runner.scheduler_alive(runner.status(drills).state) else None
        report = cli.invoke(app, ["drill", "report"] + dd)
    wall = time.monotonic() - t0
    assert report.exit_code == 0, report.output
    assert [m[2] for m in made] == ["continue", "continue", "rollback"]
    # The service's flag was at each stage's percent when its call came due; removed at the end.
    assert [(p, f["rollout"]) for p, f in seen_flags] == [(p, {"canary": p}) for p in (1.0, 5.0, 25.0)], seen_flags
    assert not after.get("rollout", {}).get("canary"), after
    assert not (faults.get("faults") if isinstance(faults, dict) else faults), faults
    run = sorted(drills.glob(f"*-{DRILL}"))[-1]
    timeline = [json.loads(line) for line in (run / "timeline.jsonl").read_text().splitlines()]
    kinds = [e["kind"] for e in timeline]
    # The regression is applied when the 25 % stage starts, not before.
    assert kinds.index("fault_applied") > max(i for i, e in enumerate(timeline)
                                              if e["kind"] == "rollout_stage" and e["percent"] == 5)
    ended = next(e for e in timeline if e["kind"] == "rollout_ended")
    assert ended["reason"] == "rolled_back"
    data = json.loads((run / "report" / "report.json").read_text())
    calls = data["calls"]
    assert [(c["stage_percent"], c["call"]) for c in calls] == [(1.0, "continue"), (5.0, "continue"),
                                                                  (25.0, "rollback")]
    assert [c["harmful"] for c in calls] == [False, False, True]
    assert [c["right_call"] for c in calls[:2]] == ["continue", "continue"]
    assert calls[2]["right_call"] == ("rollback" if calls[2]["shown"] else "continue")
    assert data["grade"]["total"] == pytest.approx(100 * sum(c["credit"] for c in calls) / 3, abs=0.01)
    for c in calls:
        ev = c["evidence"]["overall"]
        assert ev["control_attempts"] > 0 and "publish_success_rate" in ev["guardrails"]
        assert 0 <= ev["power"]["detect_success_drop"] <= 1
    md = (run / "report" / "report.md").read_text()
    assert "right call" in md and "power" in md and "judge" in md
    print(json.dumps({"wall_s": round(wall, 1), "calls": [
        {k: c[k] for k in ("stage_percent", "call", "right_call", "shown", "credit")}
        | {"control": c["evidence"]["overall"]["control_attempts"],
           "variant": c["evidence"]["overall"]["variant_attempts"],
           "verdict": c["evidence"]["overall"]["verdict"], "power": c["evidence"]["overall"]["power"]}
        for c in calls], "grade": data["grade"]}, indent=1))
