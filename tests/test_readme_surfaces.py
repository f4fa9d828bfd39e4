"""What the README promises a new user, checked in-process: the API root page, the packaged SLO spec,
the drill catalogue's order, a fresh start that archives instead of deleting."""

from __future__ import annotations

import fcntl
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from demo_service.app import create_app
from toolkit.cli import app as cli
from toolkit.cli._events_common import find_spec
from toolkit.drills.schema import DIFFICULTIES, load_catalogue
from toolkit.lab.runtime import LOCK_FILE, LabAlreadyRunning, archive_lab_data, reset_data_dir
from toolkit.slo.default_spec import PACKAGED_SPEC, resolve_spec_path

REPO = Path(__file__).resolve().parents[1]


# --- the API root ---------------------------------------------------------------------------------------
@pytest.fixture
def api(tmp_path):
    app = create_app({"DATA_DIR": str(tmp_path), "METRICS_REGISTRY": CollectorRegistry(), "ASYNC_WORKERS": 0,
                      "ADMIN_TOKEN": "t", "TRANSCODER_URL": "http://127.0.0.1:9"})
    return app.test_client()


def test_api_root_is_a_page_linking_openapi_metrics_and_the_dashboard(api):
    page = api.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.mimetype == "text/html"
    for href in ('href="/openapi.json"', 'href="/metrics"', 'href="http://127.0.0.1:8050/"'):
        assert href in page.text
    # Each link it gives answers.
    assert api.get("/openapi.json").status_code == 200 and api.get("/metrics").status_code == 200


def test_api_root_answers_json_to_a_client_asking_for_it(api):
    body = api.get("/", headers={"Accept": "application/json"}).get_json()
    assert {l["rel"]: l["href"] for l in body["links"]}["openapi"] == "/openapi.json"
    assert {"openapi", "metrics", "dashboard"} <= {l["rel"] for l in body["links"]}


# --- the packaged SLO spec ---------------------------------------------------------------------------
def test_the_packaged_spec_is_the_repository_slo_yaml():
    assert PACKAGED_SPEC.read_bytes() == (REPO / "slo.yaml").read_bytes(), (
        "toolkit/slo/default-slo.yaml must stay a copy of slo.yaml: cp slo.yaml toolkit/slo/default-slo.yaml")


def test_without_slo_yaml_here_the_packaged_spec_is_used(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, why = resolve_spec_path(None)
    assert path == PACKAGED_SPEC and "packaged" in why
    assert find_spec(None).slos  # ... and it loads
    (tmp_path / "slo.yaml").write_bytes((REPO / "slo.yaml").read_bytes())
    assert resolve_spec_path(None)[0] == Path("slo.yaml")
    assert resolve_spec_path("other.yaml") == (Path("other.yaml"), "as given")


# --- drill list ----------------------------------------------------------------------------------------
def test_drill_list_is_easiest_first():
    result = CliRunner().invoke(cli, ["drill", "list"], terminal_width=200)
    assert result.exit_code == 0
    catalogue = load_catalogue()
    # The first word of each table row (boxed or, in a narrow console, borderless).
    firsts = [line.replace("│", " ").split()[0] for line in result.output.splitlines() if line.strip()]
    listed = [word for word in firsts if word in catalogue]
    assert sorted(listed) == sorted(catalogue)
    ranks = [DIFFICULTIES.index(catalogue[i].difficulty) for i in listed]
    assert ranks == sorted(ranks), listed


# --- a fresh start ---------------------------------------------------------------------------------------
def _old_lab(data_dir: Path) -> None:
    (data_dir / "data" / "events").mkdir(parents=True)
    (data_dir / "data" / "events" / "events.jsonl").write_text('{"event": "publish_failed"}\n')
    (data_dir / "drills").mkdir()
    (data_dir / "load").mkdir()
    (data_dir / LOCK_FILE).write_text("")


def test_a_fresh_start_moves_the_old_data_to_the_archive(tmp_path):
    data_dir = tmp_path / ".obslab"
    _old_lab(data_dir)
    moved = archive_lab_data(data_dir, now=datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc))
    assert moved == data_dir / "archive" / "20260105T120000Z"
    assert (moved / "data" / "events" / "events.jsonl").read_text() == '{"event": "publish_failed"}\n'
    assert sorted(p.name for p in data_dir.iterdir()) == ["archive", LOCK_FILE]
    # A second one within the same second does not overwrite the first.
    (data_dir / "load").mkdir()
    again = archive_lab_data(data_dir, now=datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc))
    assert again != moved and (again / "load").is_dir() and (moved / "drills").is_dir()
    assert archive_lab_data(data_dir) is None  # nothing left to move


def test_reset_refuses_while_a_lab_holds_the_lock(tmp_path):
    # A long path: the printed one must stay whole at any terminal width (rich once broke it inside `archive`).
    data_dir = tmp_path / ("a-long-directory-name-" * 4) / ".obslab"
    _old_lab(data_dir)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(LabAlreadyRunning):
            reset_data_dir(data_dir)
        assert (data_dir / "data").is_dir()  # nothing moved
    finally:
        os.close(fd)
    result = CliRunner().invoke(cli, ["reset", "--data-dir", str(data_dir)])
    assert result.exit_code == 0
    assert not (data_dir / "data").exists() and len(list((data_dir / "archive").iterdir())) == 1
    assert f"the lab's data moved to {next((data_dir / 'archive').iterdir())};" in result.output


def test_spec_commands_run_outside_the_checkout_on_the_packaged_spec(tmp_path):
    # `obslab rules`, `dashboards` and `slo export` used to need ./slo.yaml: outside the checkout they stopped.
    import subprocess
    import sys

    obslab = [sys.executable, "-c", "from toolkit.entry import main; main()"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for argv, made in ((["rules", "--profile", "lab", "-o", "rules"], "rules/slo.rules.yml"),
                       (["dashboards", "-o", "boards"], "boards/slo-overview.json")):
        r = subprocess.run(obslab + argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / made).is_file()
    r = subprocess.run(obslab + ["slo", "export", "--format", "sloth"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "slos:" in r.stdout, r.stderr
    assert not (tmp_path / "slo.yaml").exists()
