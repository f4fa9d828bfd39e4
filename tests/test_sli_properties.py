"""Property tests (hypothesis) of the SLI engine over generated event logs."""

from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from toolkit.events.attempts import attempts
from toolkit.events import load_events
from toolkit.measures.sli import PERCENTILES, SliQuery, compute_report
from toolkit.slo.spec import load_spec
from toolkit.events.synth import SynthConfig, generate, write_jsonl, write_parquet

ROOT = Path(__file__).resolve().parents[1]
SPEC = load_spec(ROOT / "slo.yaml")
NO_CHUNK_FAILURES = {"wifi": 0.0, "5g": 0.0, "4g": 0.0, "3g": 0.0}
SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Tests that write and read JSON lines per example: fewer examples keep the suite's time modest.
FEWER = settings(SETTINGS, max_examples=10)

configs = st.builds(
    SynthConfig,
    attempts=st.integers(1, 120),
    duration_s=st.sampled_from([60.0, 600.0, 1800.0]),
    synthetic_share=st.floats(0, 1),
    canary_share=st.floats(0, 1),
    cancel_rate=st.floats(0, 0.3),
    abandon_rate=st.floats(0, 0.3),
    transcode_failure_rate=st.floats(0, 0.5),
    publish_failure_rate=st.floats(0, 0.2),
)
seeds = st.integers(0, 2**32 - 1)


def until_after(table: pa.Table) -> str:
    """A fixed analysis time after every event, so adding events cannot move it."""
    last = table.column("ts").to_pylist()[-1]
    return (last + timedelta(hours=2)).isoformat()


def report_of(path, until, **query):
    return compute_report(load_events([path], until=until), SPEC, SliQuery(until=until, **query))


@SETTINGS
@given(cfg=configs, seed=seeds)
def test_rates_are_within_zero_and_one(tmp_path, cfg, seed):
    table = generate(cfg, seed=seed)
    path = write_parquet(table, tmp_path / "e.parquet")
    r = report_of(path, until_after(table), by=("region",), window_s=120)
    for section in (r.totals, *r.series, *r.breakdown):
        for f in section.figures():
            if f.unit == "ratio" and f.value is not None:
                assert 0.0 <= f.value <= 1.0, (f.name, f.value)
            if f.value is not None:
                assert np.isfinite(f.value)


@SETTINGS
@given(cfg=configs, seed=seeds, extra=st.integers(1, 60))
def test_cancelled_attempts_never_change_the_success_rate(tmp_path, cfg, seed, extra):
    base = generate(cfg, seed=seed)
    cancels = generate(SynthConfig(attempts=extra, start=cfg.start, duration_s=cfg.duration_s, cancel_rate=1.0,
                                   abandon_rate=0.0, rejected_share=0.0, audit_events=0,
                                   chunk_failure_rate=NO_CHUNK_FAILURES), seed=seed + 1)
    assert set(cancels.column("event").to_pylist()) <= {"upload_started", "chunk_uploaded", "upload_cancelled"}
    until = until_after(pa.concat_tables([base, cancels]))
    before = report_of(write_parquet(base, tmp_path / "a.parquet"), until).totals
    after = report_of(write_parquet(pa.concat_tables([base, cancels]), tmp_path / "b.parquet"), until).totals
    assert after.counts["cancelled"] == before.counts["cancelled"] + extra
    for name in ("publish_success_rate", "latency_sli"):
        b, a = before.figure(name), after.figure(name)
        assert (a.value, a.numerator, a.denominator) == (b.value, b.numerator, b.denominator)


@SETTINGS
@given(cfg=configs, seed=seeds, by=st.sampled_from([("region",), ("release",), ("release", "network_type"),
                                                    ("transcode_mode", "media_size_bucket"), ("service_version",)]))
def test_breakdown_parts_sum_to_the_total(tmp_path, cfg, seed, by):
    table = generate(cfg, seed=seed)
    r = report_of(write_parquet(table, tmp_path / "e.parquet"), until_after(table), by=by)
    for key in r.totals.counts:
        assert sum(s.counts[key] for s in r.breakdown) == r.totals.counts[key]
    for name in ("publish_success_rate", "latency_sli", "chunk_retry_rate", "transcode_failure_rate",
                 "api_timeout_rate"):
        total = r.totals.figure(name)
        assert sum(s.figure(name).numerator or 0 for s in r.breakdown) == (total.numerator or 0)
        assert sum(s.figure(name).denominator or 0 for s in r.breakdown) == (total.denominator or 0)


