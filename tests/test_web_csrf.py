"""The dashboard refuses forged state changes: a page on another origin cannot start or stop a
drill, change faults or flags, or answer for the learner; the dashboard's own page still can, and
the service's audit events name the dashboard as the actor.

Flask's test client covers the header variants; the real thing — a page served from another
loopback port whose form auto-submits to the dashboard in headless Chromium — runs against the
real service.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from toolkit.lab.processes import free_port
from toolkit.lab.web import DashboardConfig, create_app

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "slo.yaml"
TOKEN = "admin-token-for-the-csrf-tests"
DRILL = "async-migration"  # sets a flag as it starts: an audit event right away


@pytest.fixture()
def lab_dir(tmp_path: Path) -> Path:
    (tmp_path / "events").mkdir()
    (tmp_path / "admin-token").write_text(TOKEN + "\n")
    return tmp_path


@pytest.fixture()
def client(lab_dir: Path):
    # Port 1 on loopback: nothing listens there, so a request the guard lets through fails further on.
    config = DashboardConfig(data_dir=lab_dir, spec_path=SPEC, api_url="http://127.0.0.1:1", settle_s=0)
    return create_app(config).test_client()


def _csrf(client) -> str:
    r = client.get("/api/csrf")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    return r.get_json()["token"]


def _refused(r, words: str) -> None:
    assert r.status_code == 403, r.get_data(as_text=True)
    error = r.get_json()["error"]
    assert error["code"] == "forbidden" and words in error["message"], error


STATE_CHANGING = [("POST", f"/api/drills/{DRILL}/start"), ("POST", "/api/drills/active/stop"),
                  ("POST", "/api/drills/active/hint"), ("POST", "/api/drills/active/answer"), ("POST", "/api/drills/active/decide"),
                  ("POST", "/api/drills/active/report"), ("POST", "/api/drills/active/story/check"),
                  ("PUT", "/api/control/faults/x"),
                  ("DELETE", "/api/control/faults/x"), ("PUT", "/api/control/flags/release")]


@pytest.mark.parametrize("method,path", STATE_CHANGING)
def test_every_state_changing_endpoint_needs_the_csrf_token(client, method, path):
    _refused(client.open(path, method=method, data="speed=60",
                         content_type="application/x-www-form-urlencoded"), "X-CSRF-Token")


def test_a_wrong_token_is_refused_and_says_to_reload(client):
    _refused(client.post("/api/drills/active/stop", headers={"X-CSRF-Token": "guess"}), "reload the page")


@pytest.mark.parametrize("headers,words", [
    ({"Origin": "http://127.0.0.1:9999"}, "Origin: http://127.0.0.1:9999"),
    ({"Origin": "null"}, "Origin: null"),
    ({"Sec-Fetch-Site": "same-site"}, "Sec-Fetch-Site: same-site"),  # another port of the same host
    ({"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"}, "Sec-Fetch-Site: cross-site"),
])
def test_another_origin_is_refused_even_with_the_token(client, headers, words):
    token = _csrf(client)
    _refused(client.post("/api/drills/active/stop", headers={"X-CSRF-Token": token, **headers}), words)


def test_a_rebound_host_name_gets_neither_the_token_nor_a_change(client):
    _refused(client.get("/api/csrf", headers={"Host": "evil.example:8001"}), "loopback names only")
    token = _csrf(client)
    _refused(client.post("/api/drills/active/stop", headers={"X-CSRF-Token": token, "Host": "evil.example"}),
             "loopback names only")


def test_the_own_page_and_the_admin_token_pass_the_guard(client):
    token = _csrf(client)
    # Past the guard, the handler answers: no drill is running (409), the API is unreachable (502).
    same_origin = {"X-CSRF-Token": token, "Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    assert client.post("/api/drills/active/stop", headers=same_origin).status_code == 409
    assert client.post("/api/drills/active/stop", headers={"X-CSRF-Token": token}).status_code == 409
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/api/drills/active/stop", headers=bearer).status_code == 409
    _refused(client.post("/api/drills/active/stop", headers={"Authorization": "Bearer wrong"}), "X-CSRF-Token")
    assert client.put("/api/control/faults/x", json={}, headers={**bearer, "X-CSRF-Token": token}).status_code == 502
    # Reading needs nothing.
    assert client.get("/api/drills").status_code == 200 and client.get("/api/info").status_code == 200


# --------------------------------------------------------------------------- the real thing
def _dashboard(service):
    from toolkit.lab.web.server import DashboardServer

    config = DashboardConfig(data_dir=Path(service.data_dir), spec_path=SPEC, api_url=service.base_url,
                             admin_token_file=Path(service.data_dir) / "admin-token", settle_s=0)
    return DashboardServer(create_app(config), "127.0.0.1", free_port()).start()


def _drill_state(service) -> str:
    """The drill directory's files, for a failure message."""
    drills = Path(service.data_dir) / "drills"
    return "; ".join(f"{p.relative_to(drills)}: {p.read_text(errors='replace')[-400:]}"
                     for p in sorted(drills.rglob("*")) if p.is_file() and p.suffix in (".json", ".log")) \
        if drills.exists() else "no drills directory"


