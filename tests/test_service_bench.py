"""The overhead bench: pure summarizing and section writing, and one short real run with wrk."""

from __future__ import annotations

import shutil

import pytest

from toolkit.bench.overhead import (DEFAULT_VARIANTS, NOISE_VARIANT, SECTION_TITLE, OverheadReport, RoundResult, parse_wrk_output,
                                    render_markdown, run_overhead, summarize)
from toolkit.bench.perfdoc import write_section


def _r(variant, rnd, rps, p50=1.0, p99=5.0, cpu=500.0):
    return RoundResult(variant, rnd, int(rps * 3), 3.0, rps, p50, p99, 0, cpu)


def test_summary_pairs_each_round_with_its_baseline():
    results = [_r("off", 0, 1000), _r("default", 0, 900, p50=1.5), _r("off", 1, 500), _r("default", 1, 400, p50=2.0),
               _r("off", 2, 800), _r("default", 2, 720, p50=1.2)]
    off, default = summarize(results, DEFAULT_VARIANTS[:2])
    assert off.ratio_median is None and off.rps_median == 800
    assert default.ratio_median == pytest.approx(0.9)  # median of 0.9, 0.8, 0.9 (paired), not 720/800
    assert default.p50_delta_ms == pytest.approx(0.5)


def test_report_shows_every_round_and_judges_the_worst_and_the_cpu_added():
    results = []
    for rnd, (rps, cpu) in enumerate([(950, 650), (800, 720), (900, 690)]):
        results += [_r("off", rnd, 1000, cpu=600), _r("default", rnd, rps, cpu=cpu), _r("full", rnd, 700, cpu=900)]
    summaries = summarize(results, DEFAULT_VARIANTS)
    default = summaries[1]
    assert default.round_ratios == pytest.approx((0.95, 0.8, 0.9))  # in round order, each paired with its round
    assert default.round_cpu_deltas == pytest.approx((50, 120, 90)) and default.cpu_us_delta == pytest.approx(90)
    report = OverheadReport(summaries, 3, 3.0, 8, 1, 2, 4, 65536, 2, tuple(results), 0.4, 1.5)
    text = render_markdown(report, "obslab bench overhead", "now")
    assert "0.95, 0.80, 0.90" in text and "+50, +120, +90" in text
    assert "every round: worst 0.80x (target >= 0.85x: NOT met)" in text  # the median (0.90x) would hide it
    assert "CPU added per request at default sampling: +90 µs (target < 100 µs: met)" in text
    assert "load average (1 min): 0.4 when the rounds began, 1.5 when they ended" in text
    assert "Noise floor" not in text  # no A/A copy was measured: nothing to read the rounds against


def test_the_a_a_copy_is_shown_as_the_noise_floor_of_a_round():
    results = []
    for rnd, aa in enumerate([1.04, 0.93, 0.98]):
        results += [_r("off", rnd, 1000), _r("default", rnd, 900), _r("off-again", rnd, 1000 * aa)]
    summaries = summarize(results, DEFAULT_VARIANTS[:2] + (NOISE_VARIANT,))
    text = render_markdown(OverheadReport(summaries, 3, 3.0, 8, 1, 2, 4, 65536, 2, tuple(results)), "x", "now")
    assert "the A/A copy, uninstrumented like the baseline, measured 0.93x to 1.04x of it per round (median 0.98x)" in text
    assert "uninstrumented again, a second copy (A/A: the bench's own noise) | 1.04, 0.93, 0.98 |" in text


def test_write_section_replaces_only_its_own_section(tmp_path):
    path = tmp_path / "performance.md"
    path.write_text("# Performance\n\n## Other engineer\n\nkeep me\n\n## " + SECTION_TITLE + "\n\nold\n\n## Last\n\nme too\n")
    write_section(path, f"## {SECTION_TITLE}\n\nnew figures\n")
    text = path.read_text()
    assert "keep me" in text and "me too" in text and "new figures" in text and "old" not in text
    assert text.index("## Other engineer") < text.index(SECTION_TITLE) < text.index("## Last")
    fresh = tmp_path / "new.md"
    write_section(fresh, f"## {SECTION_TITLE}\n\nx\n")
    assert fresh.read_text().startswith("# Performance") and "x" in fresh.read_text()


def test_parse_wrk_output_needs_the_result_line():
    assert parse_wrk_output('noise\nOBSLAB_RESULT {"requests": 3, "duration_us": 1, "p50_us": 2, "p99_us": 3, '
                            '"errors": 0}\n')["requests"] == 3
    with pytest.raises(RuntimeError, match="no result line"):
        parse_wrk_output("Running 1s test\n")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed")
def test_short_real_run_measures_every_variant_without_errors(tmp_path):
    report = run_overhead(work_dir=tmp_path, rounds=1, duration_s=1, uploads=10)
    assert [s.variant.key for s in report.summaries] == ["off", "default", "full", "off-again"]
    for s in report.summaries:
        assert s.requests_total > 0 and s.errors_total == 0 and s.cpu_us_median > 0
    assert report.summaries[1].ratio_median is not None
    out = tmp_path / "perf.md"
    write_section(out, render_markdown(report, "obslab bench overhead --rounds 1", "now"))
    assert "ratio vs uninstrumented" in out.read_text()
    assert not list(tmp_path.glob("obslab-bench-*"))  # services stopped, work dir removed


def _listening_sockets(svc) -> dict[int, set[str]]:
    """Worker pid -> the socket inodes it listens on at the API's port."""
    import os

    import psutil

    out: dict[int, set[str]] = {}
    master = next(m for m in svc.processes if "demo_service.app" in " ".join(m.command.argv))
    for worker in psutil.Process(master.proc.pid).children():
        inodes = set()
        for c in worker.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr.port == svc.port:
                inodes.add(os.readlink(f"/proc/{worker.pid}/fd/{c.fd}"))
        out[worker.pid] = inodes
    return out


@pytest.mark.parametrize("reuse_port", [False, True])
def test_the_bench_gives_each_worker_its_own_socket_and_the_lab_shares_one(tmp_path, reuse_port):
    """The bench's services listen with SO_REUSEPORT, one socket per worker, so the kernel spreads wrk's connections
    (with a shared socket the workers race for them and often one gets all); the lab keeps the shared socket."""
    from toolkit.lab.processes import ServiceProcesses

    with ServiceProcesses(tmp_path / "svc", workers=2, reuse_port=reuse_port) as svc:
        sockets = _listening_sockets(svc)
    assert len(sockets) == 2 and all(len(s) == 1 for s in sockets.values()), sockets
    distinct = set().union(*sockets.values())
    assert len(distinct) == (2 if reuse_port else 1), sockets
