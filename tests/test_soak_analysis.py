"""The soak benchmark's analysis: a known leak is found, flat and noisy series are not,
and the performance doc keeps other sections. The sampler reads real processes."""

from __future__ import annotations

import os
import random
import signal
import time
import subprocess
import sys

from toolkit.bench.soak import ProcessSample, ProcessSampler, Thresholds, analyse, render_markdown


def _samples(role, rss_of_t, *, minutes=5, interval=5.0, pids=(100,), fds=12, threads=4):
    out = []
    t = 0.0
    while t <= minutes * 60:
        for pid in pids:
            out.append(ProcessSample(t, role, pid, rss_of_t(t) / len(pids), fds, threads))
        t += interval
    return out


def test_a_leak_is_growing_and_flat_noise_is_stable():
    rng = random.Random(7)
    leak = _samples("publish-api worker", lambda t: 80 + t / 60 * 2.0 + rng.gauss(0, 0.3), pids=(1, 2))  # 120 MB/h
    flat = _samples("transcoder worker", lambda t: 60 + rng.gauss(0, 0.5), pids=(3,))
    report = analyse(leak + flat, duration_s=300, warmup_s=60, interval_s=5)
    by = {(t.role, t.resource): t for t in report.trends}
    rss = by[("publish-api worker", "rss_mb")]
    assert rss.verdict == "growing" and 100 < rss.slope_per_hour < 140 and rss.processes == 2
    assert by[("transcoder worker", "rss_mb")].verdict == "stable"
    assert by[("transcoder worker", "threads")].verdict == "stable"
    assert report.verdict == "growing" and report.growing == (rss,)


def test_warm_up_growth_that_flattens_is_settling_not_growing():
    rng = random.Random(3)
    # +20 MB over the first two minutes, then flat: a cache filling, not a leak.
    warm = _samples("w", lambda t: 60 + 20 * min(t, 120) / 120 + rng.gauss(0, 0.1), minutes=5)
    report = analyse(warm, duration_s=300, warmup_s=0, interval_s=5)
    rss = next(t for t in report.trends if t.resource == "rss_mb")
    assert rss.slope_per_hour > 50 and rss.p_value < 0.01
    assert rss.verdict == "settling" and abs(rss.late_slope_per_hour) < 50
    assert report.verdict == "stable"


def test_slow_growth_below_the_limit_is_stable_and_noisy_fast_growth_inconclusive():
    rng = random.Random(1)
    slow = _samples("a", lambda t: 50 + t / 3600 * 10 + rng.gauss(0, 0.05))  # 10 MB/h < 50 MB/h
    noisy = _samples("b", lambda t: 50 + t / 3600 * 80 + rng.gauss(0, 40), minutes=3)  # 80 MB/h in heavy noise
    report = analyse(slow + noisy, duration_s=300, warmup_s=0, interval_s=5, thresholds=Thresholds())
    by = {(t.role, t.resource): t for t in report.trends}
    assert by[("a", "rss_mb")].verdict == "stable"
    assert by[("b", "rss_mb")].verdict in ("inconclusive", "stable")
    assert by[("b", "rss_mb")].p_value > 0.01


def test_too_few_samples_is_inconclusive_and_restarts_are_reported():
    samples = _samples("w", lambda t: 50, minutes=0.5, interval=10)
    samples += [ProcessSample(40.0, "w", 999, 50, 12, 4)]  # a replaced worker
    report = analyse(samples, duration_s=40, warmup_s=0, interval_s=10)
    assert report.verdict == "inconclusive"
    assert report.restarts == {"w": 1}
    text = render_markdown(report, command="obslab bench soak --minutes 0.5", machine="test")
    assert "**Verdict: inconclusive**" in text and "w: 1" in text


def test_sampler_reads_a_real_process_tree():
    code = "import subprocess,sys,time; c=subprocess.Popen([sys.executable,'-c','import time; time.sleep(30)']); time.sleep(30)"
    root = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        sampler = ProcessSampler({"svc": root.pid})

        def settled(tick):  # both processes up and past exec (a child caught mid-exec reads near zero)
            return len(tick) == 2 and all(s.rss_mb > 1 and s.open_fds >= 1 and s.threads >= 1 for s in tick)

        deadline = time.monotonic() + 15
        tick = sampler.sample()
        while not settled(tick) and time.monotonic() < deadline:
            time.sleep(0.1)
            tick = sampler.sample()
        roles = sorted(s.role for s in tick)
        assert roles == ["svc master", "svc worker"]
        assert settled(tick), tick
    finally:
        os.killpg(root.pid, signal.SIGKILL)
        root.wait()
    # The root is gone: the sampler skips it instead of failing.
    assert sampler.sample() == []


def test_bench_soak_refuses_bad_options_in_one_line():
    from typer.testing import CliRunner

    from toolkit.cli import app

    for args, what in ((["--minutes", "0.1"], "--minutes 0.1"), (["--minutes", "1", "--interval", "30"], "--interval"),
                       (["--minutes", "1", "--warmup", "90"], "--warmup")):
        result = CliRunner().invoke(app, ["bench", "soak", *args])
        assert result.exit_code == 2, result.output
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and what in lines[0] and "Traceback" not in result.output, result.output
