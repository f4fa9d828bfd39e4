"""The repository itself: what a test or fuzz run writes locally never dirties the tree."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30)


@pytest.fixture(autouse=True)
def _needs_a_git_checkout():
    if shutil.which("git") is None or _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout (an sdist or an installed copy): nothing to check")


def test_the_schemathesis_cache_is_neither_tracked_nor_reported():
    assert _git("ls-files", "--", ".schemathesis").stdout == ""
    crash = ".schemathesis/default/cache/crashes/POST_v1_uploads_positive_data_acceptance_0.json"
    assert _git("check-ignore", "-q", "--no-index", crash).returncode == 0, f"{crash} is not gitignored"
