"""Attempt assembly: exact columns, outcome rules, abandonment relative to the analysis time."""

from pathlib import Path

import pytest

from toolkit.events.attempts import ATTEMPT_COLUMNS, attempts, filter_attempts
from toolkit.events import load_events

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden.jsonl"

EXPECTED_TYPES = {
    "request_id": "VARCHAR", "upload_id": "VARCHAR", "user_id": "VARCHAR", "outcome": "VARCHAR",
    "started_at": "TIMESTAMP", "completed_at": "TIMESTAMP", "ended_at": "TIMESTAMP", "last_event_at": "TIMESTAMP",
    "processing_ms": "DOUBLE", "e2e_ms": "DOUBLE", "transcode_ms": "DOUBLE", "region": "VARCHAR",
    "app_version": "VARCHAR", "network_type": "VARCHAR", "media_size_bucket": "VARCHAR", "release": "VARCHAR",
    "transcode_mode": "VARCHAR", "service_version": "VARCHAR", "synthetic": "BOOLEAN", "chunk_count": "INTEGER",
    "chunks_uploaded": "INTEGER", "chunk_retries": "INTEGER", "chunk_failures": "INTEGER", "error_class": "VARCHAR",
}


def rows(rel):
    cols = rel.columns
    return {r[0]: dict(zip(cols, r)) for r in rel.fetchall()}


def test_exact_columns_and_types():
    rel = attempts(load_events([GOLDEN]), 600)
    assert tuple(rel.columns) == ATTEMPT_COLUMNS
    assert {c: str(t) for c, t in zip(rel.columns, rel.types)} == EXPECTED_TYPES


def test_one_row_per_request_and_outcomes():
    by_id = rows(attempts(load_events([GOLDEN]), 600))
    # upload_rejected and flag_changed are not attempts.
    assert sorted(by_id) == [f"req_golden_{c}" for c in "abcdefg"]
    assert {k[-1]: v["outcome"] for k, v in by_id.items()} == {
        "a": "succeeded", "b": "succeeded", "c": "failed", "d": "cancelled", "e": "abandoned", "f": "succeeded",
        "g": "in_flight"}
    b = by_id["req_golden_b"]
    assert (b["processing_ms"], b["e2e_ms"], b["transcode_ms"]) == (1500.0, 2800.0, 690.0)
    assert (b["chunk_count"], b["chunks_uploaded"], b["chunk_retries"], b["chunk_failures"]) == (1, 1, 1, 1)
    assert (b["release"], b["transcode_mode"], b["service_version"], b["region"]) == ("canary", "async", "1.5.0",
                                                                                     "eu-west")
    c = by_id["req_golden_c"]
    assert c["error_class"] == "dependency_unavailable" and c["processing_ms"] is None
    assert c["completed_at"] is not None and c["ended_at"] is not None
    e = by_id["req_golden_e"]
    assert e["ended_at"] is None and e["completed_at"] is None and e["error_class"] is None


def test_abandoned_depends_on_as_of():
    events = load_events([GOLDEN])
    # 9m59.999s after e's last event it is still in flight; at 10m it is abandoned.
    early = rows(attempts(events, 600, as_of="2026-01-05T10:14:00.299Z"))
    assert early["req_golden_e"]["outcome"] == "in_flight"
    exact = rows(attempts(events, 600, as_of="2026-01-05T10:14:00.300Z"))
    assert exact["req_golden_e"]["outcome"] == "abandoned"
    # A shorter abandon_after abandons g too (silent 0 s at the end): not with 1 s.
    short = rows(attempts(events, 1, as_of="2026-01-05T10:25:01.300Z"))
    assert short["req_golden_g"]["outcome"] == "abandoned"


def test_filters():
    events = load_events([GOLDEN])
    rel = attempts(events, 600)
    assert len(filter_attempts(rel, synthetic=False).fetchall()) == 6
    assert len(filter_attempts(rel, synthetic=True).fetchall()) == 1
    canary = filter_attempts(rel, where={"release": "canary"}).fetchall()
    assert sorted(r[0] for r in canary) == ["req_golden_b", "req_golden_e"]
    # since/until use the outcome time; the in-flight attempt started before until stays.
    window = filter_attempts(rel, since="2026-01-05T10:10:00Z", until="2026-01-05T10:30:00Z", abandon_after_s=600)
    assert sorted(r[0] for r in window.fetchall()) == ["req_golden_e", "req_golden_f", "req_golden_g"]
    with pytest.raises(ValueError, match="unknown dimension 'planet'"):
        filter_attempts(rel, where={"planet": "mars"})


def test_first_terminal_event_wins(tmp_path):
    lines = GOLDEN.read_text().splitlines()
    dup = [ln for ln in lines if '"req_golden_c"' in ln and "publish_failed" in ln][0]
    late_success = dup.replace("publish_failed", "publish_succeeded").replace("10:02:01.010", "10:02:09.000") \
        .replace('"error_class": "dependency_unavailable"', '"video_id": "vid_' + "c" * 24 + '"')
    path = tmp_path / "dup.jsonl"
    path.write_text("\n".join(lines + [late_success]) + "\n")
    from toolkit.events.attempts import duplicate_terminal_events
    events = load_events([path])
    assert rows(attempts(events, 600))["req_golden_c"]["outcome"] == "failed"
    assert duplicate_terminal_events(events) == 1


def test_until_at_the_instant_an_attempt_becomes_abandoned_counts_it_abandoned():
    # Scopes are (since, until] by outcome time (docs/slo.md): an attempt whose abandonment falls exactly
    # on --until is abandoned and inside the scope; it used to fall out of every count.
    from toolkit.measures.sli import SliQuery, compute_report
    from toolkit.slo.spec import load_spec

    spec = load_spec(GOLDEN.parents[2] / "slo.yaml")
    # e's last event is 10:04:00.300; abandon_after 10m: it becomes abandoned at 10:14:00.300.
    at = "2026-01-05T10:14:00.300Z"
    counts = compute_report(load_events([GOLDEN], until=at), spec, SliQuery(until=at, window_s=None)).totals.counts
    before = "2026-01-05T10:14:00.299Z"
    earlier = compute_report(load_events([GOLDEN], until=before), spec,
                             SliQuery(until=before, window_s=None)).totals.counts
    assert counts["attempts"] == earlier["attempts"] == 5  # a, b, c, d, e (f and g start later)
    assert (counts["in_flight"], counts["abandoned"]) == (0, 1)
    assert (earlier["in_flight"], earlier["abandoned"]) == (1, 0)
