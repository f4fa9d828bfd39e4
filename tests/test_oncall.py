"""On-call and delivery figures (toolkit/analysis/oncall.py, `obslab oncall`, the dashboard's on-call panel).

A hand-built log with one planted incident, so every expectation is computed by hand below: one
attempt ends every second (outcome at k + 0.5 s, k = 0..299) and the 30 ending at 100.5 … 129.5 s
fail; the as-of time is the last event, at 300.0 s, so the lab profile's 1 s evaluation grid falls
on whole seconds. Objective 0.99: a burn rate over F means an error rate over F %.

* page 6m/30s > 6×: fires at t = 107 (long: 7 failed of 107 = 6.5 %; at 106, 6/106 = 5.7 %), stops at
  159 (short (129, 159] holds one failure: 3.3 %); page 1m/5s > 14.4×: fires at 109 (9/60 = 15 %),
  stops at 135, inside it. So one page, [107 s, 159 s): time to resolve 52 s.
* ticket 72m/6m > 1×: fires at 102 (2/102 = 1.96 %; at 101, 1/101 = 0.99 %) and still fires at 300
  (30/300 in its 6m short window): one open ticket.
* pages per week = 1 ÷ (299.7 s observed (first event at 0.3 s) × 60 ÷ 7 days).
* flag changes: release 0 → 5 % at 90 s (a change), 5 → 0 % at 140 s (its rollback), 0 → 0 at 210 s
  (not counted), transcode_mode 0 → 10 % at 200 s (a change whose 6 min window is still open at 300 s).
  Change failure rate 1/1 (the page at 107 s), rollback rate 1/2.
* a drill's fault applied at 95 s, removed at 130 s: time to detect 12 s, to mitigate 23 s.
  Without it, the page's cause is the release change: detect 17 s, mitigate (rollback) 33 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from toolkit.analysis.oncall import (Interval, KnownFault, audit_faults, classify_flag_changes, compute_oncall,
                                     flag_exposure, judge_changes, merge_spans)
from toolkit.drills.history import drill_faults
from toolkit.events import load_events
from toolkit.events.audit import AuditEvent, read_audit_events
from toolkit.events.synth import Effect, SynthConfig, generate, write_jsonl
from toolkit.lab.web import DashboardConfig, create_app
from toolkit.slo.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
SPEC = load_spec(REPO / "slo.yaml")
START = datetime(2026, 1, 5, 10, 0, 0, tzinfo=timezone.utc)
T0 = START.timestamp()
FAILING = range(100, 130)  # attempts whose outcome (k + 0.5 s) fails
WEEK = 7 * 86400


def _ts(s: float) -> str:
    t = START + timedelta(milliseconds=round(s * 1000))
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event(s: float, event: str, k: int | None, **extra) -> dict:
    attempt = k is not None
    return {"schema_version": 1, "ts": _ts(s), "event": event,
            "request_id": f"req-{k:08d}" if attempt else None,
            "upload_id": f"up_{k:024x}" if attempt else None,
            "trace_id": f"{(k or 0) + 1:032x}", "span_id": f"{int(s * 1000) + 1:016x}", "service": "publish-api",
            "service_version": "1.4.0", "user_id": f"u_{k:016x}" if attempt else None,
            "app_version": "5.2.0" if attempt else None, "region": "us-east" if attempt else None,
            "network_type": "wifi" if attempt else None, "media_size_bucket": "small" if attempt else None,
            "flags": {"release": "stable", "transcode_mode": "sync"} if attempt else {}, "synthetic": False, **extra}


def _audit(s: float, event: str, action: str, name: str, old, new) -> dict:
    return _event(s, event, None, actor="tester", change={"action": action, "name": name, "old": old, "new": new})


RELEASE_5 = {"default": "stable", "rollout": {"canary": 5.0}}
RELEASE_0 = {"default": "stable", "rollout": {"canary": 0.0}}


def planted_events() -> list[dict]:
    out = []
    for k in range(300):
        out.append(_event(k + 0.3, "upload_started", k, chunk_count=1, media_size_bytes=1000))
        out.append(_event(k + 0.4, "upload_completed", k, duration_ms=100.0, bytes=1000, chunk_count=1))
        if k in FAILING:
            out.append(_event(k + 0.5, "publish_failed", k, duration_ms=100.0, error_class="internal"))
        else:
            out.append(_event(k + 0.5, "publish_succeeded", k, duration_ms=100.0, video_id=f"vid_{k:024x}"))
    out += [
        _audit(90, "flag_changed", "put", "release", None, RELEASE_5),
        _audit(140, "flag_changed", "put", "release", RELEASE_5, RELEASE_0),
        _audit(200, "flag_changed", "put", "transcode_mode", None, {"default": "sync", "rollout": {"async": 10.0}}),
        _audit(210, "flag_changed", "put", "release", RELEASE_0, RELEASE_0),
        _audit(250, "fault_changed", "put", "slow-transcoder", None,
               {"kind": "latency", "target": "transcoder", "expires_at": T0 + 400}),
        _audit(300, "fault_changed", "delete", "slow-transcoder",
               {"kind": "latency", "target": "transcoder", "expires_at": T0 + 400}, None),
    ]
    return sorted(out, key=lambda e: e["ts"])


def _write_run(drills: Path, name: str, applied: float, removed: float | None, ended: bool) -> None:
    run = drills / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({
        "run_id": name, "drill_id": "bad-canary", "seed": 1, "speed": 1.0, "url": "http://127.0.0.1:1",
        "data_dir": str(drills.parent), "started_at": T0 + applied - 10, "duration_s": 300.0}))
    (run / "truth.json").write_text(json.dumps({
        "drill_id": "bad-canary", "cause": "bad_canary", "cohort": {}, "fault_start_s": 10.0,
        "fault_duration_s": 35.0, "fault_applied_at": T0 + applied,
        **({"fault_removed_at": T0 + removed} if removed is not None else {})}))
    kinds = ["drill_started", "fault_applied"] + (["fault_removed", "drill_finished"] if ended else [])
    (run / "timeline.jsonl").write_text("".join(json.dumps({"t": T0, "kind": k}) + "\n" for k in kinds))


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory) -> Path:
    """A lab's data directory: data/events with the planted log, drills/ with one ended and one running run."""
    d = tmp_path_factory.mktemp("oncall-lab")
    (d / "data" / "events").mkdir(parents=True)
    (d / "data" / "events" / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in planted_events()))
    _write_run(d / "drills", "20260105T100000-bad-canary", applied=95, removed=130, ended=True)
    # A running drill's truth is the learner's question: never read (it would be the latest fault before the page).
    _write_run(d / "drills", "20260105T100100-bad-canary", applied=100, removed=None, ended=False)
    return d


