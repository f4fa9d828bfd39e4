"""Reading events: bad lines named as file:line, --strict, torn final lines, rotation, gzip, globs, Parquet."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.events import EventsError, compact, load_events, resolve_paths, validate_files
from toolkit.measures.sli import SliQuery, compute_report
from toolkit.slo.spec import load_spec

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


# -- stored folds (toolkit.events.stored_fold) -------------------------------------------------

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
    from toolkit.events.attempts import attempts
    merged = attempts(load_events([partial, second])).order("request_id").fetchall()
    assert merged == attempts(load_events([GOLDEN])).order("request_id").fetchall()


# -- read it right or say so ------------------------------------------------------------

def synth_log(tmp_path, n=600, seed=5):
    from toolkit.events.synth import generate, write_jsonl

    path = tmp_path / "synth.jsonl"
    write_jsonl(generate(events=n, seed=seed), path)
    return path


def test_a_log_from_another_emitter_fails_with_reasons_counted(tmp_path):
    path = tmp_path / "other.jsonl"
    path.write_text(GOLDEN.read_text().replace('"service": "publish-api"', '"service": "billing-api"')
                    .replace('"service": "transcoder"', '"service": "billing-api"'))
    p = run("sli", str(path), "--slo", str(ROOT / "slo.yaml"), "--format", "json")
    assert p.returncode == 2 and p.stdout == "" and "Traceback" not in p.stderr
    err = " ".join(p.stderr.split())
    n = len(golden_lines())
    assert f"{n} of {n} lines (100.0%) could not be read" in err
    assert f"service not one of publish-api, transcoder: {n} (first: {path}:1)" in err
    # The limit is an option: allowing everything gives the (empty) report, saying what was skipped.
    ok = run("sli", str(path), "--slo", str(ROOT / "slo.yaml"), "--format", "json", "--max-skipped", "100%")
    assert ok.returncode == 0 and json.loads(ok.stdout)["inputs"]["skipped_by_reason"] == {
        "service not one of publish-api, transcoder": n}


def test_a_small_share_of_skipped_lines_is_tolerated_and_a_larger_one_fails(tmp_path):
    lines = synth_log(tmp_path).read_text().splitlines()
    few = tmp_path / "few.jsonl"
    few.write_text("\n".join(lines[:300] + ["not json"] + lines[300:]) + "\n")  # 1 of 601 < 1 %
    assert load_events([few]).skipped == 1
    many = tmp_path / "many.jsonl"
    many.write_text("\n".join(lines[:300] + ["not json"] * 7 + lines[300:]) + "\n")  # 7 of 607 > 1 %
    with pytest.raises(EventsError, match=rf"7 of 607 lines.*not valid JSON, or no event field in it: 7 "
                                          rf"\(first: {many}:301\)"):
        load_events([many])


def test_skipped_lines_list_names_only_lines_the_reader_skipped(tmp_path):
    lines = synth_log(tmp_path).read_text().splitlines()
    used = json.loads(lines[10])
    used["trace_id"] = "not-a-trace-id"  # breaks the full schema, not the structural check: the line is used
    skipped = json.loads(lines[20])
    skipped["schema_version"] = 2
    lines[10], lines[20] = json.dumps(used), json.dumps(skipped)
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    events = load_events([path])
    assert (events.events, events.skipped) == (len(lines) - 1, 1)
    assert [(p.line, p.message.split(" (")[0]) for p in events.problems] == [(21, "schema_version missing or not 1")]
    assert validate_files([path]).invalid == 2  # validate checks the full schema: both lines


def shifted(line: str, hours: int) -> str:
    """The same instant written with a +HH:00 offset."""
    from datetime import datetime, timedelta

    obj = json.loads(line)
    local = datetime.strptime(obj["ts"], "%Y-%m-%dT%H:%M:%S.%fZ") + timedelta(hours=hours)
    obj["ts"] = local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond // 1000:03d}+{hours:02d}:00"
    return json.dumps(obj)


def test_a_timestamp_with_an_offset_is_the_same_instant_in_every_reader_and_in_validate(tmp_path):
    lines = golden_lines()
    # a's publish_succeeded (line 7) written at +02:00: the same instant, so the same figures.
    lines[6] = shifted(lines[6], 2)
    assert lines[6].count("+02:00") == 1
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert validate_files([path]).ok
    events = load_events([path], strict=True)
    assert events.skipped == 0
    assert totals([path]) == totals([GOLDEN])
    # Parquet: compacted (through the same reader), and written by another tool with ts as text.
    out = tmp_path / "pq"
    compact([path], out)
    assert totals([out]) == totals([GOLDEN])
    import duckdb

    text_pq = tmp_path / "text_ts.parquet"
    duckdb.sql(f"COPY (SELECT * FROM read_json('{path}', columns={{ts: 'VARCHAR', event: 'VARCHAR', "
               "request_id: 'VARCHAR', upload_id: 'VARCHAR', span_id: 'VARCHAR', service: 'VARCHAR', "
               "service_version: 'VARCHAR', schema_version: 'INTEGER', synthetic: 'BOOLEAN', duration_ms: 'DOUBLE', "
               "chunk_count: 'INTEGER', error_class: 'VARCHAR', region: 'VARCHAR', queue_wait_ms: 'DOUBLE'}))"
               f" TO '{text_pq}' (FORMAT parquet)")
    from_text = totals([text_pq])
    golden = totals([GOLDEN])
    assert from_text["totals"]["latency"] == golden["totals"]["latency"]
    assert from_text["totals"]["counts"] == golden["totals"]["counts"]


def test_a_timestamp_without_a_zone_is_refused_by_the_reader_and_by_validate(tmp_path):
    lines = synth_log(tmp_path).read_text().splitlines()
    obj = json.loads(lines[6])
    obj["ts"] = obj["ts"].removesuffix("Z")
    lines[6] = json.dumps(obj)
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert not validate_files([path]).ok and validate_files([path]).problems[0].line == 7
    events = load_events([path])
    assert events.skipped == 1 and events.problems[0].line == 7
    assert events.problems[0].message.startswith("ts not an RFC 3339 time with a zone")


def test_duplicate_events_are_removed_by_identity_and_counted(tmp_path):
    lines = golden_lines()
    # b's chunk_retry and chunk_uploaded, c's transcode_failed and d's cancel written twice (a writer retried).
    dup = lines + [lines[9], lines[10], lines[19], lines[23]]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(dup) + "\n")
    events = load_events([path])
    assert (events.events, events.duplicates, events.skipped) == (len(lines), 4, 0)
    assert totals([path]) == totals([GOLDEN])
    p = run("sli", str(path), "--slo", str(ROOT / "slo.yaml"), "--format", "json")
    assert json.loads(p.stdout)["inputs"]["duplicates_removed"] == 4
    assert "4 duplicate event(s) removed" in p.stderr
    table = run("sli", str(path), "--slo", str(ROOT / "slo.yaml"))
    assert "duplicates removed: 4" in table.stdout
    # Same request, event and ts but another span: two events, not a duplicate.
    other = json.loads(lines[10])
    other["span_id"] = "00000000000fffff"
    path.write_text("\n".join(lines + [json.dumps(other)]) + "\n")
    assert load_events([path]).duplicates == 0


def test_one_time_parser_and_formatter():
    from datetime import datetime

    from contract import events as contract
    from contract.events import TimeError, format_time, parse_time
    from toolkit.measures.sli import iso
    from toolkit.lab.web.snapshot import iso as snapshot_iso, parse_ts

    assert contract.event_schema()["properties"]["ts"]["pattern"] == contract.EVENT_TS_PATTERN
    utc = datetime(2026, 1, 5, 10, 0, 1, 500000)
    for text in ("2026-01-05T10:00:01.500Z", "2026-01-05T12:00:01.500+02:00", "2026-01-05T07:30:01.500-02:30"):
        assert parse_time(text, zone_required=True) == utc
    assert parse_time("2026-01-05T10:00:01.500") == utc  # command line: no zone means UTC
    with pytest.raises(TimeError, match="no time zone"):
        parse_time("2026-01-05T10:00:01.500", zone_required=True)
    assert format_time(utc) == iso(utc) == snapshot_iso(utc) == "2026-01-05T10:00:01.500Z"
    assert format_time(parse_ts("2026-01-05T12:00:01.500+02:00")) == "2026-01-05T10:00:01.500Z"
    from demo_service.telemetry.events import event_timestamp

    assert event_timestamp(utc.replace(tzinfo=contract.timezone.utc).timestamp()) == format_time(utc)


def test_lines_after_until_are_ignored_not_named_as_skipped(tmp_path):
    lines = synth_log(tmp_path).read_text().splitlines()
    until = json.loads(lines[299])["ts"]
    late = json.loads(lines[-1])
    late["service"] = "billing-api"  # unusable, but after --until: ignored like every later line
    early = json.loads(lines[100])
    early["service"] = "billing-api"
    lines[-1], lines[100] = json.dumps(late), json.dumps(early)
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    events = load_events([path], until=until)
    assert events.skipped == 1 and [p.line for p in events.problems] == [101]
