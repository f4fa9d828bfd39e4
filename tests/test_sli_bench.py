"""The SLI benchmark's machinery (not its speed): pandas and DuckDB agree, the docs section is replaced in place."""

import pytest

from toolkit.bench.sli import SECTION_TITLE, run_bench, write_section


@pytest.mark.slow
def test_bench_engines_agree_and_section_is_replaced(tmp_path):
    result = run_bench(4000, seed=3, cache_dir=tmp_path / "cache")
    assert [(r.engine, r.format) for r in result.runs] == [
        ("duckdb", "parquet"), ("duckdb", "jsonl"), ("pandas", "parquet"), ("pandas", "jsonl")]
    assert result.agree, result.disagreements
    assert all(r.events == 4000 and r.report_s > 0 and r.peak_rss_mb > 10 for r in result.runs)
    # The generated data is cached and reused.
    again = run_bench(4000, seed=3, cache_dir=tmp_path / "cache", pandas_formats=())
    assert len(again.runs) == 2 and again.runs[0].headline == result.runs[0].headline

    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\n## Instrumentation overhead\n\nkeep me\n\n## SLI engine\n\nold figures\n\n"
                   "## Zzz\n\nkeep me too\n")
    write_section(result, doc, "obslab bench sli --events 4000")
    text = doc.read_text()
    assert "keep me\n" in text and "keep me too" in text and "old figures" not in text
    assert text.count(SECTION_TITLE) == 1 and "| duckdb | parquet |" in text
    assert text.index("## Instrumentation overhead") < text.index(SECTION_TITLE) < text.index("## Zzz")