@FEWER
@given(cfg=configs, seed=seeds)
def test_jsonl_and_parquet_give_identical_reports(tmp_path, cfg, seed):
    table = generate(cfg, seed=seed)
    until = until_after(table)
    query = dict(by=("release", "region"), window_s=300)
    a = report_of(write_jsonl(table, tmp_path / "e.jsonl"), until, **query).to_dict()
    b = report_of(write_parquet(table, tmp_path / "e.parquet"), until, **query).to_dict()
    a.pop("inputs"), b.pop("inputs")
    assert a == b


@FEWER
@given(cfg=configs, seed=seeds)
def test_percentiles_equal_numpy_inverted_cdf(tmp_path, cfg, seed):
    table = generate(cfg, seed=seed)
    path = write_parquet(table, tmp_path / "e.parquet")
    until = until_after(table)
    events = load_events([path], until=until)
    rel = attempts(events, SPEC.abandon_after_s)
    processing = [r[0] for r in rel.filter("processing_ms IS NOT NULL").select("processing_ms").fetchall()]
    e2e = [r[0] for r in rel.filter("e2e_ms IS NOT NULL").select("e2e_ms").fetchall()]
    totals = compute_report(events, SPEC, SliQuery(until=until)).totals
    for kind, data in (("processing", processing), ("e2e", e2e)):
        for q in PERCENTILES:
            f = totals.figure(f"{kind}_latency_p{q * 100:g}")
            if not data:
                assert f.value is None
            else:
                assert f.value == float(np.quantile(np.array(data), q, method="inverted_cdf"))
                assert f.count == len(data)


@FEWER
@given(cfg=configs, seed=seeds)
def test_reports_without_folded_ids_are_identical(tmp_path, cfg, seed):
    # obslab sli and the bench skip folding upload_id/user_id (no SLI reads them): same report, to the last field.
    table = generate(cfg, seed=seed)
    until = until_after(table)
    path = write_jsonl(table, tmp_path / "e.jsonl")
    query = SliQuery(until=until, by=("release", "service_version"), window_s=300)
    with_ids = compute_report(load_events([path], until=until), SPEC, query).to_dict()
    without = compute_report(load_events([path], until=until, with_ids=False), SPEC, query).to_dict()
    assert with_ids == without


def test_attempts_refuses_events_loaded_without_ids(tmp_path):
    path = write_jsonl(generate(SynthConfig(attempts=3), seed=1), tmp_path / "e.jsonl")
    with pytest.raises(ValueError, match="with_ids=True"):
        attempts(load_events([path], with_ids=False))
    assert attempts(load_events([path])).count("*").fetchall()[0][0] == 3


@FEWER
@given(cfg=configs, seed=seeds, cut=st.floats(0, 1), archive_second=st.booleans())
def test_stored_folds_merge_to_the_report_of_all_events(tmp_path, cfg, seed, cut, archive_second):
    # Events split anywhere (attempts straddling the cut): the first part compacted (read through its
    # stored fold), the second compacted into the same archive or left as raw JSON lines.
    import tempfile

    from toolkit.events import compact
    table = generate(cfg, seed=seed)
    until = until_after(table)
    query = dict(by=("release", "region"), window_s=300)
    n = 1 + int(cut * (table.num_rows - 1))  # an empty archive is no archive: keep one event in it
    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        d = Path(d)
        whole = report_of(write_jsonl(table, d / "all.jsonl"), until, **query).to_dict()
        first = write_jsonl(table.slice(0, n), d / "first.jsonl")
        second = write_jsonl(table.slice(n), d / "second.jsonl")
        archive = d / "archive"
        compact([first], archive)
        inputs = [archive]
        if archive_second:
            compact([second], archive)
        else:
            inputs.append(second)
        events = load_events(inputs, until=until)
        assert events.prefolded_files == len(list(archive.glob("day=*/*.parquet")))
        merged = compute_report(events, SPEC, SliQuery(until=until, **query)).to_dict()
    whole.pop("inputs"), merged.pop("inputs")
    assert merged == whole
