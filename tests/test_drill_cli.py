"""`obslab drill`: bad input ends as one clear line and a non-zero exit, never a traceback."""

import json
import os
import subprocess
import sys

import pytest

from toolkit.drills import runner
from toolkit.drills.runner import DrillError, parse_cohort


def obslab(*args, env=None, cwd=None):
    full_env = {k: v for k, v in os.environ.items() if k != "OBSLAB_ADMIN_TOKEN"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", "from toolkit.cli import main; main()", *args],
                          capture_output=True, text=True, env=full_env, cwd=cwd, timeout=60,
                          stdin=subprocess.DEVNULL)


def _one_line_error(proc, fragment):
    assert proc.returncode != 0
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert fragment in lines[0], lines[0]


def test_list_and_show_without_spoilers():
    listing = obslab("drill", "list")
    assert listing.returncode == 0 and "regional-storage-outage" in listing.stdout
    shown = obslab("drill", "show", "bad-canary")
    assert shown.returncode == 0
    assert "canary_regression" in shown.stdout  # the choices are listed...
    assert "percentage" not in shown.stdout and "truth" not in shown.stdout  # ...the fault is not


def test_unknown_drill(tmp_path):
    _one_line_error(obslab("drill", "start", "nope", "--data-dir", str(tmp_path)), "unknown drill 'nope'")
    _one_line_error(obslab("drill", "show", "nope"), "unknown drill 'nope'")


def test_no_lab_running(tmp_path):
    proc = obslab("drill", "start", "retry-storm", "--data-dir", str(tmp_path), "--url", "http://127.0.0.1:9",
                  env={"OBSLAB_ADMIN_TOKEN": "t"})
    _one_line_error(proc, "no lab running at http://127.0.0.1:9")
    assert not (tmp_path / "drills").exists()  # nothing written before the lab answered


def test_no_token(tmp_path):
    _one_line_error(obslab("drill", "start", "retry-storm", "--data-dir", str(tmp_path)), "no admin token")


@pytest.mark.parametrize("command", [
    ["answer", "--cause", "storage_outage", "--cohort", "everyone", "--impact", "3"],
    ["status"], ["hint"], ["stop"], ["report"],
])
def test_no_drill_started(tmp_path, command):
    _one_line_error(obslab("drill", *command, "--data-dir", str(tmp_path)), "no drill started in")


def test_bad_speed_and_cohort_text():
    with pytest.raises(DrillError, match="expected everyone or dim=value"):
        parse_cohort("eu-west")
    with pytest.raises(DrillError, match="unknown dimension 'planet'"):
        parse_cohort("planet=mars")
    with pytest.raises(DrillError, match="region has no value 'mars'"):
        parse_cohort("region=mars")
    with pytest.raises(DrillError, match="names region twice"):
        parse_cohort("region=eu-west,region=us-east")
    assert parse_cohort("everyone") == {}
    assert parse_cohort(" release=canary , media_size_bucket=large") == {"release": "canary",
                                                                         "media_size_bucket": "large"}
    assert runner.USER_ERRORS


# -- against the real service ---------------------------------------------------------------------

def _rollout(service, name: str) -> dict:
    flags = service.admin("GET", "/admin/flags").json()["flags"]
    return next(f for f in flags if f["name"] == name)["rollout"]


@pytest.mark.slow
def test_wrong_token_is_one_line(service, tmp_path):
    proc = obslab("drill", "start", "retry-storm", "--data-dir", str(tmp_path), "--url", service.base_url,
                  env={"OBSLAB_ADMIN_TOKEN": "not-the-token"})
    _one_line_error(proc, "refused the admin token (HTTP 401)")
    assert not (tmp_path / "drills").exists()


@pytest.mark.slow
def test_learner_flow_start_hint_answer_stop_report(service):
    """A learner's drill end to end against the real service, the lab found by its data dir alone
    (token file, events): nothing of the truth is printed, stop removes the fault and the flags."""
    common = ["--data-dir", str(service.data_dir)]
    started = obslab("drill", "start", "async-migration", "--speed", "4", "--seed", "3", *common,
                     "--url", service.base_url)
    assert started.returncode == 0, started.stderr
    assert "queue-backed transcode path" in started.stdout  # the briefing
    try:
        again = obslab("drill", "start", "retry-storm", *common, "--url", service.base_url)
        _one_line_error(again, "drill async-migration is still running")
        assert _rollout(service, "transcode_mode") == {"async": 50.0}  # the setup is in force
        status = obslab("drill", "status", *common)
        assert status.returncode == 0 and "running" in status.stdout
        refused = obslab("drill", "hint", *common)  # no --yes, nobody to confirm: no hint taken
        assert refused.returncode != 0 and "costs 5 points" in refused.stderr + refused.stdout
        hints = [obslab("drill", "hint", "--yes", *common).stdout for _ in range(4)]
        assert hints[0].startswith("hint 1/3") and hints[2].startswith("hint 3/3") and hints[3].startswith("hint 3/3")
        bad = obslab("drill", "answer", "--cause", "memory_leak", "--cohort", "everyone", "--impact", "1", *common)
        _one_line_error(bad, "'memory_leak' is not one of this drill's choices")
        ok = obslab("drill", "answer", "--cause", "queue_backlog", "--cohort", "transcode_mode=async",
                    "--impact", "5", *common)
        assert ok.returncode == 0, ok.stderr
        too_early = obslab("drill", "report", *common)
        _one_line_error(too_early, "is still running")
        for out in [started.stdout, status.stdout, ok.stdout, *hints]:
            assert "latency_ms" not in out and "truth" not in out  # the ground truth stays hidden
    finally:
        stopped = obslab("drill", "stop", *common)
    assert stopped.returncode == 0, stopped.stderr
    assert service.admin("GET", "/admin/faults").json()["faults"] == []
    assert _rollout(service, "transcode_mode") == {}
    report = obslab("drill", "report", *common)
    assert report.returncode == 0, report.stderr
    assert "score" in report.stdout
    run_dir = next((service.data_dir / "drills").glob("*-async-migration"))
    assert oct((run_dir / "truth.json").stat().st_mode & 0o777) == "0o600"
    md = (run_dir / "report" / "report.md").read_text()
    assert "hint 3 shown" in md and "answer (learner): cause queue_backlog" in md
    assert "drill stopped" in md
