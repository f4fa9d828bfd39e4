"""The SLI benchmark's machinery (not its speed): pandas and DuckDB agree, the docs section is replaced in place."""

import pytest

from toolkit.bench.perfdoc import write_section
from toolkit.bench.sli import SECTION_TITLE, render_section, run_bench


@pytest.mark.slow
def test_bench_engines_agree_and_section_is_replaced(tmp_path):
    result = run_bench(4000, seed=3, cache_dir=tmp_path / "cache")
    assert [(r.engine, r.format) for r in result.runs] == [
        ("duckdb", "archive"), ("duckdb", "parquet"), ("duckdb", "jsonl"),
        ("pandas", "archive"), ("pandas", "parquet"), ("pandas", "jsonl")]
    assert result.agree, result.disagreements
    assert all(r.events == 4000 and r.report_s > 0 and r.peak_rss_mb > 10 for r in result.runs)
    # The archive run read the stored fold; the raw runs read events.
    assert [r.prefolded_files > 0 for r in result.runs if r.engine == "duckdb"] == [True, False, False]
    assert result.compaction is not None and result.compaction.report_s > 0 and result.archive_bytes > 0
    # The generated data and the archive are cached and reused.
    again = run_bench(4000, seed=3, cache_dir=tmp_path / "cache", pandas_formats=())
    assert len(again.runs) == 3 and again.runs[0].headline == result.runs[0].headline
    assert again.compaction is None

    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\n## Instrumentation overhead\n\nkeep me\n\n## SLI engine\n\nold figures\n\n"
                   "## Zzz\n\nkeep me too\n")
    write_section(doc, render_section(result, "obslab bench sli --events 4000"))
    text = doc.read_text()
    assert "keep me\n" in text and "keep me too" in text and "old figures" not in text
    assert text.count(SECTION_TITLE) == 1 and "| duckdb | Parquet file |" in text
    assert "| duckdb | archive (compact's output) |" in text and "Making the archive" in text
    assert text.index("## Instrumentation overhead") < text.index(SECTION_TITLE) < text.index("## Zzz")
