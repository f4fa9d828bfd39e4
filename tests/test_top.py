"""``obslab top``: the same tiles as the dashboard, in the terminal."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from typer.testing import CliRunner

from test_web_app import SPEC, T0, data_dir  # noqa: F401  (data_dir is a fixture)
from toolkit.cli import app
from toolkit.lab.top import TopSource, take_snapshot


def test_top_once_prints_the_tiles_of_the_lab_window(data_dir: Path):  # noqa: F811
    (data_dir / "lab.json").write_text(json.dumps({"started_at": "2026-01-05T12:00:00Z", "spec": str(SPEC),
                                                   "profile": "lab"}))
    result = CliRunner().invoke(app, ["top", "--data-dir", str(data_dir), "--once"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "since lab start" in out and "2026-01-05T12:00:00.000Z" in out
    # Long after the log ends: 11 succeeded of 13 (1 failed, 1 abandoned), cancellation excluded.
    assert "11 / 13 attempts" in out
    assert "84.62 %" in out  # 11/13
    assert "p50 600 ms" in out and "p95 2.50 s" in out
    assert "burn rates" in out


def test_top_snapshot_equals_the_dashboard_snapshot(data_dir: Path):  # noqa: F811
    from toolkit.lab.web import DashboardConfig, create_app

    now = T0 + timedelta(seconds=14)
    source = TopSource.from_data_dir(data_dir, SPEC, "lab")
    top_view = take_snapshot(source, now=now)
    app_ = create_app(DashboardConfig(data_dir=data_dir, spec_path=SPEC, settle_s=2.0), {"OBSLAB_CLOCK": lambda: now})
    web_view = app_.test_client().get("/api/snapshot").get_json()
    assert top_view["as_of"] == web_view["as_of"] == "2026-01-05T12:00:12.000Z"
    for tile in ("success", "latency", "budgets", "burn"):
        assert top_view[tile] == web_view[tile], tile
    # As of 12 s: attempts 0..9 published, attempt 10 (2.5 s) not yet, attempt 11 fails at 11.7 s.
    assert (top_view["success"]["good"], top_view["success"]["total"]) == (10, 11)


def test_top_without_events_is_one_clear_error(tmp_path: Path):
    result = CliRunner().invoke(app, ["top", "--data-dir", str(tmp_path / "nothing"), "--once"])
    assert result.exit_code == 2
    assert "no events/" in result.output and "Traceback" not in result.output
