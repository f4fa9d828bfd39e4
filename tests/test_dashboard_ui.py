"""The dashboard as a learner sees it, in headless Chromium: one screenshot per panel, and checks that fail on
what a screenshot shows wrong — overlapping labels (element and text bounding boxes), truncated text painting
over itself, stale counts, "--" legends, an empty fifth of the tile row, a "worst" cohort that is not worse,
a missing-spans message that blames sampling for spans still in the exporter, a Prometheus link that 404s.

The dashboard serves a data directory of events written here, stamped relative to now (so the 5-minute
window has data); the Prometheus test starts Debian's real Prometheus, the drill test the real service.
One browser for the module; screenshots go to ``test-artifacts/`` (gitignored).
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from shutil import which

import pytest
import requests

from toolkit.lab.processes import free_port
from toolkit.lab.web import DashboardConfig, create_app
from toolkit.lab.web.server import DashboardServer
from toolkit.lab.web.snapshot import worst_cohort

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "slo.yaml"
ARTIFACTS = REPO / "test-artifacts"
REGIONS = ("us-east", "us-west", "eu-west", "ap-south")


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _attempt(i: int, start: datetime, outcome: str | None, region: str, processing_s: float = 0.4) -> list[dict]:
    """One attempt's events: started, a chunk, then (unless in flight) completed and its outcome."""
    base = {"schema_version": 1, "request_id": f"ui-req-{i:06d}", "upload_id": f"up_{i:024x}",
            "trace_id": f"{0xabc000 + i:032x}", "span_id": f"{i + 1:016x}", "service": "publish-api",
            "service_version": "1.4.0", "user_id": f"u_{i:016x}", "app_version": "5.4.0", "region": region,
            "network_type": "wifi", "media_size_bucket": "small",
            "flags": {"transcode_mode": "sync", "release": "stable"}, "synthetic": True}
    out = [dict(base, ts=_iso(start), event="upload_started", media_size_bytes=1000, chunk_count=1),
           dict(base, ts=_iso(start + timedelta(milliseconds=50)), event="chunk_uploaded", chunk_index=0, attempt=1,
                bytes=1000, duration_ms=50)]
    if outcome is None:
        return out
    done = start + timedelta(milliseconds=100)
    out.append(dict(base, ts=_iso(done), event="upload_completed", duration_ms=100, bytes=1000, chunk_count=1))
    end = done + timedelta(seconds=processing_s)
    if outcome == "succeeded":
        out.append(dict(base, ts=_iso(end), event="publish_succeeded", duration_ms=int(processing_s * 1000),
                        video_id=f"vid_{i:024x}"))
    else:
        out.append(dict(base, ts=_iso(end), event="publish_failed", duration_ms=300, error_class="internal"))
    return out


def _write_events(directory: Path, events: list[dict], name: str = "events.jsonl") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / name, "a") as f:
        f.writelines(json.dumps(e) + "\n" for e in sorted(events, key=lambda e: e["ts"]))


def _span_line(trace_id: str, n: int, t: datetime) -> str:
    start = int(t.timestamp() * 1e9)
    spans = [{"traceId": trace_id, "spanId": f"{k + 1:016x}", "name": f"step {k}", "kind": 2,
              "startTimeUnixNano": str(start + k * 1_000_000), "endTimeUnixNano": str(start + (k + 2) * 1_000_000),
              "status": {"code": 1}} for k in range(n)]
    return json.dumps({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "publish-api"}}]},
        "scopeSpans": [{"scope": {"name": "demo_service"}, "spans": spans}]}]}) + "\n"


