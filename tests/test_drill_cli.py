"""`obslab drill`: bad input ends as one clear line and a non-zero exit, never a traceback."""

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
                          capture_output=True, text=True, env=full_env, cwd=cwd, timeout=60)


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