@pytest.fixture(scope="module")
def events(lab_dir):
    return load_events([str(lab_dir / "data" / "events")])


# -- pure logic ----------------------------------------------------------------------------

def test_spans_that_overlap_or_touch_merge_into_one_interval():
    got = merge_spans([(10, 20, "a"), (15, 30, "b"), (30, 35, "a"), (40, None, "b"), (50, 60, "a")])
    assert got == [Interval(10, 35, ("a", "b")), Interval(40, None, ("b", "a"))]


def test_exposure_is_the_share_of_users_off_the_baseline_variant():
    assert flag_exposure("release", None) == 0
    assert flag_exposure("release", {"default": "stable", "rollout": {"canary": 25}}) == 25
    assert flag_exposure("release", {"default": "canary", "rollout": {}}) == 100
    assert flag_exposure("release", {"default": "canary", "rollout": {"stable": 40}}) == 60
    assert flag_exposure("transcode_mode", {"default": "sync", "rollout": {"async": 5}}) == 5
    assert flag_exposure("release", {"rollout": {"canary": "lots"}}) is None
    assert flag_exposure("no-such-flag", None) is None


def test_flag_changes_are_changes_rollbacks_or_neither():
    a = [AuditEvent(1, "flag_changed", "x", "put", "release", None, RELEASE_5),
         AuditEvent(2, "flag_changed", "x", "delete", "release", RELEASE_5, None),
         AuditEvent(3, "flag_changed", "x", "put", "release", None, None),
         AuditEvent(4, "flag_changed", "x", "set", "release", {"canary": 0.0}, {"canary": 0.1}),
         AuditEvent(5, "fault_changed", "x", "put", "f", None, {})]
    assert [c.kind for c in classify_flag_changes(a)] == ["change", "rollback", "unchanged", "unreadable"]


