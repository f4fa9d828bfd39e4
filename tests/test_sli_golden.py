"""Golden values: every metric of tests/fixtures/golden.jsonl computed by hand (see make_golden.py).

Attempts: a succeeded (processing 500 ms, e2e 1000), b succeeded after one chunk retry (1500, 2800; canary,
async, queue wait 10 ms), c failed in the transcoder, d cancelled, e abandoned (silent since 10:04:00.300),
f synthetic and succeeded (processing exactly 1000 ms = the threshold, e2e 1200), g in flight at the end
(10:25:00.300, the analysis time). Plus one upload_rejected and one flag_changed, which are not attempts.
"""

from pathlib import Path

import pytest

from toolkit.events import load_events
from toolkit.measures.sli import SCHEMA, SliQuery, compute_report
from toolkit.slo.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden.jsonl"


@pytest.fixture(scope="module")
def spec():
    return load_spec(ROOT / "slo.yaml")


def report(spec, **query):
    return compute_report(load_events([GOLDEN]), spec, SliQuery(**query))


def values(section):
    return {f.name: f.value for f in section.figures()}


def test_counts_and_primary(spec):
    r = report(spec)
    assert r.schema == SCHEMA
    assert dict(r.totals.counts) == {"attempts": 7, "succeeded": 3, "failed": 1, "cancelled": 1, "abandoned": 1,
                                     "in_flight": 1}
    sr = r.totals.figure("publish_success_rate")
    # 3 / (3 + 1 + 1): the cancelled and the in-flight attempt are excluded.
    assert (sr.value, sr.numerator, sr.denominator, sr.count) == (0.6, 3, 5, 5)
    assert r.inputs["rejected_events"] == 1 and r.inputs["audit_events"] == 1
    assert r.inputs["as_of"] == "2026-01-05T10:25:00.300Z"


def test_latency_percentiles_and_sli(spec):
    v = values(report(spec).totals)
    # processing [500, 1000, 1500], nearest rank: p50 = 2nd, p95 = p99 = 3rd.
    assert (v["processing_latency_p50"], v["processing_latency_p95"], v["processing_latency_p99"]) == (1000, 1500, 1500)
    assert (v["e2e_latency_p50"], v["e2e_latency_p95"], v["e2e_latency_p99"]) == (1200, 2800, 2800)
    # <= 1 s: a (500) and f (exactly 1000, on the bucket boundary); not b (1500).
    assert v["latency_sli"] == pytest.approx(2 / 3)
    assert v["processing_latency_p99"] == 1500  # guardrail repeats it


def test_mean_next_to_the_percentiles(spec):
    s = report(spec).totals
    # mean of processing [500, 1000, 1500] and e2e [1000, 1200, 2800], over the same succeeded publishes.
    for name, mean in (("processing_latency_mean", 1000), ("e2e_latency_mean", 5000 / 3)):
        f = s.figure(name)
        assert (f.value, f.statistic, f.count, f.counted) == (pytest.approx(mean), "mean", 3, "succeeded publishes")


def test_secondary_and_guardrails(spec):
    s = report(spec).totals
    v = values(s)
    # chunk uploads: 8 chunk_uploaded + 1 chunk_failed = 9; one retry, one failure.
    assert v["chunk_retry_rate"] == pytest.approx(1 / 9)
    assert v["chunk_failure_rate"] == pytest.approx(1 / 9)
    assert v["transcode_failure_rate"] == pytest.approx(1 / 4)
    assert (v["transcode_latency_p50"], v["transcode_latency_p95"], v["transcode_latency_p99"]) == (600, 690, 690)
    # API requests: a 4, b 4, c 3, d 3, e 2, f 3, g 2 = 21; one timeout (b's chunk).
    assert v["api_timeout_rate"] == pytest.approx(1 / 21)
    assert v["requests_per_publish"] == pytest.approx(21 / 7)
    assert v["load_amplification"] == pytest.approx(21 / 3)
    assert v["queue_wait_p95"] == 10
    assert s.figure("feed_cache_hit_rate").value is None
    assert "not derivable from events" in s.figure("feed_cache_hit_rate").note
    assert "not derivable from events" in s.figure("cpu_seconds_per_publish").note


