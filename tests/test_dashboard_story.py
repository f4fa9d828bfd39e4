"""The dashboard's drill panel: write and check your story, and the report rendered as HTML.

Flask's test client for the endpoints; one headless Chromium run of the page against a real
dashboard server over a finished drill run (built by tests/drill_runs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drill_runs import SPEC, build_run
from toolkit.lab.web import DashboardConfig, create_app
from toolkit.lab.web.drills import render_report_html

STORIES = Path(__file__).parent / "fixtures" / "stories"


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("dashboard-story")
    build_run(data_dir)
    return data_dir


@pytest.fixture()
def client(lab: Path):
    return create_app(DashboardConfig(data_dir=lab, spec_path=SPEC, api_url="http://127.0.0.1:1",
                                      settle_s=0)).test_client()


def _csrf(client) -> dict:
    return {"X-CSRF-Token": client.get("/api/csrf").get_json()["token"]}


def test_write_then_check_a_story_from_the_panel(client, lab: Path):
    r = client.get("/api/drills/active/story/template")
    assert r.status_code == 200, r.get_json()
    assert "## Reflection" in r.get_json()["text"] and "```yaml" in r.get_json()["text"]
    report = json.loads(next((lab / "drills").glob("*/report/report.json")).read_text())
    failed = report["figures"]["failed_publishes"]["value"]
    story = (STORIES / "wrong_number.md").read_text().replace("{wrong_failed}", f"{failed * 1.5 + 7:.0f}")
    r = client.post("/api/drills/active/story/check", json={"text": story}, headers=_csrf(client))
    assert r.status_code == 200, r.get_json()
    result = r.get_json()["result"]
    wrong = [n for n in result["numbers"] if n["status"] == "wrong"]
    assert wrong and wrong[0]["figure"] == "failed publishes" and f"{failed:.0f}" in wrong[0]["note"]
    assert "Story score:" in r.get_json()["text"]
    r = client.post("/api/drills/active/story/check", json={"text": " "}, headers=_csrf(client))
    assert r.status_code == 422 and r.get_json()["error"]["field"] == "text"
    r = client.post("/api/drills/active/story/check", json={"text": story}, headers={})
    assert r.status_code == 403  # a state-changing POST like any other: the CSRF guard applies


def test_the_report_comes_as_sanitised_html(client):
    r = client.post("/api/drills/active/report", headers=_csrf(client))
    assert r.status_code == 200, r.get_json()
    html = r.get_json()["html"]
    assert "<h2>Your path and the expert’s</h2>" in html or "<h2>Your path and the expert's</h2>" in html
    assert "<table>" in html and "\n## " not in html
    assert 'src="api/drills/active/report/sli-burn.png"' in html


def test_markdown_cannot_smuggle_html_or_script_links():
    html = render_report_html("# t\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1)) ![i](a.png)", "img/")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'href="javascript:' not in html and 'src="img/a.png"' in html


def test_the_page_renders_the_report_as_html_and_checks_a_story(lab: Path, browser):
    from toolkit.lab.processes import free_port
    from toolkit.lab.web.server import DashboardServer

    app = create_app(DashboardConfig(data_dir=lab, spec_path=SPEC, api_url="http://127.0.0.1:1", settle_s=0))
    server = DashboardServer(app, "127.0.0.1", free_port()).start()
    try:
        page = browser.new_page()
        page.goto(server.url)
        page.wait_for_selector("[data-testid=drill-report]", timeout=30000)
        page.click("[data-testid=drill-report]")
        page.wait_for_selector("[data-testid=report-html] h2", timeout=120000)
        shown = page.locator("[data-testid=report-html]").inner_text()
        assert "Your path and the expert" in shown and "Debrief (STAR)" in shown
        assert "##" not in shown and "**" not in shown, shown[:500]
        assert page.locator("[data-testid=report-html] table").count() >= 3
        assert page.locator("[data-testid=report-html] img").count() == 3
        page.click("[data-testid=story-panel] summary")
        page.click("[data-testid=story-template]")
        page.wait_for_function("() => document.querySelector('[data-testid=story-text]').value.includes('## Action')")
        page.click("[data-testid=story-check]")
        page.wait_for_function("() => /story score/.test(document.querySelector('[data-testid=story-feedback]')"
                               ".textContent)", timeout=60000)
        assert "no primary metric" in page.locator("[data-testid=story-feedback]").inner_text()
    finally:
        server.stop()