def test_a_fault_lasts_from_its_put_to_its_delete_replacement_or_expiry():
    a = [AuditEvent(10, "fault_changed", "x", "put", "f", None, {"kind": "error", "expires_at": 100}),
         AuditEvent(20, "fault_changed", "x", "put", "f", {}, {"kind": "error"}),  # replaces the first
         AuditEvent(30, "fault_changed", "x", "delete", "f", {}, None),
         AuditEvent(40, "fault_changed", "x", "put", "g", None, {"kind": "latency", "expires_at": 45}),
         AuditEvent(50, "fault_changed", "x", "put", "h", None, {"kind": "latency"})]
    got = [(f.start, f.end) for f in audit_faults(a, as_of=60)]
    assert got == [(10, 20), (20, 30), (40, 45), (50, None)]


def test_a_rollback_fails_only_the_stage_it_undid():
    steps = classify_flag_changes([
        AuditEvent(0, "flag_changed", None, "put", "release", None, {"rollout": {"canary": 1}}),
        AuditEvent(100, "flag_changed", None, "put", "release", {"rollout": {"canary": 1}}, {"rollout": {"canary": 5}}),
        AuditEvent(130, "flag_changed", None, "put", "release", {"rollout": {"canary": 5}}, {"rollout": {"canary": 0}})])
    judged = judge_changes(steps, [], window_s=60, as_of=1000)
    assert [(c.failed, c.rolled_back_at) for c in judged] == [(False, None), (True, 130)]


# -- the planted incident ---------------------------------------------------------------------

def test_audit_events_are_read_one_each(events):
    got = read_audit_events(events)
    assert [(round(a.t - T0, 3), a.event, a.action, a.name) for a in got] == [
        (90, "flag_changed", "put", "release"), (140, "flag_changed", "put", "release"),
        (200, "flag_changed", "put", "transcode_mode"), (210, "flag_changed", "put", "release"),
        (250, "fault_changed", "put", "slow-transcoder"), (300, "fault_changed", "delete", "slow-transcoder")]


def test_ended_drills_only_give_known_faults(lab_dir):
    faults = drill_faults(lab_dir / "drills")
    assert [(f.start - T0, f.end - T0, f.source) for f in faults] == [(95, 130, "drill")]


def test_pages_tickets_and_response_times_of_the_planted_incident(events, lab_dir):
    r = compute_oncall(events, SPEC, "lab", faults=drill_faults(lab_dir / "drills"))
    assert r["as_of"] == _ts(300) and r["scope"]["start"] == _ts(0.3)
    assert r["pages"]["count"] == 1 and r["pages"]["open"] == 0
    page = r["pages"]["intervals"][0]
    assert (page["start"], page["end"]) == (_ts(107), _ts(159))
    assert set(page["alerts"]) == {"publish-success page 1m/5s > 14.4×", "publish-success page 6m/30s > 6×"}
    assert r["pages"]["per_week"]["value"] == pytest.approx(1 / (299.7 * 60 / WEEK))
    assert r["tickets"]["count"] == 1 and r["tickets"]["open"] == 1
    assert r["tickets"]["intervals"][0]["start"] == _ts(102)
    (incident,) = r["incidents"]
    assert incident["cause_kind"] == "fault" and "bad-canary" in incident["cause"]
    assert incident["time_to_detect_s"] == pytest.approx(12)
    assert incident["time_to_mitigate_s"] == pytest.approx(23)
    assert incident["time_to_resolve_s"] == pytest.approx(52)
    assert incident["scaled_time_to_detect_s"] == pytest.approx(12 * 60)
    resp = r["response"]
    assert (resp["time_to_detect"]["value"], resp["time_to_detect"]["n"]) == (pytest.approx(12), 1)
    d = r["delivery"]
    assert d["changes"]["value"] == 2 and d["rollbacks"]["value"] == 1
    assert d["change_window_s"] == 360
    assert (d["change_failure_rate"]["numerator"], d["change_failure_rate"]["denominator"]) == (1, 1)
    assert (d["rollback_rate"]["numerator"], d["rollback_rate"]["denominator"]) == (1, 2)
    assert d["rollback_rate"]["value"] == 0.5
    for figure in (r["pages"]["per_week"], resp["time_to_mitigate"], d["change_failure_rate"], d["rollback_rate"]):
        assert figure["definition"]


def test_without_a_known_fault_the_page_joins_the_change_before_it(events):
    r = compute_oncall(events, SPEC, "lab")
    (incident,) = r["incidents"]
    assert incident["cause_kind"] == "change" and incident["cause"].startswith("flag release 0 % → 5 %")
    assert (incident["time_to_detect_s"], incident["time_to_mitigate_s"]) == (pytest.approx(17), pytest.approx(33))


