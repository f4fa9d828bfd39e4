"""Event readers take http(s) URLs (served here by a real HTTP server on 127.0.0.1), name them by
URL in every count and problem, and explain object-store schemes that need DuckDB's httpfs."""

import functools
import gzip
import http.server
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from toolkit.events import EventsError, compact, load_events, validate_files

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden.jsonl"
OBSLAB = str(Path(sys.executable).with_name("obslab"))


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_jsonl_gzip_and_parquet_urls_read_like_local_files(served, tmp_path):
    root, base = served
    shutil.copy(GOLDEN, root / "events.jsonl")
    (root / "events.jsonl.gz").write_bytes(gzip.compress(GOLDEN.read_bytes()))
    compact([GOLDEN], tmp_path / "archive")
    parquet = next((tmp_path / "archive").rglob("events-*.parquet"))
    shutil.copy(parquet, root / "day.parquet")
    local = load_events([GOLDEN])
    for name in ("events.jsonl", "events.jsonl.gz", "day.parquet"):
        got = load_events([f"{base}/{name}"])
        assert (got.events, got.duplicates, got.skipped) == (local.events, local.duplicates, local.skipped), name
        assert [s.path for s in got.sources] == [f"{base}/{name}"]
    assert validate_files([f"{base}/events.jsonl"]).valid == validate_files([GOLDEN]).valid
    assert compact([f"{base}/events.jsonl"], tmp_path / "from-url").events == compact([GOLDEN], tmp_path / "b").events


def test_problems_are_named_by_url(served):
    root, base = served
    lines = GOLDEN.read_text().splitlines()
    bad = json.loads(lines[0])
    bad["schema_version"] = 2
    (root / "bad.jsonl").write_text("\n".join(lines + [json.dumps(bad)]) + "\n")
    events = load_events([f"{base}/bad.jsonl"], max_skipped_share=None)
    assert events.skipped == 1 and str(events.problems[0]).startswith(f"{base}/bad.jsonl:{len(lines) + 1}: ")
    with pytest.raises(EventsError, match=rf"^{base}/bad.jsonl:{len(lines) + 1}: .*--strict"):
        load_events([f"{base}/bad.jsonl"], strict=True)
    assert validate_files([f"{base}/bad.jsonl"]).problems[0].path == f"{base}/bad.jsonl"


def test_missing_urls_and_object_store_schemes_are_clear_errors(served):
    _, base = served
    with pytest.raises(EventsError, match=rf"{base}/nothing.jsonl: HTTP 404"):
        load_events([f"{base}/nothing.jsonl"])
    with pytest.raises(EventsError, match=r"s3://bucket/events/: s3:// paths need DuckDB's httpfs extension"):
        load_events(["s3://bucket/events/"])


def test_the_cli_reads_a_url(served):
    root, base = served
    shutil.copy(GOLDEN, root / "events.jsonl")
    p = subprocess.run([OBSLAB, "sli", f"{base}/events.jsonl", "--slo", str(ROOT / "slo.yaml"), "--format", "json"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["inputs"]
    v = subprocess.run([OBSLAB, "events", "validate", f"{base}/events.jsonl"], capture_output=True, text=True,
                       timeout=120)
    assert v.returncode == 0, v.stdout + v.stderr
