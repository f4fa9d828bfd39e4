"""Reading events: bad lines named as file:line, --strict, torn final lines, rotation, gzip, globs, Parquet."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.events_io import EventsError, compact, load_events, resolve_paths, validate_files
from toolkit.sli import SliQuery, compute_report
from toolkit.slo_spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden.jsonl"
OBSLAB = str(Path(sys.executable).with_name("obslab"))
SPEC = load_spec(ROOT / "slo.yaml")


def golden_lines():
    return GOLDEN.read_text().splitlines()


def totals(paths, **kw):
    r = compute_report(load_events(paths, **kw), SPEC, SliQuery(window_s=300, by=("release",)))
    d = r.to_dict()
    d.pop("inputs")
    return d


def with_bad_lines(tmp_path):
    lines = golden_lines()
    bad = list(lines)
    missing_ts = json.loads(lines[3])
    del missing_ts["ts"]
    unknown_event = json.loads(lines[4])
    unknown_event["event"] = "upload_teleported"
    bad.insert(2, "this is not json")  # line 3
    bad.insert(5, json.dumps(missing_ts))  # line 6
    bad.insert(8, json.dumps(unknown_event))  # line 9
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(bad) + "\n")
    return path


def test_invalid_lines_are_skipped_counted_and_named(tmp_path):
    path = with_bad_lines(tmp_path)
    events = load_events([path], max_skipped_share=None)
    assert events.skipped == 3
    assert [(p.path, p.line) for p in events.problems] == [(str(path), 3), (str(path), 6), (str(path), 9)]
    assert "not valid JSON" in events.problems[0].message
    assert '"ts" is a required property' in events.problems[1].message
    assert "upload_teleported" in events.problems[2].message
    # The bad lines were added to the clean log: what is left is exactly the clean log.
    assert events.events == len(golden_lines())
    assert totals([path], max_skipped_share=None) == totals([GOLDEN])


def test_strict_fails_on_the_first_invalid_line(tmp_path):
    path = with_bad_lines(tmp_path)
    with pytest.raises(EventsError, match=rf"^{path}:3: not valid JSON.*--strict"):
        load_events([path], strict=True)


def test_torn_final_line_is_tolerated_even_strict(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(golden_lines()) + "\n" + golden_lines()[-1][:57])
    events = load_events([path], strict=True)
    assert events.skipped == 0
    assert len(events.torn) == 1 and events.torn[0].line == len(golden_lines()) + 1
    assert "torn final line" in str(events.torn[0])
    assert totals([path]) == totals([GOLDEN])


def test_rotated_gzipped_and_globbed_files_read_as_one_log(tmp_path):
    lines = golden_lines()
    d = tmp_path / "events"
    d.mkdir()
    with gzip.open(d / "events.jsonl.2.gz", "wt") as f:
        f.write("\n".join(lines[:10]) + "\n")
    (d / "events.jsonl.1").write_text("\n".join(lines[10:25]) + "\n")
    (d / "events.jsonl").write_text("\n".join(lines[25:]) + "\n")
    assert [Path(s.path).name for s in resolve_paths([d])] == ["events.jsonl", "events.jsonl.1", "events.jsonl.2.gz"]
    expected = totals([GOLDEN])
    assert totals([d]) == expected
    assert totals([str(d / "events.jsonl*")]) == expected


def test_compact_to_parquet_gives_identical_reports(tmp_path):
    out = tmp_path / "parquet"
    result = compact([GOLDEN], out)
    assert result.events == len(golden_lines()) and result.days == ("2026-01-05",)
    assert all("day=2026-01-05" in f for f in result.files)
    assert totals([out]) == totals([GOLDEN])
    assert validate_files([out]).ok
    # Rows are grouped per attempt (request_id, then time): the layout the fold scans fastest.
    import duckdb
    rows = duckdb.sql(f"SELECT request_id, ts FROM read_parquet('{out}/day=*/*.parquet')").fetchall()
    keyed = [(rid is None, rid or "", ts) for rid, ts in rows]
    assert keyed == sorted(keyed) and len({rid for rid, _ in rows}) > 1


def test_missing_paths_are_one_clear_error(tmp_path):
    with pytest.raises(EventsError, match="no such file or directory"):
        load_events([tmp_path / "nope.jsonl"])
    with pytest.raises(EventsError, match="no file matches"):
        load_events([str(tmp_path / "*.jsonl")])
    with pytest.raises(EventsError, match="holds no event files"):
        load_events([tmp_path])


def run(*args):
    return subprocess.run([OBSLAB, *args], capture_output=True, text=True, timeout=120)


def test_validate_cli_names_lines_and_exits_nonzero(tmp_path):
    path = with_bad_lines(tmp_path)
    p = run("events", "validate", str(path))
    assert p.returncode == 1
    assert f"{path}:3: not valid JSON" in p.stdout
    assert f'{path}:6: "ts" is a required property' in p.stdout
    assert "3 invalid" in p.stdout and "error: 3 invalid line(s)" in p.stderr
    ok = run("events", "validate", str(GOLDEN))
    assert ok.returncode == 0 and "OK: every line matches" in ok.stdout
    strict = run("events", "validate", "--strict", str(path))
    assert strict.returncode == 1 and "stopped at the first invalid line" in strict.stdout
    missing = run("events", "validate", str(tmp_path / "missing.jsonl"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr


def test_sli_cli_warns_about_skipped_lines_and_strict_fails(tmp_path):
    path = with_bad_lines(tmp_path)
    p = run("sli", str(path), "--slo", str(ROOT / "slo.yaml"), "--format", "json", "--max-skipped", "10%")
    assert p.returncode == 0, p.stderr
    assert "3 invalid line(s) skipped" in p.stderr and f"{path}:3:" in p.stderr
    assert json.loads(p.stdout)["inputs"]["skipped_invalid_lines"] == 3
    s = run("sli", str(path), "--slo", str(ROOT / "slo.yaml"), "--strict")
    assert s.returncode == 2 and f"{path}:3: not valid JSON" in s.stderr and "Traceback" not in s.stderr


def test_compact_cli_roundtrip(tmp_path):
    out = tmp_path / "pq"
    p = run("events", "compact", str(GOLDEN), "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert f"wrote {len(golden_lines())} events" in p.stdout
    a = json.loads(run("sli", str(GOLDEN), "--slo", str(ROOT / "slo.yaml"), "--format", "json").stdout)
    b = json.loads(run("sli", str(out), "--slo", str(ROOT / "slo.yaml"), "--format", "json").stdout)
    assert a["totals"] == b["totals"] and a["series"] == b["series"]
    assert (a["inputs"]["prefolded_files"], b["inputs"]["prefolded_files"]) == (0, 1)
    table = run("sli", str(out), "--slo", str(ROOT / "slo.yaml"))
    assert "1 read through their stored fold" in table.stdout


def test_truncated_gzip_archive_is_a_torn_line_not_an_error(tmp_path):
    whole = gzip.compress(("\n".join(golden_lines()) + "\n").encode())
    path = tmp_path / "events.jsonl.3.gz"
    path.write_bytes(whole[: len(whole) // 2])  # the archive was cut mid-stream
    events = load_events([path], strict=True)
    assert events.skipped == 0 and len(events.torn) == 1 and events.torn[0].path == str(path)
    assert 0 < events.events < len(golden_lines())


def test_value_the_reader_cannot_convert_is_reported(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(GOLDEN.read_text().replace("10:00:00.200Z", "10:00:61.200Z"))
    events = load_events([path], max_skipped_share=None)
    assert events.skipped == 1 and f"{path}:2: ts not an RFC 3339 time" in str(events.problems[0])
    with pytest.raises(EventsError, match="ts not an RFC 3339 time"):
        load_events([path], strict=True)


# -- stored folds (toolkit.stored_fold) -------------------------------------------------

def full_report(paths, **kw):
    events = load_events(paths, **kw)
    d = compute_report(events, SPEC, SliQuery(window_s=300, by=("release", "region"), until=kw.get("until"))
                       ).to_dict()
    d.pop("inputs")
    return events, d


def test_compact_writes_a_stored_fold_that_reports_read_instead_of_events(tmp_path):
    out = tmp_path / "archive"
    result = compact([GOLDEN], out)
    manifests = list((out / "_fold").glob("fold-*.json"))
    assert len(manifests) == 1 and manifests[0].with_suffix(".parquet").is_file()
    assert result.written and set(result.written) == set(result.files)
    raw_events, raw = full_report([GOLDEN])
    events, folded = full_report([out])
    assert events.prefolded_files == len(result.files) and "read through their stored fold" in events.summary()
    assert folded == raw and events.events == raw_events.events
    assert (events.rejected_events, events.audit_events, events.min_ts, events.max_ts) == (
        raw_events.rejected_events, raw_events.audit_events, raw_events.min_ts, raw_events.max_ts)
    # The stored fold is not an event file: a directory walk or glob leaves it out, naming it is an error.
    assert all("_fold" not in s.path for s in resolve_paths([out]) + resolve_paths([str(out / "**/*.parquet")]))
    with pytest.raises(EventsError, match="stored fold"):
        load_events([manifests[0].with_suffix(".parquet")])


def test_a_stored_fold_is_used_only_while_its_files_are_unchanged(tmp_path):
    import os
    out = tmp_path / "archive"
    compact([GOLDEN], out)
    _, raw = full_report([GOLDEN])
    data = next(out.glob("day=*/*.parquet"))
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # rewritten, as far as anyone can tell
    events, report = full_report([out])
    assert events.prefolded_files == 0 and report == raw
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert full_report([out])[0].prefolded_files == 1
    manifest = next(out.glob("_fold/*.json"))
    manifest.write_text("{not json")  # damaged: ignored, never fatal
    events, report = full_report([out])
    assert events.prefolded_files == 0 and report == raw


def test_until_inside_a_stored_fold_reads_the_events(tmp_path):
    out = tmp_path / "archive"
    compact([GOLDEN], out)
    raw_events = load_events([GOLDEN])
    cut = raw_events.min_ts + (raw_events.max_ts - raw_events.min_ts) / 2
    events, report = full_report([out], until=cut.isoformat())
    assert events.prefolded_files == 0
    assert report == full_report([GOLDEN], until=cut.isoformat())[1]
    after = (raw_events.max_ts.replace(microsecond=0)).isoformat() + ".999999"
    assert full_report([out], until=after)[0].prefolded_files == 1


def test_compacting_twice_into_one_directory_keeps_both_runs_and_merges_their_folds(tmp_path):
    lines = golden_lines()
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    # Split mid-attempt: attempts span both runs, so their partial folds must merge.
    first.write_text("\n".join(lines[:17]) + "\n")
    second.write_text("\n".join(lines[17:]) + "\n")
    out = tmp_path / "archive"
    r1 = compact([first], out)
    r2 = compact([second], out)
    assert set(r1.written).isdisjoint(r2.written) and set(r1.written) | set(r2.written) == set(r2.files)
    assert all(Path(f).exists() for f in r1.written)  # the second run overwrote nothing
    with pytest.raises(EventsError, match="inside the output directory"):
        compact([out], out)
    with pytest.raises(EventsError, match="output inside the input directory"):
        compact([tmp_path], tmp_path / "nested-archive")
    events, report = full_report([out])
    assert events.prefolded_files == len(r2.files) == 2 and len(list(out.glob("_fold/*.json"))) == 2
    assert report == full_report([GOLDEN])[1]
    # An archive plus raw events (a live file): one stored fold and the raw fold merge too.
    partial = tmp_path / "partial"
    compact([first], partial)
    events, report = full_report([partial, second])
    assert events.prefolded_files == 1 and report == full_report([GOLDEN])[1]
    from toolkit.attempts import attempts
    merged = attempts(load_events([partial, second])).order("request_id").fetchall()
    assert merged == attempts(load_events([GOLDEN])).order("request_id").fetchall()
