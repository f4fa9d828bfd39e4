"""Hive-partitioned archives: `compact` writes day=YYYY-MM-DD/, and a time scope reads only the
days it needs (counted in files), with the same figures as reading everything."""

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa

from toolkit.events import compact, load_events
from toolkit.events.sources import partition_day
from toolkit.events.synth import SynthConfig, generate, write_jsonl
from toolkit.measures.sli import SliQuery, compute_report
from toolkit.slo.spec import load_spec

SPEC = load_spec(Path(__file__).resolve().parents[1] / "slo.yaml")
DAY0 = datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc)


def _five_day_archive(tmp_path: Path) -> Path:
    days = [generate(SynthConfig(attempts=150, start=DAY0 + timedelta(days=d), duration_s=6 * 3600), seed=d)
            for d in range(5)]
    log = write_jsonl(pa.concat_tables(days), tmp_path / "events.jsonl")
    archive = tmp_path / "archive"
    result = compact([log], archive)
    assert result.days == tuple(f"2026-01-{5 + d:02d}" for d in range(5))
    return archive


def test_a_time_scope_reads_only_its_days_and_gives_the_same_figures(tmp_path):
    archive = _five_day_archive(tmp_path)
    since, until = "2026-01-07T10:00:00Z", "2026-01-07T12:00:00Z"
    everything = load_events([archive], until=until)
    scoped = load_events([archive], since=since, until=until)
    read_days = sorted({str(partition_day(s.path)) for s in scoped.sources})
    # Day 3 is the scope, day 2 the one-day lookback (attempts that started before `since`); days 1, 4, 5 unread.
    assert read_days == ["2026-01-06", "2026-01-07"]
    assert scoped.pruned_files == 3 and len(scoped.sources) == 2
    assert everything.pruned_files == 2 and len(everything.sources) == 3  # until alone: days 4 and 5 unread
    assert "3 file(s) of days outside the scope not read" in scoped.summary()
    query = SliQuery(since=since, until=until, window_s=None)
    a = compute_report(everything, SPEC, query).to_dict()["totals"]
    b = compute_report(scoped, SPEC, query).to_dict()["totals"]
    assert a["counts"]["attempts"] > 0 and a == b


def test_until_alone_prunes_later_days_and_the_stored_fold_steps_aside(tmp_path):
    archive = _five_day_archive(tmp_path)
    early = load_events([archive], until="2026-01-06T23:00:00Z")
    assert early.pruned_files == 3 and early.prefolded_files == 0  # the fold covers all five days: raw scan
    whole = load_events([archive])
    assert whole.pruned_files == 0 and whole.prefolded_files == 5
