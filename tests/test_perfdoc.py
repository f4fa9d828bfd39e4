"""The one writer of docs/performance.md: each benchmark replaces only its own section."""

from pathlib import Path

import pytest

from toolkit.bench.perfdoc import PerfDocError, write_section


def test_replaces_only_its_own_section(tmp_path: Path):
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\n## Overhead\n\nx 0.9\n\n## Soak\n\nold\n\n## SLI engine\n\n10 M/s\n")
    write_section(doc, "## Soak\n\nnew figures\n")
    text = doc.read_text()
    assert "old" not in text and "## Soak\n\nnew figures\n" in text
    assert text.index("## Overhead") < text.index("## Soak") < text.index("## SLI engine")
    assert "x 0.9" in text and "10 M/s" in text and text.count("## Soak") == 1


def test_appends_a_new_section_and_creates_the_file(tmp_path: Path):
    fresh = tmp_path / "docs" / "fresh.md"
    write_section(fresh, "## Embedded lab\n\nfirst\n")
    write_section(fresh, "## Load capacity\n\nsecond\n")
    text = fresh.read_text()
    assert text.startswith("# Performance\n") and text.index("## Embedded lab") < text.index("## Load capacity")


def test_a_heading_that_is_a_prefix_of_another_is_not_confused(tmp_path: Path):
    doc = tmp_path / "p.md"
    doc.write_text("# Performance\n\n## Soak test\n\nkeep\n")
    write_section(doc, "## Soak\n\nnew\n")
    assert "keep" in doc.read_text() and "## Soak\n\nnew" in doc.read_text()


def test_a_section_without_its_heading_is_refused(tmp_path: Path):
    with pytest.raises(PerfDocError, match="## heading"):
        write_section(tmp_path / "p.md", "figures without a heading\n")
    assert not (tmp_path / "p.md").exists()
