"""The dashboard's on-call panel in headless Chromium: it shows the figures of ``/api/oncall`` (the function
``obslab oncall`` prints, tests/test_oncall.py), the planted incident's row, and every definition.
A screenshot goes to ``test-artifacts/`` (gitignored)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from datetime import timedelta

from test_oncall import START, planted_events
from toolkit.bench.lab import CHROMIUM
from toolkit.lab.processes import free_port
from toolkit.lab.web import DashboardConfig, create_app
from toolkit.lab.web.server import DashboardServer

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("oncall-ui")
    (d / "events").mkdir()
    (d / "events" / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in planted_events()))
    srv = DashboardServer(create_app(DashboardConfig(data_dir=d, spec_path=REPO / "slo.yaml", settle_s=0,
                                                     refresh_s=1),
                                     # The clock pinned at the planted log's end: the as-of time of tests/test_oncall.py.
                                     {"OBSLAB_CLOCK": lambda: START + timedelta(seconds=300)}),
                          "127.0.0.1", free_port()).start()
    yield srv
    srv.stop()


@pytest.fixture()
def page():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1800})
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        yield pg
        assert not errors, errors
        browser.close()


def test_the_panel_shows_the_oncall_figures_and_their_definitions(server, page):
    page.goto(server.url)
    page.wait_for_selector("[data-testid=oncall-table] tr[data-oncall=pages_per_week]", timeout=30000)
    api = requests.get(server.url.rstrip("/") + "/api/oncall?window=lab", timeout=30).json()
    panel = page.locator("#oncall-panel")
    ARTIFACTS.mkdir(exist_ok=True)
    panel.screenshot(path=str(ARTIFACTS / "oncall-panel.png"))
    value = lambda key: page.get_attribute(f"[data-testid=oncall-table] tr[data-oncall={key}]", "data-value")
    assert float(value("pages_per_week")) == pytest.approx(api["pages"]["per_week"]["value"])
    assert float(value("time_to_resolve")) == pytest.approx(52)
    assert float(value("rollback_rate")) == 0.5
    assert float(value("time_to_detect")) == pytest.approx(17)  # no known fault here: the release change is the cause
    incidents = page.inner_text("[data-testid=oncall-incidents]")
    assert "flag release 0 % → 5 %" in incidents and "52.0 s" in incidents
    definitions = page.inner_text("[data-testid=oncall-definitions]")
    for f in ("change failure rate", "pages per week", "time to mitigate", "incident cause"):
        assert f in definitions