def _serve(data_dir: Path, **config) -> DashboardServer:
    return DashboardServer(create_app(DashboardConfig(data_dir=data_dir, spec_path=SPEC, settle_s=0, refresh_s=1,
                                                      **config)), "127.0.0.1", free_port()).start()


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """Four minutes of traffic, every attempt in every region published; one old attempt whose trace was
    not sampled (no span, while later spans were written)."""
    data = tmp_path_factory.mktemp("ui")
    now = datetime.now(timezone.utc)
    events = []
    for i in range(80):
        events += _attempt(i, now - timedelta(seconds=240 - 3 * i), "succeeded", REGIONS[i % 4], 0.2 + 0.01 * i)
    events += _attempt(500, now - timedelta(seconds=60), "succeeded", "us-east")  # its trace: not sampled
    _write_events(data / "events", events)
    (data / "traces").mkdir()
    (data / "traces" / "spans.jsonl").write_text(_span_line(f"{0xabc000 + 79:032x}", 3, now))
    server = _serve(data, started_at=now - timedelta(seconds=250))
    yield server, data
    server.stop()


def _shot(locator, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    locator.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"))


# Text boxes (one per line of each text node) that are painted: clipped by every overflow-hidden ancestor.
# Two boxes of different elements that intersect are labels painted over each other.
OVERLAPS_JS = """(root) => {
  const boxes = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.textContent.trim()) continue;
    const range = document.createRange(); range.selectNodeContents(n);
    for (const r of range.getClientRects()) {
      let [l, t, rr, b] = [r.left, r.top, r.right, r.bottom];
      for (let a = n.parentElement; a && a !== document.body; a = a.parentElement) {
        const cs = getComputedStyle(a);
        if (cs.display === "none" || cs.visibility === "hidden") { l = rr; break; }
        if (cs.overflow !== "visible") {
          const c = a.getBoundingClientRect();
          l = Math.max(l, c.left); t = Math.max(t, c.top); rr = Math.min(rr, c.right); b = Math.min(b, c.bottom);
        }
      }
      if (rr - l > 1 && b - t > 1) boxes.push({ l, t, r: rr, b, node: n, text: n.textContent.trim().slice(0, 40) });
    }
  }
  const out = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i], c = boxes[j];
    if (a.node === c.node) continue;
    const w = Math.min(a.r, c.r) - Math.max(a.l, c.l), h = Math.min(a.b, c.b) - Math.max(a.t, c.t);
    if (w > 1 && h > 1) out.push([a.text, c.text]);
  }
  return out;
}"""


def _no_overlaps(page, selector: str) -> None:
    overlaps = page.eval_on_selector(selector, OVERLAPS_JS)
    assert not overlaps, f"labels painted over each other in {selector}: {overlaps[:5]}"


def _wait_for_figures(page) -> None:
    page.wait_for_function("() => document.querySelector('#tile-success').dataset.total > 0", timeout=20000)


def test_tiles_fill_the_row_and_burn_panel_states_each_source(dashboard, page):
    server, _ = dashboard
    page.goto(server.url)
    _wait_for_figures(page)
    _shot(page.locator("#tiles"), "tiles")
    row = page.eval_on_selector("#tiles", """(t) => {
      const box = t.getBoundingClientRect();
      const tiles = [...t.querySelectorAll('.tile:not(.wide)')].map(x => x.getBoundingClientRect());
      const top = Math.min(...tiles.map(r => r.top));
      return { right: box.right, firstRowRight: Math.max(...tiles.filter(r => r.top === top).map(r => r.right)),
               inFirstRow: tiles.filter(r => r.top === top).length };
    }""")
    assert row["inFirstRow"] == 5 and row["firstRowRight"] >= row["right"] - 2, row
    _no_overlaps(page, "#tiles")
    # No Prometheus here: the panel says so beside the events' own evaluation, never one for the other.
    assert page.inner_text("[data-testid=burn-events-state]") == "events (toolkit): none firing"
    assert page.inner_text("[data-testid=burn-prometheus-state]") == "Prometheus: not configured"
    assert "Prometheus alert" in page.inner_text("[data-testid=burn-table] thead")


def test_charts_legends_show_latest_values_and_axis_labels_do_not_overlap(dashboard, page):
    server, _ = dashboard
    page.goto(server.url)
    _wait_for_figures(page)
    page.select_option("[data-testid=window-select]", "5m")
    page.wait_for_function("() => /last 5m/.test(document.querySelector('#asof').textContent)", timeout=10000)
    page.wait_for_timeout(500)
    _shot(page.locator("#charts-panel"), "charts")
    # Not hovering: every legend shows a value, not uPlot's "--".
    legends = page.eval_on_selector_all(".u-legend .u-series:not(:first-child) .u-value", "els => els.map(e => e.textContent)")
    assert len(legends) >= 4 and all(v.strip() not in ("--", "") for v in legends), legends
    # Each chart's first series (success rate, p50, succeeded, long-window burn) has data: a number, not a dash.
    firsts = page.eval_on_selector_all(".u-legend .u-series:nth-child(2) .u-value", "els => els.map(e => e.textContent)")
    assert len(firsts) == 4 and all(any(ch.isdigit() for ch in v) for v in firsts), firsts
    # Canvas labels: each x tick label's width (measured in the axis font) fits between its neighbours.
    gaps = page.evaluate("""() => Object.entries(state.charts).map(([k, u]) => {
      const ax = u.axes[0], ctx = u.ctx;
      ctx.save(); ctx.font = ax.font[0];
      const xs = ax._splits.map(v => u.valToPos(v, 'x')), ws = ax._values.map(s => ctx.measureText(String(s)).width);
      ctx.restore();
      const tight = [];
      for (let i = 1; i < xs.length; i++) if (xs[i] - xs[i - 1] < (ws[i] + ws[i - 1]) / 2 + 4)
        tight.push([ax._values[i - 1], ax._values[i], Math.round(xs[i] - xs[i - 1]), Math.round(ws[i])]);
      return [k, ax._values.length, tight];
    })""")
    assert all(n >= 2 for _, n, _ in gaps), gaps
    assert all(not tight for _, _, tight in gaps), f"overlapping time axis labels: {gaps}"
    _no_overlaps(page, "#charts-panel")
    assert not page.errors, page.errors


def test_cohort_table_highlights_no_region_when_all_are_at_100_percent(dashboard, page):
    server, _ = dashboard
    page.goto(server.url)
    _wait_for_figures(page)
    page.wait_for_function("() => document.querySelectorAll('#cohort-table tbody tr').length >= 4", timeout=10000)
    _shot(page.locator("#cohorts-panel"), "cohorts")
    rates = page.eval_on_selector_all("#cohort-table tbody tr td:nth-child(6)", "els => els.map(e => e.textContent)")
    assert set(rates) == {"100.00 %"}, rates
    assert page.locator("#cohort-table tr.worst").count() == 0
    assert "every one succeeded" in page.inner_text("[data-testid=cohort-worst]")
    _no_overlaps(page, "#cohorts-panel")


def test_worst_cohort_is_highlighted_only_beyond_noise():
    def row(name, total, good):
        return {"cohort": name, "total": total, "succeeded": good, "success_rate": good / total}
    clear = worst_cohort([row("a", 400, 400), row("b", 400, 340)], "region")
    assert clear["cohort"] == "b" and "60 failed or abandoned" in clear["reason"]
    one_failure = worst_cohort([row("a", 400, 400), row("b", 400, 399)], "region")
    assert one_failure["cohort"] is None and "not below" in one_failure["reason"]
    small = worst_cohort([row("a", 5, 5), row("b", 5, 3)], "region")
    assert small["cohort"] is None and "too few attempts" in small["reason"]


def test_explorer_waits_for_spans_in_the_exporter_and_names_an_unsampled_trace(dashboard, page):
    server, data = dashboard
    page.goto(server.url)
    _wait_for_figures(page)
    # An old attempt without spans while later spans were written: its trace was not sampled.
    page.fill("[data-testid=request-id]", "ui-req-000500")
    page.click("[data-testid=request-search]")
    status = page.locator("[data-testid=spans-status]")
    status.wait_for(timeout=10000)
    assert status.get_attribute("data-state") == "not_sampled" and "not sampled" in status.inner_text()
    # A failure a second old: its spans are still in the service's batch exporter.
    now = datetime.now(timezone.utc)
    _write_events(data / "events", _attempt(600, now - timedelta(seconds=1), "failed", "eu-west", 0.1))
    page.fill("[data-testid=request-id]", "ui-req-000600")
    page.click("[data-testid=request-search]")
    page.wait_for_function("() => document.querySelector('[data-testid=spans-status]')"
                           " && /ui-req-000600/.test(document.querySelector('#explorer-result').textContent)",
                           timeout=10000)
    assert status.get_attribute("data-state") == "pending"
    assert "spans not exported yet (batch export every ~5 s" in status.inner_text()
    _shot(page.locator("#explorer-panel"), "explorer-pending")
    # The exporter writes them: the page asks again by itself and draws the waterfall.
    with open(data / "traces" / "spans.jsonl", "a") as f:
        f.write(_span_line(f"{0xabc000 + 600:032x}", 8, now))
    page.wait_for_selector("[data-testid=span-waterfall] .wf-row", timeout=15000)
    assert page.locator("[data-testid=span-waterfall] .wf-row").count() == 8
    _shot(page.locator("#explorer-panel"), "explorer")
    _no_overlaps(page, "#explorer-panel")


def test_drill_cards_clamp_their_summary_to_three_whole_lines(dashboard, page):
    server, _ = dashboard
    page.goto(server.url)
    page.wait_for_selector("[data-drill]", timeout=15000)
    _shot(page.locator("#drills-panel"), "drills")
    cards = page.eval_on_selector_all(".drill-list .drill", """cards => cards.map(c => {
      const s = c.querySelector('.summary'), b = c.querySelector('button'), lh = parseFloat(getComputedStyle(s).lineHeight);
      return { name: c.dataset.drill, height: s.clientHeight, lines: s.clientHeight / lh, clipped: s.scrollHeight > s.clientHeight + 1,
               gap: b.getBoundingClientRect().top - s.getBoundingClientRect().bottom };
    })""")
    assert cards and any(c["clipped"] for c in cards), cards  # the check below has something to check
    for c in cards:
        # A clamped summary shows exactly three whole lines (a taller box paints part of a fourth under the ellipsis).
        assert c["lines"] <= 3.05 and (not c["clipped"] or abs(c["lines"] - 3) < 0.05), c
        assert c["gap"] >= 0, c
    _no_overlaps(page, "#drills-panel")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    binary = which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    tmp = tmp_path_factory.mktemp("prometheus")
    (tmp / "prometheus.yml").write_text("global: {scrape_interval: 1s}\n")
    port = free_port()
    proc = subprocess.Popen([binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(url + "/-/ready", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(15)


def test_prometheus_link_opens_its_alerts_page_and_both_alert_sources_show(prometheus, tmp_path, page):
    # Failures right now: the toolkit's evaluation over events fires; this Prometheus has no rules.
    now = datetime.now(timezone.utc)
    events = []
    for i in range(60):
        events += _attempt(i, now - timedelta(seconds=60 - i), "failed" if i % 2 else "succeeded", REGIONS[i % 4])
    _write_events(tmp_path / "events", events)
    server = _serve(tmp_path, prometheus_url=prometheus, link_prometheus_alerts=True)
    try:
        page.goto(server.url)
        _wait_for_figures(page)
        link = page.locator("#links a", has_text="alerts")
        href = link.get_attribute("href")
        version = requests.get(prometheus + "/api/v1/status/buildinfo", timeout=5).json()["data"]["version"]
        assert href == prometheus + ("/classic/alerts" if version.startswith("2.") else "/alerts"), (version, href)
        assert requests.get(href, timeout=5).status_code == 200
        assert version in link.inner_text()
        page.wait_for_function("() => /firing/.test(document.querySelector('[data-testid=burn-events-state]').textContent)",
                               timeout=20000)
        assert page.inner_text("[data-testid=burn-prometheus-state]") == "Prometheus: none firing"
        assert "inactive" in page.inner_text("[data-testid=burn-table] tbody")
        assert "none firing" in page.inner_text("[data-testid=alerts-prometheus]")
        _shot(page.locator("#tile-burn"), "burn")
        _no_overlaps(page, "#tile-burn")
    finally:
        server.stop()


@pytest.mark.slow
def test_drill_answer_count_follows_each_answer_and_each_poll(service, page):
    """The real service (the drill sets its faults through the control API), the drill started from the page."""
    from toolkit.drills import runner
    from toolkit.lab.web.drills import stop_active_drill

    data = Path(service.data_dir)
    server = _serve(data, api_url=service.base_url, admin_token_file=data / "admin-token")
    drill = "async-migration"
    try:
        page.goto(server.url)
        page.wait_for_selector(f"[data-drill={drill}]", timeout=15000)
        page.select_option("[data-testid=drill-speed]", "10")
        page.click(f"[data-testid=drill-start-{drill}]")
        count = page.locator("[data-testid=drill-answer-count]")
        count.wait_for(timeout=30000)
        assert count.inner_text() == "0 answers recorded"
        # An answer from the page: the count follows at once, no reload.
        form = page.locator("[data-testid=drill-answer-form]")
        form.locator("select").first.select_option(index=1)  # nothing is preselected: choose a cause
        form.locator("input[name=cohort]").fill("everyone")
        form.locator("input[name=impact]").fill("0.5")
        form.locator("button[type=submit]").click()
        page.wait_for_function("() => document.querySelector('[data-testid=drill-answer-count]').textContent"
                               " === '1 answer recorded'", timeout=10000)
        # An answer from elsewhere (`obslab drill answer`): the next poll shows it; what is typed stays.
        form.locator("input[name=impact]").fill("0.25")
        cause = page.eval_on_selector("[data-testid=drill-answer-form] select", "s => s.value")
        runner.answer(data / "drills", cause, {}, 0.1, by="learner")
        page.wait_for_function("() => document.querySelector('[data-testid=drill-answer-count]').textContent"
                               " === '2 answers recorded'", timeout=15000)
        assert form.locator("input[name=impact]").input_value() == "0.25"
        _shot(page.locator("#drills-panel"), "drill-active")
        _no_overlaps(page, "#drills-panel")
    finally:
        stop_active_drill(data)
        server.stop()


def test_burn_panel_says_it_is_in_a_running_drills_scenario_time(tmp_path, page):
    """While a drill runs at ×10 the burn tile says so and names each window in scenario time with its wall
    length beside it, without painting over itself (the snapshot's figures: tests/test_drill_scenario_time.py)."""
    import os

    from toolkit.drills.state import RunDir, RunState

    now = datetime.now(timezone.utc)
    events = []
    for i in range(40):
        events += _attempt(i, now - timedelta(seconds=60 - i), "failed" if i % 5 == 0 else "succeeded", REGIONS[i % 4])
    _write_events(tmp_path / "events", events)
    run = RunDir(tmp_path / "drills" / "run-ui")
    run.path.mkdir(parents=True)
    (tmp_path / "drills" / "current.json").write_text('{"run_dir": "run-ui"}')
    # Its 'scheduler' is this very process, so the drill counts as running.
    run.write_state(RunState(run_id="run-ui", drill_id="regional-storage-outage", seed=1, speed=10.0,
                             url="http://127.0.0.1:1", data_dir=str(tmp_path), started_at=now.timestamp() - 30,
                             duration_s=60.0, scheduler_pid=os.getpid()))
    run.log("drill_started", drill="regional-storage-outage", seed=1, speed=10.0, auto=False)
    server = _serve(tmp_path, started_at=now - timedelta(seconds=70))
    try:
        page.goto(server.url)
        _wait_for_figures(page)
        page.wait_for_selector("[data-testid=burn-scenario]", timeout=20000)
        _shot(page.locator("#tile-burn"), "burn-scenario-time")
        assert "scenario time at ×10" in page.inner_text("[data-testid=burn-scenario]")
        table = page.inner_text("[data-testid=burn-table] tbody")
        assert "over 1m (6s wall)" in table and "over 5s (500ms wall)" in table, table
        _no_overlaps(page, "#tile-burn")
        assert not page.errors, page.errors
    finally:
        server.stop()