def test_a_scope_after_the_page_has_no_page_and_fewer_changes(events):
    since = datetime.fromtimestamp(T0 + 160, timezone.utc)
    r = compute_oncall(events, SPEC, "lab", since=since)
    assert r["pages"]["count"] == 0 and r["incidents"] == []
    assert r["delivery"]["changes"]["value"] == 1  # transcode_mode at 200 s
    assert r["delivery"]["change_failure_rate"]["value"] is None  # its window is still open
    assert r["pages"]["per_week"]["denominator"] == pytest.approx(140 * 60 / WEEK)


def test_a_synthetic_outage_pages_once_and_joins_its_fault(tmp_path):
    """Seeded synthetic traffic (toolkit/events/synth.py) with an outage planted from 400 to 460 s: 80 % of the
    attempts started in it fail. At ~3.3 attempts/s the 1m/5s page needs 15 % of a minute's ~200 outcomes to
    fail, which 80 % failures reach within seconds of the outage's first outcomes."""
    cfg = SynthConfig(attempts=3000, duration_s=900, start=START, audit_events=0, cancel_rate=0.0, abandon_rate=0.0,
                      effects=(Effect(start_s=400, end_s=460, failure_rate=0.8),))
    write_jsonl(generate(cfg, seed=11), tmp_path / "events.jsonl")
    ev = load_events([str(tmp_path / "events.jsonl")])
    r = compute_oncall(ev, SPEC, "lab", faults=[KnownFault(T0 + 400, T0 + 460, "planted outage", "drill")])
    assert r["pages"]["count"] == 1
    (incident,) = r["incidents"]
    assert incident["cause"] == "planted outage [drill]"
    assert 0 < incident["time_to_detect_s"] < 30
    page_start = incident["time_to_detect_s"] + 400
    assert incident["time_to_mitigate_s"] == pytest.approx(460 - page_start)
    assert incident["time_to_resolve_s"] > incident["time_to_mitigate_s"]  # the burn falls back after the fix
    assert r["delivery"]["changes"]["value"] == 0 and r["delivery"]["change_failure_rate"]["value"] is None


# -- the command and the dashboard ------------------------------------------------------------

def _obslab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("obslab")), *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def test_the_command_reads_a_lab_directory(lab_dir):
    p = _obslab("oncall", str(lab_dir), "--format", "json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["schema"] == "obslab.oncall/v1"
    assert r["incidents"][0]["time_to_detect_s"] == pytest.approx(12)  # the ended drill's fault, from drills/
    table = _obslab("oncall", str(lab_dir))
    assert table.returncode == 0, table.stderr
    assert "pages per week" in table.stdout and "change failure rate" in table.stdout


def test_the_command_answers_on_a_lab_with_one_event(tmp_path):
    """A lab that just started (the README runs the command on one): zero observed time is an answer, not an error."""
    (tmp_path / "data" / "events").mkdir(parents=True)
    (tmp_path / "data" / "events" / "events.jsonl").write_text(json.dumps(planted_events()[0]) + "\n")
    p = _obslab("oncall", str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "pages per week" in p.stdout and "Nothing observed yet" in p.stdout


def test_the_command_refuses_bad_options_in_one_line(lab_dir):
    p = _obslab("oncall", str(lab_dir), "--last", "5m", "--since", _ts(10))
    assert p.returncode == 2 and "--last cannot be combined with --since" in p.stderr
    p = _obslab("oncall", str(lab_dir), "--change-window", "0s")
    assert p.returncode == 2 and "--change-window" in p.stderr


@pytest.mark.parametrize("window, cli", [("lab", ()), ("2m", ("--last", "2m"))])
def test_the_dashboard_panel_and_the_command_agree(lab_dir, window, cli):
    """The panel's JSON is the command's, from the same function, at the same as-of time."""
    as_of = datetime.fromtimestamp(T0 + 300, timezone.utc)
    app = create_app(DashboardConfig(data_dir=lab_dir, spec_path=REPO / "slo.yaml", settle_s=2.0),
                     {"OBSLAB_CLOCK": lambda: as_of + timedelta(seconds=2)})
    resp = app.test_client().get(f"/api/oncall?window={window}")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    panel = resp.get_json()
    p = _obslab("oncall", str(lab_dir), "--until", _ts(300), *cli, "--format", "json")
    assert p.returncode == 0, p.stderr
    command = json.loads(p.stdout)
    panel.pop("inputs"), command.pop("inputs")  # the files as each found them (the directory vs its files)
    assert panel == command
    assert panel["pages"]["count"] == (1 if window == "lab" else 0)
