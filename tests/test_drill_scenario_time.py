"""Scenario time: at `--speed s` the lab's alert windows shrink by `s` in the engine and in Prometheus,
so the page a briefing promises fires at every allowed speed; the scenario clock pauses and resumes.

The engine side replays synthetic events shaped like regional-storage-outage (its window, its fault's
length, about the lab's traffic) compressed by the speed; the Prometheus side runs `promtool test rules`
on the rules generated for the speed.
"""

from __future__ import annotations

import json
import os
import signal
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from toolkit.drills import runner
from toolkit.drills.clock import ScenarioClock, clock_from
from toolkit.drills.measure import Window, drill_outcomes, read_drill_events
from toolkit.drills.pages import engine_first_page
from toolkit.drills.runner import DrillError
from toolkit.drills.schema import find_drill
from toolkit.drills.state import RunDir, RunState
from toolkit.events.synth import Effect, SynthConfig, generate, write_jsonl
from toolkit.slo import names
from toolkit.slo.files import write_rule_files
from toolkit.slo.scenario import MAX_SPEED, at_speed
from toolkit.slo.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC = load_spec(ROOT / "slo.yaml")
PROMTOOL = shutil.which("promtool")
# About the lab's publish traffic during a drill (123 attempts in 18 s at 12 users).
ATTEMPTS_PER_S = 7.0
# The lab was running before the drill started: its traffic fills the alert windows.
LEAD_S = 120.0


def _outage_run(tmp_path: Path, speed: float, seed: int = 3):
    """Events of regional-storage-outage as its script runs at ``speed``: every eu-west publish fails from
    the fault's start for its duration. Returns (outcomes reader, start, end, fault start)."""
    drill = find_drill("regional-storage-outage")
    duration = drill.setup.duration_s / speed
    fault_start = drill.fault.start_at(0.5) / speed
    fault_end = fault_start + drill.fault.duration_s / speed
    config = SynthConfig(attempts=int(ATTEMPTS_PER_S * (LEAD_S + duration)), duration_s=LEAD_S + duration,
                         synthetic_share=1.0, region_weights=(0.3, 0.25, 0.25, 0.2),
                         effects=(Effect(start_s=LEAD_S + fault_start, end_s=LEAD_S + fault_end,
                                         where={"region": "eu-west"}, failure_rate=1.0, error_class="chunk_missing"),))
    events = tmp_path / f"events-{speed:g}"
    events.mkdir()
    write_jsonl(generate(config, seed=seed), events / "events.jsonl")
    start = config.start.timestamp() + LEAD_S
    end = start + duration
    return events, start, end, start + fault_start


def _first_page(events: Path, start: float, end: float, spec) -> float | None:
    read = read_drill_events(events, Window(start, end), spec.abandon_after_s, as_of=end)
    return engine_first_page(drill_outcomes(read, spec), spec, start, end).at


@pytest.mark.parametrize("speed", [1.0, MAX_SPEED])
def test_the_promised_page_fires_in_the_engine_at_every_allowed_speed(tmp_path, speed):
    events, start, end, fault_start = _outage_run(tmp_path, speed)
    paged = _first_page(events, start, end, at_speed(SPEC, speed))
    assert paged is not None, f"no page at speed ×{speed:g}"
    # Within the scenario's first few minutes of the outage, whatever the speed.
    assert 0 <= (paged - fault_start) * speed <= 120


def test_without_pacing_the_page_never_fires_at_speed_10(tmp_path):
    """What the lab did before: lab-profile windows at ×10 speed — the 18 s outage never fills the 1 m window."""
    events, start, end, _ = _outage_run(tmp_path, MAX_SPEED)
    assert _first_page(events, start, end, SPEC) is None


