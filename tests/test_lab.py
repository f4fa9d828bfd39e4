"""``obslab lab`` for real: service, transcoder, Locust, Prometheus and the dashboard, driven by headless Chromium.

One lab runs for the whole module (starting one costs ~10 s); the last test stops it and checks
that nothing is left behind. Screenshots go to ``test-artifacts/`` (gitignored).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from conftest import stop_lab
from toolkit.bench.lab import free_ports, lab_command

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "slo.yaml"
ARTIFACTS = REPO / "test-artifacts"
OBSLAB = [sys.executable, "-c", "from toolkit.cli import main; main()"]


@dataclass
class RunningLab:
    proc: subprocess.Popen
    data_dir: Path
    ports: dict[str, int]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['web']}/"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def token(self) -> str:
        return (self.data_dir / "data" / "admin-token").read_text().strip()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def _wait(predicate, timeout_s: float, what: str, lab: RunningLab | None = None, poll_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    last_error = None
    while time.monotonic() < deadline:
        if lab is not None and lab.proc.poll() is not None:
            pytest.fail(f"the lab exited (code {lab.proc.returncode}) while waiting for {what}:\n{lab.log()}")
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - not ready yet
            last_error = e
        time.sleep(poll_s)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what} (last error: {last_error})"
                + (f"\n{lab.log()}" if lab else ""))


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> RunningLab:
    tmp = tmp_path_factory.mktemp("lab")
    ports = dict(zip(("api", "transcoder", "web", "prometheus", "locust"), free_ports(5)))
    log_path = tmp / "lab.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(lab_command(tmp / "data", ports, users=4, prometheus=True, spec=SPEC), cwd=tmp,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    running = RunningLab(proc, tmp / "data", ports, log_path)
    try:
        # "Waits for load": at least 20 attempts with an outcome on the dashboard.
        _wait(lambda: requests.get(running.url + "api/snapshot", timeout=5).json()["success"]["total"] >= 20,
              120, "20 publish outcomes on the dashboard", running)
        yield running
    finally:
        stop_lab(proc)  # a test failed before the shutdown test: never leave the lab behind


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    pg = context.new_page()
    pg.console_errors = []
    pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.console_errors.append(f"uncaught: {e}"))
    yield pg
    context.close()


def _screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def _obslab_sli(lab: RunningLab, since: str, until: str) -> dict:
    out = subprocess.run(OBSLAB + ["sli", str(lab.data_dir / "data" / "events"), "--slo", str(SPEC), "--since", since,
                                   "--until", until, "--format", "json"],
                         capture_output=True, text=True, timeout=120, cwd=lab.data_dir.parent)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _figure(report: dict, name: str) -> dict:
    totals = report["totals"]
    for group in ("primary", "latency", "secondary", "guardrails"):
        for fig in totals.get(group, []):
            if fig["name"] == name:
                return fig
    raise AssertionError(f"obslab sli printed no figure {name!r}")


def test_page_loads_without_errors_and_tiles_equal_obslab_sli(lab: RunningLab, page):
    page.goto(lab.url)
    page.wait_for_function("() => document.querySelector('#tile-success').dataset.total > 0", timeout=30000)
    # Freeze the page on one snapshot so what we read is one as-of time.
    page.uncheck("#live")
    page.wait_for_timeout(300)
    asof = page.locator("#asof")
    as_of, start = asof.get_attribute("data-as-of"), asof.get_attribute("data-window-start")
    tile = lambda tid, key: page.locator(f"#{tid}").get_attribute(f"data-{key}")  # noqa: E731
    _screenshot(page, "lab-dashboard.png")
    assert page.console_errors == []
    assert page.locator("#tile-success .tip").inner_text().startswith("publish success rate =")

    report = _obslab_sli(lab, start, as_of)
    success = _figure(report, "publish_success_rate")
    assert int(tile("tile-success", "good")) == success["numerator"]
    assert int(tile("tile-success", "total")) == success["denominator"]
    assert float(tile("tile-success", "value")) == pytest.approx(success["value"], abs=1e-12)
    for q in ("p50", "p95", "p99"):
        fig = _figure(report, f"processing_latency_{q}")
        assert float(tile(f"tile-{q}", "seconds")) * 1000 == pytest.approx(fig["value"], abs=1e-6), q
        assert int(tile(f"tile-{q}", "count")) == fig["count"], q


def test_request_explorer_shows_a_real_requests_events_and_spans(lab: RunningLab, page):
    page.goto(lab.url)
    page.wait_for_selector("#recent-requests a", timeout=30000)
    request_id = page.locator("#recent-requests a").first.get_attribute("data-request-id")
    events = [json.loads(line) for f in sorted((lab.data_dir / "data" / "events").glob("events.jsonl*"))
              for line in f.read_text().splitlines() if request_id in line]
    expected = [e["event"] for e in sorted(events, key=lambda e: e["ts"]) if e["request_id"] == request_id]
    assert expected[0] == "upload_started" and expected[-1] in ("publish_succeeded", "publish_failed", "upload_cancelled")

    # The server spans this attempt must have: create, a chunk PUT and complete when the events show
    # those calls (a cancelled upload may never call complete).
    wanted = ["POST /v1/uploads"]
    wanted += ["PUT /v1/uploads/<upload_id>/chunks/<int:n>"] if "chunk_uploaded" in expected else []
    wanted += ["POST /v1/uploads/<upload_id>/complete"] if "upload_completed" in expected else []

    def spans_shown() -> bool:
        page.fill("#request-id", request_id)
        page.click("[data-testid=request-search]")
        page.wait_for_selector("[data-testid=event-timeline]", timeout=10000)
        # Spans are exported in batches (every few seconds, per worker process): ask again until all are there.
        return all(page.locator(f"[data-testid=span-waterfall] .wf-row[data-span-name='{name}']").count() > 0
                   for name in wanted)

    _wait(spans_shown, 30, f"the spans {wanted} of {request_id}")
    shown = page.locator("[data-testid=event-timeline] tbody tr").evaluate_all("rows => rows.map(r => r.dataset.event)")
    assert shown == expected
    names = page.locator("[data-testid=span-waterfall] .wf-row").evaluate_all("rows => rows.map(r => r.dataset.spanName)")
    assert set(wanted) <= set(names)
    _screenshot(page, "lab-request-explorer.png")
    assert page.console_errors == []


def test_alerts_come_from_prometheus_with_the_lab_rules(lab: RunningLab):
    info = requests.get(lab.url + "api/info", timeout=5).json()
    assert info["alerts_source"] == "Prometheus"
    rules = requests.get(f"http://127.0.0.1:{lab.ports['prometheus']}/api/v1/rules", timeout=5).json()
    names = [r["name"] for g in rules["data"]["groups"] for r in g["rules"]]
    assert any(r.get("type") == "alerting" for g in rules["data"]["groups"] for r in g["rules"]), names
    snap = requests.get(lab.url + "api/snapshot", timeout=10).json()
    assert snap["burn"]["source"].startswith("Prometheus")


def test_faults_panel_sets_and_clears_a_fault_with_the_admin_token(lab: RunningLab, page):
    headers = {"Authorization": f"Bearer {lab.token}"}
    page.goto(lab.url)
    page.wait_for_selector("#asof[data-as-of]", timeout=30000)  # initialised: nothing re-renders the panel now
    page.fill("#admin-token", "wrong-token")
    page.click("#token-form button")
    page.wait_for_selector("[data-testid=control-error]", timeout=10000)
    page.console_errors.clear()  # the browser logs the refused (401) request; that is the point here
    page.fill("#admin-token", lab.token)
    page.click("#token-form button")
    page.wait_for_selector("[data-testid=faults-table]", timeout=10000)
    page.fill("[data-testid=fault-name]", "page-test-latency")
    page.click("text=Set fault")
    page.wait_for_selector("[data-testid=faults-table] tr[data-fault=page-test-latency]", timeout=10000)
    names = [f["name"] for f in requests.get(f"{lab.api}/admin/faults", headers=headers, timeout=5).json()["faults"]]
    assert "page-test-latency" in names
    page.click("[data-testid=faults-table] tr[data-fault=page-test-latency] button")
    page.wait_for_selector("[data-testid=faults-table] tr[data-fault=page-test-latency]", state="detached", timeout=10000)
    names = [f["name"] for f in requests.get(f"{lab.api}/admin/faults", headers=headers, timeout=5).json()["faults"]]
    assert "page-test-latency" not in names
    assert page.console_errors == []


def test_drill_started_from_the_page_changes_the_services_faults(lab: RunningLab, page):
    headers = {"Authorization": f"Bearer {lab.token}"}
    faults_before = requests.get(f"{lab.api}/admin/faults", headers=headers, timeout=5).json()
    page.goto(lab.url)
    page.wait_for_selector("#asof[data-as-of]", timeout=30000)
    page.fill("#admin-token", lab.token)
    page.click("#token-form button")
    page.wait_for_selector("[data-testid=faults-table]", timeout=10000)
    page.wait_for_selector("[data-drill=regional-storage-outage]", timeout=10000)
    page.select_option("[data-testid=drill-speed]", "10")
    page.click("[data-testid=drill-start-regional-storage-outage]")
    page.wait_for_selector("[data-testid=drill-active]", timeout=15000)
    # Nothing preselected: the cause list starts on an empty choice.
    assert page.locator("[data-testid=drill-answer-form] select[name=cause]").input_value() == ""
    # At 10x the fault window [3m, 4m] becomes [18 s, 24 s] after the start.
    faults = _wait(lambda: (lambda f: f if f != faults_before else None)(
        requests.get(f"{lab.api}/admin/faults", headers=headers, timeout=5).json()), 45, "the drill's fault", lab)
    assert "storage" in json.dumps(faults)
    page.click("#token-form button")  # refresh the faults panel
    page.wait_for_selector("[data-testid=faults-table] tr[data-fault]", timeout=10000)
    _screenshot(page, "lab-drill.png")
    dialogs = []
    page.once("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    page.click("[data-testid=drill-hint]")
    page.wait_for_selector("#drill-hints div", timeout=10000)
    assert dialogs and "costs 5 points" in dialogs[0]  # the cost is stated before the hint is shown
    page.select_option("[data-testid=drill-answer-form] select[name=cause]", "storage_outage")
    page.fill("[data-testid=drill-answer-form] input[name=cohort]", "region=eu-west")
    page.fill("[data-testid=drill-answer-form] input[name=impact]", "5")
    page.click("[data-testid=drill-answer-form] button")
    page.wait_for_selector("#drill-output pre", timeout=10000)
    assert "answer 1 recorded" in page.locator("#drill-output").inner_text()
    page.click("[data-testid=drill-stop]")
    # The scheduler removes the drill's fault when it stops.
    _wait(lambda: "storage" not in json.dumps(requests.get(f"{lab.api}/admin/faults", headers=headers,
                                                           timeout=5).json()), 30, "the fault to be removed", lab)
    # Stopping ends with Locust's graceful stop (the fault and flags go first): report once the panel says stopped.
    page.wait_for_selector("[data-testid=drill-active][data-phase=stopped] [data-testid=drill-report]", timeout=60000)
    page.click("[data-testid=drill-report]")
    page.wait_for_function("() => /score|error|HTTP/i.test(document.querySelector('#drill-output').textContent)",
                           timeout=90000)
    assert "score" in page.locator("#drill-output").inner_text(), page.locator("#drill-output").inner_text()
    assert page.locator("#drill-output img").count() >= 1
    # The panel re-renders when the poll sees the run's phase change; the report the learner asked for stays.
    page.evaluate("async () => { await loadDrills(); }")
    assert "score" in page.locator("#drill-output").inner_text(), page.locator("#drill-output").inner_text()
    _screenshot(page, "lab-drill-report.png")
    assert page.console_errors == []


def test_a_second_lab_says_so_instead_of_fighting_over_ports(lab: RunningLab, tmp_path: Path):
    p = lab.ports
    same_dir = subprocess.run(lab_command(lab.data_dir, p, users=1, prometheus=True, spec=SPEC),
                              capture_output=True, text=True, timeout=60)
    assert same_dir.returncode == 2
    assert "already running" in same_dir.stderr and "Traceback" not in same_dir.stderr
    other_dir = subprocess.run(lab_command(tmp_path / "other", p, users=1, prometheus=True, spec=SPEC),
                               capture_output=True, text=True, timeout=60)
    assert other_dir.returncode == 2
    assert f"port {p['api']}" in other_dir.stderr and "in use" in other_dir.stderr
    assert lab.proc.poll() is None  # the running lab did not notice


def test_stop_leaves_no_process_and_keeps_the_data(lab: RunningLab):
    pids = [p.pid for p in psutil.Process(lab.proc.pid).children(recursive=True)]
    assert len(pids) >= 5  # gunicorn masters + workers, Locust, Prometheus
    lab.proc.send_signal(signal.SIGINT)
    assert lab.proc.wait(90) == 0, lab.log()
    alive = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [psutil.Process(pid).cmdline() for pid in alive]
    assert (lab.data_dir / "data" / "events" / "events.jsonl").stat().st_size > 0
    assert not (lab.data_dir / "lab.json").exists()
    assert "lab stopped; data kept in" in lab.log()
