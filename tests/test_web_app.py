"""The dashboard's JSON over a small hand-made event log whose answers are known by construction."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from toolkit.events import validate_files
from toolkit.slo.spec import load_spec
from toolkit.lab.web import DashboardConfig, create_app
from toolkit.lab.web import snapshot as snap

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "slo.yaml"
T0 = datetime(2026, 1, 5, 12, 0, 0, tzinfo=timezone.utc)


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _attempt(i: int, start_s: float, outcome: str, processing_s: float = 0.5, region: str = "us-east",
             release: str = "stable") -> list[dict]:
    """Events of one attempt: started, one chunk, completed, then its outcome (or nothing)."""
    rid = f"req-{i:06d}"
    base = {"schema_version": 1, "request_id": rid, "upload_id": f"up_{i:024x}", "trace_id": f"{i:032x}",
            "span_id": f"{i:016x}", "service": "publish-api", "service_version": "1.4.0", "user_id": f"u_{i:016x}",
            "app_version": "5.4.0", "region": region, "network_type": "wifi", "media_size_bucket": "small",
            "flags": {"transcode_mode": "sync", "release": release}, "synthetic": True}
    t = T0 + timedelta(seconds=start_s)
    out = [dict(base, ts=_iso(t), event="upload_started", media_size_bytes=1000, chunk_count=1),
           dict(base, ts=_iso(t + timedelta(milliseconds=100)), event="chunk_uploaded", chunk_index=0, attempt=1,
                bytes=1000, duration_ms=100)]
    done = t + timedelta(milliseconds=200)
    if outcome == "in_flight_before_complete":
        return out
    out.append(dict(base, ts=_iso(done), event="upload_completed", duration_ms=200, bytes=1000, chunk_count=1))
    end = done + timedelta(seconds=processing_s)
    if outcome == "succeeded":
        out.append(dict(base, ts=_iso(end), event="publish_succeeded", duration_ms=int(processing_s * 1000),
                        video_id=f"vid_{i:024x}"))
    elif outcome == "failed":
        out.append(dict(base, ts=_iso(end), event="publish_failed", duration_ms=500, error_class="internal"))
    elif outcome == "cancelled":
        out.append(dict(base, ts=_iso(end), event="upload_cancelled", reason="user"))
    return out


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    events = []
    # 10 successes at t=0..9 s with processing 0.1 .. 1.0 s, and one slow (2.5 s) at t=10.
    for i in range(10):
        events += _attempt(i, i, "succeeded", processing_s=0.1 * (i + 1))
    events += _attempt(10, 10, "succeeded", processing_s=2.5, region="eu-west")
    events += _attempt(11, 11, "failed", region="eu-west", release="canary")
    events += _attempt(12, 12, "cancelled")
    # Stops after its chunk at t=13.1 s: abandoned once abandon_after (10m) has passed.
    events += _attempt(13, 13, "in_flight_before_complete", region="eu-west")
    rejected = {"schema_version": 1, "ts": _iso(T0 + timedelta(seconds=14)), "event": "upload_rejected",
                "request_id": "req-rejected", "upload_id": None, "trace_id": "f" * 32, "span_id": "f" * 16,
                "service": "publish-api", "service_version": "1.4.0", "user_id": None, "app_version": None,
                "region": None, "network_type": None, "media_size_bucket": None, "flags": {}, "synthetic": True,
                "reason": "chunk_count out of range", "field": "chunk_count"}
    events.append(rejected)
    events.sort(key=lambda e: e["ts"])
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    assert validate_files([tmp_path / "events" / "events.jsonl"]).ok  # the fixture honours the contract
    (tmp_path / "traces").mkdir()
    # The service writes OTLP/JSON (one ExportTraceServiceRequest per line; hex IDs, enums as integers,
    # int64 times as strings); a line may hold several services' and traces' spans.
    def resource(service, *spans):
        return {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeSpans": [{"scope": {"name": "demo_service"}, "spans": list(spans)}]}
    t11 = int(datetime(2026, 1, 5, 12, 0, 11, tzinfo=timezone.utc).timestamp()) * 10**9
    otlp = {"resourceSpans": [
        resource("publish-api", {"traceId": f"{11:032x}", "spanId": "a" * 16, "name": "POST /v1/uploads", "kind": 2,
                                 "startTimeUnixNano": "1000", "endTimeUnixNano": "5000", "status": {"code": 1},
                                 "attributes": [{"key": "http.route", "value": {"stringValue": "/v1/uploads"}},
                                                {"key": "http.status_code", "value": {"intValue": "201"}}]},
                 {"traceId": f"{3:032x}", "spanId": "d" * 16, "name": "other trace in the same batch",
                  "startTimeUnixNano": "1", "endTimeUnixNano": "2"}),
        resource("transcoder", {"traceId": f"{11:032x}", "spanId": "b" * 16, "parentSpanId": "a" * 16,
                                "name": "transcode", "kind": 1, "startTimeUnixNano": str(t11 + 300_000_000),
                                "endTimeUnixNano": str(t11 + 700_000_000), "status": {"code": 2}}),
    ]}
    # A line of the span shape written before OTLP/JSON, still read from an older data directory.
    legacy = {"name": "other trace", "trace_id": f"{3:032x}", "span_id": "c" * 16, "start_ns": 1, "end_ns": 2}
    spans = [otlp, legacy]
    (tmp_path / "traces" / "spans.jsonl").write_text("".join(json.dumps(s) + "\n" for s in spans))
    return tmp_path


def _snapshot_at(data_dir: Path, as_of: datetime) -> dict:
    data = snap.LabData([data_dir / "events" / "events.jsonl"], load_spec(SPEC), "lab", as_of)
    try:
        return data.snapshot(snap.window_for("lab", as_of, T0))
    finally:
        data.close()


def test_tiles_count_outcomes_and_exact_percentiles(data_dir: Path):
    s = _snapshot_at(data_dir, T0 + timedelta(minutes=1))
    su = s["success"]
    # 11 succeeded + 1 failed; the cancellation is excluded; the stalled attempt is still in flight.
    assert (su["good"], su["total"], su["failed"], su["abandoned"], su["cancelled"], su["in_flight"]) == (11, 12, 1, 0, 1, 1)
    assert su["value"] == pytest.approx(11 / 12)
    la = s["latency"]
    assert la["count"] == 11
    # Nearest rank over 0.1, 0.2, ..., 1.0, 2.5: p50 = 6th value, p95 and p99 = 11th.
    assert la["p50_s"] == pytest.approx(0.6)
    assert la["p95_s"] == pytest.approx(2.5)
    assert la["p99_s"] == pytest.approx(2.5)
    assert la["good_ratio"] == pytest.approx(10 / 11)  # 1.0 s is within the 1 s threshold
    assert s["as_of"] == "2026-01-05T12:01:00.000Z"
    assert all(b["definition"] for b in s["budgets"]) and su["definition"] and la["definition"]


def test_stalled_attempt_is_abandoned_after_abandon_after(data_dir: Path):
    s = _snapshot_at(data_dir, T0 + timedelta(minutes=11))
    su = s["success"]
    assert (su["good"], su["total"], su["abandoned"], su["in_flight"]) == (11, 13, 1, 0)
    # 2 bad of 13 in the 11 minutes since traffic began, of the 12 h lab period, objective 0.99: the
    # period's budget is 0.01 × 13 × 720/11 events, so spent = (2/13)/0.01 × 11/720.
    budget = next(b for b in s["budgets"] if b["slo"] == "publish-success")
    assert budget["spent"] == pytest.approx((2 / 13) / 0.01 * 660 / 43200)
    assert budget["remaining"] == pytest.approx(1 - budget["spent"])
    assert budget["summary"].startswith("spent 23.50 % of the 12h period's budget; 76.50 % remaining")


def test_events_after_as_of_are_ignored(data_dir: Path):
    s = _snapshot_at(data_dir, T0 + timedelta(seconds=5, milliseconds=700))
    # Attempts 0..4 have published by 5.7 s (attempt i publishes at i + 0.2 + 0.1 (i+1)); attempt 5 at 5.8 s.
    assert s["success"]["good"] == 5
    assert s["success"]["total"] == 5


def test_burn_rate_and_alert_from_events(data_dir: Path):
    s = _snapshot_at(data_dir, T0 + timedelta(seconds=14))
    page = next(w for w in s["burn"]["windows"] if w["slo"] == "publish-success" and w["long"] == "1m")
    # Long window 1 m: 1 bad of 12 -> (1/12)/0.01 = 8.33x. Short window 5 s, (9 s, 14 s]: attempts 8, 9, 10
    # publish at 9.1, 10.2 and 12.7 s and attempt 11 fails at 11.7 s -> 1 bad of 4 = 25x.
    assert page["long_burn"] == pytest.approx((1 / 12) / 0.01)
    assert page["short_burn"] == pytest.approx((1 / 4) / 0.01)
    assert page["firing"] is False  # long window under 14.4x
    assert s["burn"]["source"].startswith("the toolkit")


@pytest.fixture()
def client(data_dir: Path):
    # Port 1 on loopback: nothing listens there, so the control API is unreachable.
    config = DashboardConfig(data_dir=data_dir, spec_path=SPEC, started_at=T0, settle_s=0, api_url="http://127.0.0.1:1",
                             links=(("API", "http://127.0.0.1:1/"),))
    return create_app(config).test_client()


def test_page_and_assets_are_served_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "static/app.js" in html and "uPlot.iife.min.js" in html
    # No CDN: every script and stylesheet is a relative path on this origin.
    assert "http://" not in html and "https://" not in html
    for asset in ("static/app.js", "static/style.css", "static/vendor/uplot/uPlot.iife.min.js",
                  "static/vendor/uplot/uPlot.min.css"):
        assert client.get("/" + asset).status_code == 200, asset


def test_snapshot_endpoint_states_its_window(client):
    body = client.get("/api/snapshot?window=lab").get_json()
    assert body["window"]["start"] == "2026-01-05T12:00:00.000Z"
    assert body["window"]["label"] == "since lab start"
    assert body["success"]["total"] == 13  # as of now (long after): the stalled attempt is abandoned
    bad = client.get("/api/snapshot?window=soon")
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "window"


def test_cohorts_and_series(client):
    rows = {r["cohort"]: r for r in client.get("/api/cohorts?dimension=region").get_json()["rows"]}
    assert rows["eu-west"]["total"] == 3 and rows["eu-west"]["succeeded"] == 1
    assert rows["us-east"]["total"] == 10 and rows["us-east"]["cancelled"] == 1
    releases = {r["cohort"]: r for r in client.get("/api/cohorts?dimension=release").get_json()["rows"]}
    assert releases["canary"]["failed"] == 1
    assert client.get("/api/cohorts?dimension=colour").status_code == 422
    series = client.get("/api/series?window=lab").get_json()
    assert sum(series["succeeded"]) == 11 and sum(series["failed"]) == 1 and sum(series["abandoned"]) == 1
    assert len(series["t"]) == len(series["success_rate"]) == len(series["p95_s"])


def test_request_explorer_returns_events_and_spans_of_one_trace(client):
    body = client.get("/api/requests/req-000011").get_json()
    assert [e["event"] for e in body["events"]] == ["upload_started", "chunk_uploaded", "upload_completed", "publish_failed"]
    assert body["outcome"] == "failed"
    spans = body["spans"]
    assert [s["name"] for s in spans] == ["POST /v1/uploads", "transcode"]
    assert spans[1]["parent_span_id"] == "a" * 16 and spans[1]["service"] == "transcoder"
    assert spans[1]["status"] == "ERROR" and spans[1]["end_ns"] - spans[1]["start_ns"] == 400_000_000
    assert (spans[0]["kind"], spans[0]["status"], spans[1]["kind"]) == ("SERVER", "OK", "INTERNAL")
    assert spans[0]["attributes"] == {"http.route": "/v1/uploads", "http.status_code": 201}
    assert client.get("/api/requests/req-unknown").status_code == 404
    assert client.get("/api/requests/bad id!").status_code == 422
    recent = client.get("/api/requests/recent").get_json()["request_ids"]
    assert recent[0] == "req-000011"  # failures first
    assert set(recent) <= {f"req-{i:06d}" for i in range(14)}


def test_control_panel_needs_a_token_and_a_reachable_api(client):
    no_token = client.get("/api/control/faults")
    assert no_token.status_code == 401
    unreachable = client.get("/api/control/faults", headers={"Authorization": "Bearer x"})
    assert unreachable.status_code == 502
    assert client.get("/api/control/secrets", headers={"Authorization": "Bearer x"}).status_code == 404


def test_the_service_directory_is_found_in_both_layouts(data_dir: Path, tmp_path_factory):
    from toolkit.lab.web import service_dir_of

    assert service_dir_of(data_dir) == data_dir  # events/ right in the data directory
    lab_dir = tmp_path_factory.mktemp("lab")
    (lab_dir / "data").mkdir()
    (data_dir / "events").rename(lab_dir / "data" / "events")  # `obslab serve` / `obslab lab` layout
    assert service_dir_of(lab_dir) == lab_dir / "data"
    client = create_app(DashboardConfig(data_dir=lab_dir, spec_path=SPEC, started_at=T0, settle_s=0)).test_client()
    assert client.get("/api/snapshot").get_json()["success"]["total"] == 13
    assert client.get("/api/requests/req-000011").status_code == 200


def test_budget_tile_says_its_period_and_when_the_data_began(data_dir: Path):
    s = _snapshot_at(data_dir, T0 + timedelta(minutes=1))
    for b in s["budgets"]:
        # The lab profile's period (12 h) ends at the as-of time; the first event is the fixture's first.
        assert b["period_end"].startswith("2026-01-05T12:01:00")
        assert b["period_start"].startswith("2026-01-05T00:01:00")
        assert b["data_began"] == "2026-01-05T12:00:00.000Z"