def test_the_paced_profile_keeps_every_window_in_step():
    fast = at_speed(SPEC, 10)
    lab, paced = SPEC.profile("lab"), fast.profile("lab")
    assert paced.time_compression == lab.time_compression * 10
    assert paced.scrape_interval_s == pytest.approx(lab.scrape_interval_s / 10)
    assert [w.short_s for w in fast.windows_for("lab")] == pytest.approx([w.short_s / 10 for w in SPEC.windows_for("lab")])
    assert fast.profile("prod") == SPEC.profile("prod")
    assert at_speed(SPEC, 1) is SPEC


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")
@pytest.mark.parametrize("speed", [1.0, MAX_SPEED])
def test_prometheus_rules_for_the_speed_fire_the_page(tmp_path, speed):
    """`promtool test rules` on the rules the lab loads for a drill at this speed: the page fires for an
    outage at the boundary the reference model computes (toolkit.slo.rule_tests)."""
    write_rule_files(at_speed(SPEC, speed), "lab", tmp_path)
    text = (tmp_path / names.RULES_FILE).read_text()
    short = SPEC.windows_for("lab")[0].short_s / speed
    assert f"[{_prom_duration(short)}]" in text  # the page's short window, compressed
    r = subprocess.run([PROMTOOL, "test", "rules", names.rule_tests_file("page")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def _prom_duration(seconds: float) -> str:
    from contract.durations import format_duration

    return format_duration(seconds)


# -- the scenario clock --------------------------------------------------------------------------

def test_clock_excludes_pauses_and_scales_by_speed():
    clock = ScenarioClock(1000.0, 10.0, ((1010.0, 1030.0), (1040.0, None)))
    assert clock.active_s(1005.0) == 5.0 and clock.scenario_s(1005.0) == 50.0
    assert clock.active_s(1020.0) == 10.0  # frozen during the first pause
    assert clock.active_s(1035.0) == 15.0
    assert clock.active_s(1100.0) == 20.0 and clock.paused  # the open pause freezes it
    assert clock.wall_at(25.0, now=1100.0) == 1000.0 + 25 + 20 + 60
    replay = clock_from(1000.0, 10.0, [{"kind": "clock_paused", "t": 1010.0}, {"kind": "clock_resumed", "t": 1030.0},
                                       {"kind": "clock_paused", "t": 1040.0}, {"kind": "clock_paused", "t": 1050.0}])
    assert replay == clock


def _running_run(tmp_path: Path, speed: float = 5.0) -> Path:
    """A run whose 'scheduler' is this very process (alive), so the run is running."""
    drills = tmp_path / "drills"
    run = RunDir(drills / "run-clock")
    run.path.mkdir(parents=True)
    (drills / "current.json").write_text('{"run_dir": "run-clock"}')
    run.write_state(RunState(run_id="run-clock", drill_id="retry-storm", seed=1, speed=speed,
                             url="http://127.0.0.1:1", data_dir=str(tmp_path), started_at=time.time() - 2.0,
                             duration_s=120.0, scheduler_pid=os.getpid()))
    run.write_truth({"cause": "x"})
    return drills


def test_pause_freezes_the_time_left_and_resume_goes_on(tmp_path):
    # Bounds from wall times taken around each call, not fixed tolerances: a busy machine stretches them.
    made = time.time()
    drills = _running_run(tmp_path)
    runner.pause(drills)
    paused = runner.status(drills)
    assert paused.paused and 10.0 <= paused.elapsed_s <= (2.0 + time.time() - made) * 5  # 2 s wall × speed 5
    with pytest.raises(DrillError, match="already paused"):
        runner.pause(drills)
    time.sleep(0.6)
    still = runner.status(drills)
    assert still.elapsed_s == paused.elapsed_s and still.remaining_s == paused.remaining_s
    before_resume = time.time()
    runner.resume(drills)
    after_resume = time.time()
    time.sleep(0.4)
    before_status = time.time()
    resumed = runner.status(drills)
    after_status = time.time()
    ran_s = resumed.elapsed_s - paused.elapsed_s
    assert not resumed.paused and (before_status - after_resume) * 5 <= ran_s <= (after_status - before_resume) * 5
    with pytest.raises(DrillError, match="not paused"):
        runner.resume(drills)


def test_speed_above_the_maximum_is_refused(tmp_path):
    from toolkit.drills.lab import Lab

    with pytest.raises(DrillError, match=f"at most {MAX_SPEED:g}"):
        runner.start("retry-storm", Lab(tmp_path, "http://127.0.0.1:9", "t"), speed=MAX_SPEED * 2)


# -- a real Prometheus, paced and reloaded -----------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed")
def test_a_drill_paces_the_labs_prometheus_and_sets_it_back(tmp_path):
    """The lab's Prometheus command line (`--web.enable-lifecycle`) takes a drill's rules for ×10 on
    /-/reload: scrape and evaluation every 100 ms, the page's windows 6s/500ms; then speed 1 again."""
    import requests

    from toolkit.drills.lab import pace_prometheus
    from toolkit.lab.processes import free_ports
    from toolkit.slo.prometheus_config import write_prometheus_config

    port, api = free_ports(2)
    prom_dir = tmp_path / "prometheus"
    config = write_prometheus_config(prom_dir, ROOT / "slo.yaml", "lab", f"127.0.0.1:{api}")
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([shutil.which("prometheus"), f"--config.file={config}",
                             f"--storage.tsdb.path={prom_dir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
                             "--web.enable-lifecycle", "--log.level=warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)

        def loaded() -> tuple[str, str]:
            cfg = requests.get(f"{url}/api/v1/status/config", timeout=5).json()["data"]["yaml"]
            rules = json.dumps(requests.get(f"{url}/api/v1/rules", timeout=5).json()["data"])
            return cfg, rules

        assert pace_prometheus(tmp_path, f"http://127.0.0.1:{api}", url, str(ROOT / "slo.yaml"), "lab", 10) is None
        cfg, rules = loaded()
        assert "scrape_interval: 100ms" in cfg and "[500ms]" in rules and "[6s]" in rules
        assert pace_prometheus(tmp_path, f"http://127.0.0.1:{api}", url, str(ROOT / "slo.yaml"), "lab", 1) is None
        cfg, rules = loaded()
        assert "scrape_interval: 1s" in cfg and "[5s]" in rules and "[500ms]" not in rules
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


# -- the lab's own surfaces while a drill runs: obslab budget, the dashboard ----------------------------

def test_the_engines_windows_at_a_speed_are_the_rules_windows_and_never_compressed_twice():
    from toolkit.measures.definitions import alert_timing

    fast = alert_timing(SPEC, "lab", MAX_SPEED)
    assert fast.windows == at_speed(SPEC, MAX_SPEED).windows_for("lab")  # what Prometheus's rules are made of
    assert fast.scenario_windows == SPEC.windows_for("lab")
    assert (fast.windows[0].long, fast.windows[0].short) == ("6s", "500ms")
    assert fast.step_s == pytest.approx(0.1) and fast.time_compression == 600
    assert fast.period_s(SPEC.slo("publish-success")) == pytest.approx(12 * 3600 / MAX_SPEED)
    # A spec already paced is paced to the speed asked, not once more.
    assert alert_timing(fast.spec, "lab", MAX_SPEED).windows == fast.windows
    assert alert_timing(fast.spec, "lab").speed == MAX_SPEED
    assert alert_timing(fast.spec, "lab", 1).windows == SPEC.windows_for("lab")
    assert "scenario time at ×10" in fast.describe()


def _page_history(report):
    slo = next(s for s in report.slos if s.slo == "publish-success")
    return next(h for h in slo.history if h.severity == "page")


def test_obslab_budget_at_the_drills_speed_fires_the_promised_page(tmp_path):
    """The engine behind `obslab budget`: at the drill's speed its replay pages for the outage at ×10; with
    the spec's own windows (what the lab showed before) it never does."""
    from datetime import datetime, timezone

    from toolkit.events import load_events
    from toolkit.measures.budget import compute_budget

    events, start, end, fault_start = _outage_run(tmp_path, MAX_SPEED)
    at = datetime.fromtimestamp(end, timezone.utc).replace(tzinfo=None)
    paced = compute_budget(load_events([str(events)]), SPEC, "lab", at=at, speed=MAX_SPEED)
    page = _page_history(paced)
    assert paced.speed == MAX_SPEED and paced.time_compression == 600 and paced.grid_step == "100ms"
    assert (page.long_window, page.short_window) == ("6s", "500ms")
    assert (page.scenario_long_window, page.scenario_short_window) == ("1m", "5s")
    assert page.first_fired is not None
    fired = datetime.fromisoformat(page.first_fired.replace("Z", "+00:00")).timestamp()
    assert 0 <= (fired - fault_start) * MAX_SPEED <= 120  # within two scenario minutes of the outage
    assert "scenario time at ×10" in paced.timing
    unpaced = compute_budget(load_events([str(events)]), SPEC, "lab", at=at)
    assert unpaced.speed == 1 and _page_history(unpaced).first_fired is None


def _lab_with_running_drill(tmp_path: Path, speed: float) -> tuple[Path, float, float]:
    """A lab data dir whose events are the ×``speed`` outage and whose drill is running (its 'scheduler' is
    this very process). Returns (data dir, drill end, fault start)."""
    data_dir = tmp_path / "lab"
    (data_dir / "data").mkdir(parents=True)
    events, start, end, fault_start = _outage_run(tmp_path, speed)
    events.rename(data_dir / "data" / "events")
    drills = data_dir / "drills"
    run = RunDir(drills / "run-fast")
    run.path.mkdir(parents=True)
    (drills / "current.json").write_text('{"run_dir": "run-fast"}')
    run.write_state(RunState(run_id="run-fast", drill_id="regional-storage-outage", seed=1, speed=speed,
                             url="http://127.0.0.1:1", data_dir=str(data_dir), started_at=start,
                             duration_s=end - start, scheduler_pid=os.getpid(),
                             events_dir=str(data_dir / "data" / "events")))
    run.log("drill_started", drill="regional-storage-outage", seed=1, speed=speed, auto=False)
    return data_dir, end, fault_start


def test_the_dashboard_burn_panel_runs_in_the_drills_scenario_time(tmp_path):
    """/api/snapshot during a drill at ×10: the page's windows are 6s/500ms of wall time (1m/5s of scenario
    time), the page the briefing promises shows as fired, and the snapshot says it is in scenario time."""
    from datetime import datetime, timezone

    from toolkit.lab.web import DashboardConfig, create_app

    data_dir, end, fault_start = _lab_with_running_drill(tmp_path, MAX_SPEED)
    at = datetime.fromtimestamp(int(end) + 1, timezone.utc)
    config = DashboardConfig(data_dir=data_dir, spec_path=ROOT / "slo.yaml", settle_s=0)
    client = create_app(config, {"OBSLAB_CLOCK": lambda: at}).test_client()
    snap = client.get("/api/snapshot").get_json()
    assert snap["scenario"]["speed"] == MAX_SPEED and snap["scenario"]["time_compression"] == 600
    assert "scenario time at ×10" in snap["scenario"]["text"]
    page = next(w for w in snap["burn"]["windows"] if w["slo"] == "publish-success" and w["severity"] == "page")
    assert (page["long"], page["short"], page["scenario_long"], page["scenario_short"]) == ("6s", "500ms", "1m", "5s")
    assert page["first_fired"] is not None
    fired = datetime.fromisoformat(page["first_fired"].replace("Z", "+00:00")).timestamp()
    assert 0 <= (fired - fault_start) * MAX_SPEED <= 120
    assert "A drill is running at ×10" in snap["burn"]["definition"]
    assert snap["budgets"][0]["period"] == "1h12m"
    series = client.get("/api/series").get_json()
    assert "1m window (scenario; 6s wall)" in series["burn"]
    # `obslab top` reads the same snapshot, and names the windows the same way.
    from rich.console import Console

    from toolkit.lab.top import TopSource, render, take_snapshot

    top = take_snapshot(TopSource(data_dir, SPEC, settle_s=0), now=at)
    assert top["scenario"]["speed"] == MAX_SPEED
    console = Console(width=220, record=True)
    console.print(render(top, width=220))
    assert "1m (6s wall)" in console.export_text()
    # The drill over (its scheduler cleaned up): the lab's own windows again, in which this outage never paged.
    RunDir(data_dir / "drills" / "run-fast").log("drill_finished")
    after = client.get("/api/snapshot").get_json()
    assert after["scenario"]["speed"] == 1
    page = next(w for w in after["burn"]["windows"] if w["slo"] == "publish-success" and w["severity"] == "page")
    assert (page["long"], page["first_fired"]) == ("1m", None)


def test_obslab_budget_finds_the_running_drills_speed_from_the_events_path(tmp_path):
    """`obslab budget .obslab/data/events --profile lab` while a drill runs at ×10: scenario time without
    being told, said on stderr and in the header; --speed 1 asks for the spec's own windows."""
    from typer.testing import CliRunner

    from toolkit.cli import app

    from datetime import datetime, timezone

    data_dir, end, _ = _lab_with_running_drill(tmp_path, MAX_SPEED)
    at = datetime.fromtimestamp(end, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    args = ["budget", str(data_dir / "data" / "events"), "--slo", str(ROOT / "slo.yaml"), "--profile", "lab",
            "--at", at]
    runner_ = CliRunner()  # Click 8.2+: stdout and stderr kept apart
    paced = runner_.invoke(app, [*args, "--format", "json"])
    assert paced.exit_code == 0, paced.output
    report = json.loads(paced.stdout)
    assert report["speed"] == MAX_SPEED and report["time_compression"] == 600
    assert "a drill is running at ×10" in paced.stderr
    page = next(h for h in report["slos"][0]["history"] if h["severity"] == "page")
    assert page["long_window"] == "6s" and page["first_fired"] is not None
    table = runner_.invoke(app, [*args, "--format", "markdown"])
    assert "scenario time at ×10" in table.stdout and "1m/5s (6s/500ms wall)" in table.stdout
    own = json.loads(runner_.invoke(app, [*args, "--format", "json", "--speed", "1"]).stdout)
    assert own["speed"] == 1 and next(h for h in own["slos"][0]["history"] if h["severity"] == "page")["first_fired"] is None
    bad = runner_.invoke(app, [*args, "--speed", "0"])
    assert bad.exit_code != 0 and "--speed 0" in bad.stderr


# -- the report: every time in scenario time ---------------------------------------------------------

def test_the_report_states_every_time_in_scenario_time_pauses_excluded(tmp_path):
    """A run at ×10 paused for 20 s of wall time while the fault was in force: the fault lasted 60 s of wall
    time but 400 s of scenario time; the report, its JSON and its model STAR say so, and time to detect is
    never multiplied by the speed twice."""
    from drill_runs import FAULT, build_run
    from toolkit.analysis.story_check import check_story, measured_figures
    from toolkit.drills.report import write_report
    from toolkit.drills.state import append_jsonl

    answer = {"cause": "storage_outage", "cohort": {"region": "eu-west"}, "impact": 5.0, "at_s": 400.0}
    run = build_run(tmp_path, speed=MAX_SPEED, answers=[answer], write=False)
    start = run.read_state().started_at
    append_jsonl(run.timeline_file, {"t": start + 320.0, "kind": "clock_paused"})
    append_jsonl(run.timeline_file, {"t": start + 340.0, "kind": "clock_resumed"})
    md = write_report(run, SPEC).read_text()  # a spec as loaded: the report paces it to the run's speed
    report = json.loads((run.report_dir / "report.json").read_text())
    scen = report["scenario"]
    assert scen["fault_s"] == pytest.approx(400.0) and scen["wall"]["fault_s"] == pytest.approx(60.0)
    assert report["fault_window_scenario_s"] == pytest.approx([FAULT[0] * MAX_SPEED, FAULT[0] * MAX_SPEED + 400.0])
    # Detection by the answer at wall 400 s at the latest: (400 − 20) × 10 − 3000 = 800 scenario s after the fault began.
    ttd = report["grade"]["time_to_detect_s"]
    assert ttd is not None and ttd <= 800.0 + 1e-6
    assert scen["time_to_detect_s"] == ttd
    assert scen["wall"]["time_to_detect_s"] == pytest.approx(ttd / MAX_SPEED + (20.0 if ttd > 200 else 0.0), abs=0.01)
    assert "| t (scenario s) | t (wall s) |" in md
    assert "400.0 s of scenario time (60.0 s wall)" in md.split("## Evidence")[0]  # the fault sentence
    assert "Window: the fault window, 400.0 s of scenario time (60.0 s wall)" in md
    # Alert windows as the briefing names them (scenario time), the wall windows beside them.
    assert set(report["burn_rates"]) >= {"1m", "5s"} and "1m (6s wall)" in md
    page = next(a for a in report["alerts"] if a["severity"] == "page")
    assert (page["long"], page["short"], page["long_wall"], page["short_wall"]) == ("1m", "5s", "6s", "500ms")
    assert "--speed 10 --at" in md and "12h period of scenario time" in md
    star = md[md.index("## Debrief (STAR)"):]
    assert "The incident lasted 400.0 s of scenario time (60.0 s wall) at ×10" in star
    assert f"detection took {ttd:.1f} s of scenario time" in star
    # Every number of the model answer's Situation, Result and Reflection is one the report measured.
    body = "\n".join(f"## {line.split('**')[1].rstrip('.')}\n{line.split('**', 2)[2]}" for line in star.splitlines()
                     if line.startswith("- **"))
    checked = [n for n in check_story(body, measured_figures(report)).numbers
               if n.section in ("Situation", "Result", "Reflection")]
    assert checked and all(n.status == "matched" for n in checked), [n for n in checked if n.status != "matched"]


def test_the_report_at_speed_is_obslab_budget_at_that_speed(tmp_path):
    """One engine at every speed: a ×10 run's report (budget spent, burn rates at the end, first page) is
    exactly `obslab budget --profile lab --speed 10 --at END` over its events."""
    from datetime import datetime, timezone

    from typer.testing import CliRunner

    from drill_runs import build_run
    from toolkit.cli import app

    run = build_run(tmp_path, speed=MAX_SPEED)
    report = json.loads((run.report_dir / "report.json").read_text())
    end = report["as_of"]["drill"]
    at = datetime.fromtimestamp(end, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out = CliRunner().invoke(app, ["budget", run.read_state().events_dir, "--slo", str(ROOT / "slo.yaml"),
                                   "--profile", "lab", "--speed", "10", "--at", at, "--format", "json"])
    assert out.exit_code == 0, out.output
    slo = next(s for s in json.loads(out.stdout)["slos"] if s["slo"] == "publish-success")
    assert report["budget"]["spent"] == pytest.approx(slo["budget"]["spent"], rel=1e-12)
    assert report["budget"]["period"] == slo["period"] == "1h12m"
    for alert, hist in zip(slo["alerts"], slo["history"]):
        for side in ("long", "short"):
            assert report["burn_rates"][hist[f"scenario_{side}_window"]] == alert[side]["burn"]["burn_rate"]
    pages = [h["first_fired"] for h in slo["history"] if h["severity"] == "page" and h["first_fired"]]
    assert pages, "the outage pages at ×10 in scenario time"
    first = min(datetime.fromisoformat(p.replace("Z", "+00:00")).timestamp() for p in pages)
    assert report["page"]["engine_at"] == pytest.approx(first, abs=1e-3)


def test_a_drill_whose_stop_is_under_way_is_stopping_and_holds_the_lab(tmp_path):
    """Between `drill stop` and its scheduler's exit the drill is "stopping": not yet reportable (its
    cleanup is still removing the fault and flags), no other drill starts, no pause, no solution."""
    from typer.testing import CliRunner

    from toolkit.cli import app

    drills = _running_run(tmp_path)
    RunDir(drills / "run-clock").log("stop_requested")  # what runner.stop logs before its SIGTERM
    assert runner.status(drills).phase == "stopping"
    with pytest.raises(DrillError, match="not running"):
        runner.pause(drills)
    with pytest.raises(DrillError):
        runner.solution("retry-storm", drills)
    result = CliRunner().invoke(app, ["drill", "report", "--data-dir", str(tmp_path)])
    assert result.exit_code != 0 and "is still stopping" in result.output, result.output
    RunDir(drills / "run-clock").log("drill_stopped")  # the scheduler's last word
    assert runner.status(drills).phase == "stopped"