def test_exclude_synthetic(spec):
    s = report(spec, synthetic=False).totals
    assert s.counts["succeeded"] == 2
    assert s.figure("publish_success_rate").value == pytest.approx(2 / 4)
    assert s.figure("publish_success_rate").scope.synthetic == "excluded"


def test_series_windows_by_outcome_time(spec):
    r = report(spec, window_s=300)
    points = [(p.scope.start, p.counts["succeeded"], p.counts["failed"], p.counts["abandoned"]) for p in r.series]
    # e became abandoned at 10:14:00.300 (last event + 10 m); g has no outcome time.
    assert points == [("2026-01-05T10:00:00.000Z", 2, 1, 0), ("2026-01-05T10:10:00.000Z", 0, 0, 1),
                      ("2026-01-05T10:20:00.000Z", 1, 0, 0)]
    assert r.series[0].figure("publish_success_rate").value == pytest.approx(2 / 3)
    assert r.series[1].figure("publish_success_rate").value == 0.0
    assert r.series[0].scope.window == "5m"


def test_breakdown_and_where(spec):
    r = report(spec, by=("release",))
    seg = {p.scope.segment["release"]: p for p in r.breakdown}
    assert seg["stable"].figure("publish_success_rate").value == pytest.approx(2 / 3)  # a, f of a, c, f
    assert seg["canary"].figure("publish_success_rate").value == pytest.approx(1 / 2)  # b of b, e
    only = report(spec, where={"region": "eu-west"}).totals
    assert only.counts["attempts"] == 2 and only.figure("publish_success_rate").value == 1.0  # b; d cancelled


def test_since_until(spec):
    # Outcomes in [10:02, 10:20): c (10:02:01), d (cancelled), e (abandoned 10:14:00.3).
    s = report(spec, since="2026-01-05T10:02:00Z", until="2026-01-05T10:20:00Z").totals
    assert (s.counts["succeeded"], s.counts["failed"], s.counts["abandoned"], s.counts["cancelled"]) == (0, 1, 1, 1)
    assert s.scope.start == "2026-01-05T10:02:00.000Z" and s.scope.window == "18m"


def test_until_cuts_events_and_changes_abandonment(spec):
    # As of 10:10 e is silent for only 5m59.7s: in flight, not abandoned; f and g do not exist yet.
    events = load_events([GOLDEN], until="2026-01-05T10:10:00Z")
    s = compute_report(events, spec, SliQuery(until="2026-01-05T10:10:00Z")).totals
    assert dict(s.counts) == {"attempts": 5, "succeeded": 2, "failed": 1, "cancelled": 1, "abandoned": 0,
                              "in_flight": 1}


def test_zero_traffic_is_no_data(spec):
    s = report(spec, where={"region": "ap-south"}).totals
    assert s.counts["attempts"] == 0
    for f in s.figures():
        assert f.value is None and f.note, f.name



def test_a_timed_out_complete_request_counts_once_in_api_timeout_rate(spec, tmp_path):
    # c's complete request timed out in the transcoder: it emits transcode_failed and publish_failed, both
    # with error_class timeout. One request timed out (plus b's chunk upload): 2 of 21, not 3 of 21.
    lines = GOLDEN.read_text().splitlines()
    for i, line in enumerate(lines):
        if '"request_id": "req_golden_c"' in line and '"error_class"' in line:
            lines[i] = line.replace('"error_class": "dependency_unavailable"', '"error_class": "timeout"')
    assert sum('"error_class": "timeout"' in line for line in lines) == 3
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    f = compute_report(load_events([path]), spec, SliQuery()).totals.figure("api_timeout_rate")
    assert (f.numerator, f.denominator) == (2, 21)