def _no_drill_ever_started(data_dir: Path) -> bool:
    return not (Path(data_dir) / "drills").exists() or not any((Path(data_dir) / "drills").iterdir())


class _AttackerPage(BaseHTTPRequestHandler):
    target = ""

    def do_GET(self):  # noqa: N802 - http.server's naming
        body = f"""<!doctype html><html><body>
<form id="f" method="POST" action="{self.target}/api/drills/{DRILL}/start"><input name="speed" value="60"></form>
<script>document.getElementById("f").submit();</script></body></html>""".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_a_cross_origin_form_post_in_a_browser_starts_no_drill(service, browser):
    from toolkit.lab.web.drills import stop_active_drill

    dashboard = _dashboard(service)
    target = dashboard.url.rstrip("/")
    attacker = ThreadingHTTPServer(("127.0.0.1", free_port()), type("Page", (_AttackerPage,), {"target": target}))
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    try:
        page = browser.new_page()
        with page.expect_response(lambda r: "/api/drills/" in r.url, timeout=30000) as answer:
            page.goto(f"http://127.0.0.1:{attacker.server_address[1]}/")
        assert answer.value.status == 403, answer.value.text()
        assert "cross-origin request refused" in answer.value.json()["error"]["message"]
        time.sleep(1.0)
        assert _no_drill_ever_started(service.data_dir)
        assert not service.events(lambda e: e["event"] in ("flag_changed", "fault_changed"))
    finally:
        stop_active_drill(Path(service.data_dir))  # had the guard failed, never leave the drill running
        attacker.shutdown()
        attacker.server_close()
        dashboard.stop()


@pytest.mark.slow
def test_the_dashboard_page_still_starts_and_stops_a_drill_as_the_dashboard(service, browser):
    from toolkit.drills.state import current_run
    from toolkit.lab.web.drills import stop_active_drill

    dashboard = _dashboard(service)
    try:
        page = browser.new_page()
        page.goto(dashboard.url)
        page.wait_for_selector(f"[data-drill={DRILL}]", timeout=15000)
        page.select_option("[data-testid=drill-speed]", "10")
        page.click(f"[data-testid=drill-start-{DRILL}]")
        page.wait_for_selector("[data-testid=drill-active]", timeout=30000)
        # Generous waits (they end as soon as the event is there): the full suite runs on a busy 2-core machine.
        audit = service.wait_for_events(lambda e: e["event"] == "flag_changed", timeout_s=60)
        assert audit and {e["actor"] for e in audit} == {"dashboard"}, \
            (audit, page.locator("#drill-output").inner_text(), _drill_state(service))
        scheduler = current_run(Path(service.data_dir) / "drills").read_state().scheduler_pid
        page.click("[data-testid=drill-stop]")
        # The scheduler is this process's child: once stopped, it is reaped (no zombie left behind).
        deadline = time.monotonic() + 45
        while psutil.pid_exists(scheduler) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not psutil.pid_exists(scheduler), f"drill scheduler {scheduler} is left as " \
                                                 f"{psutil.Process(scheduler).status()}"
        removed = service.wait_for_events(lambda e: e["event"] == "flag_changed" and e["change"]["action"] == "delete",
                                          timeout_s=60)
        assert removed and {e["actor"] for e in removed} == {"dashboard"}, \
            (removed, page.locator("#drill-output").inner_text(), _drill_state(service))
        # Grading writes the report: a POST from the page, through the same guard.
        page.wait_for_selector("[data-testid=drill-report]", timeout=10000)
        page.click("[data-testid=drill-report]")
        page.wait_for_function("() => /score|error|HTTP/i.test(document.querySelector('#drill-output').textContent)",
                               timeout=120000)
        assert "score" in page.locator("#drill-output").inner_text(), page.locator("#drill-output").inner_text()
    finally:
        stop_active_drill(Path(service.data_dir))
        dashboard.stop()
