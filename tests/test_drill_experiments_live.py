"""Experiment-trap drills, each run for real and unattended at --speed 10, two at a time.

Each test starts its own service (gunicorn API + transcoder on free loopback ports), runs
``obslab drill start ID --auto --speed 10`` with the drill's own load, flags and faults through the admin
API, and checks on the run's data that the trap is there — the naive comparison moves one way, the
correct analysis the other, far beyond noise — and that the solver's answer grades full. The figures come
from the solver's own checks (``auto.json``), which the report prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.lab.processes import ServiceProcesses

pytestmark = pytest.mark.slow

SPEED = os.environ.get("OBSLAB_DRILL_TEST_SPEED", "10")
SEED = os.environ.get("OBSLAB_DRILL_TEST_SEED", "20261130")


DRILLS = ("canary-success-win", "canary-slower-success", "canary-latency-win", "canary-cancel-cleanup",
          "canary-watched-closely", "release-without-canary")
# Two drills at a time, each with its own service. Three at a time ended sooner (305 s against 377 s) but starved
# canary-latency-win in CI: its control arm got 778 publishes, under the 1,000 a p99 comparison needs, and the
# trap's p99 could not be shown.
PARALLEL = int(os.environ.get("OBSLAB_DRILL_TEST_PARALLEL", "2"))


def _selected() -> list[str]:
    only = os.environ.get("OBSLAB_DRILL_TEST_ONLY")
    return [d for d in DRILLS if not only or d in only.split(",")]


def _drive(base: Path, drill_id: str) -> tuple[dict, dict, str] | str:
    """Run one drill unattended on a service of its own; its results, or the failure as text."""
    with ServiceProcesses(base / "data", workers=2) as svc:
        proc = subprocess.run(
            [sys.executable, "-c", "from toolkit.cli import main; main()", "drill", "start", drill_id, "--auto",
             "--speed", SPEED, "--seed", SEED, "--data-dir", str(base), "--url", svc.base_url],
            capture_output=True, text=True, timeout=900, env={**os.environ, "OBSLAB_ADMIN_TOKEN": svc.admin_token})
    if proc.returncode != 0:
        return proc.stdout + proc.stderr
    run = sorted((base / "drills").glob("*-" + drill_id))[-1]
    auto = json.loads((run / "auto.json").read_text())
    report = json.loads((run / "report" / "report.json").read_text())
    # Figures for the record (pytest -s shows them).
    figures = {k: auto["checks"].get(k) for k in ("naive", "counters", "stratified", "outcome_shares", "tail",
                                                  "time_overlap")}
    if auto["checks"].get("looks"):
        figures["looks"] = {k: v for k, v in auto["checks"]["looks"].items() if k != "per_look"}
    print(drill_id, json.dumps(figures, default=str))
    return auto, report, (run / "report" / "report.md").read_text()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    wanted = _selected()
    with ThreadPoolExecutor(max_workers=max(1, PARALLEL)) as pool:
        futures = {d: pool.submit(_drive, tmp_path_factory.mktemp(d), d) for d in wanted}
        return {d: f.result() for d, f in futures.items()}


def _run(runs: dict, drill_id: str) -> tuple[dict, dict, str]:
    if drill_id not in runs:
        pytest.skip(f"{drill_id} not selected by OBSLAB_DRILL_TEST_ONLY")
    result = runs[drill_id]
    assert not isinstance(result, str), result
    return result


def _graded_full(auto: dict, report: dict) -> None:
    truth = report["drill"]["truth"]
    assert (auto["verdict"], auto["evidence"]) == (truth["verdict"], truth["evidence"]), auto["why"]
    assert report["grade"]["total"] == report["grade"]["max"] == 100


def test_sample_ratio_mismatch_hides_the_canary_failures(runs):
    auto, report, md = _run(runs, "canary-success-win")
    c = auto["checks"]
    # The naive comparison over the log: the canary looks better, far beyond noise...
    assert c["naive"]["harm_z"] <= -3, c["naive"]
    # ...and `obslab compare` would not stop the rollout on it.
    assert c["compare"]["verdict"]["verdict"] != "rollback", c["compare"]
    # The service's own counters, which saw every attempt: the canary is worse, far beyond noise.
    counted = c["counters"]["counted_effect"]
    assert counted["harm_z"] >= 5, counted
    # The arms in the log are not the split the counters say they should be.
    assert c["counters"]["srm"]["mismatch"] and c["counters"]["srm"]["p_value"] < 1e-6, c["counters"]
    assert c["counters"]["logged"][1] < 0.85 * c["counters"]["counted"][1]
    assert abs(c["counters"]["logged"][0] - c["counters"]["counted"][0]) <= 0.02 * c["counters"]["counted"][0] + 3
    _graded_full(auto, report)
    assert "Sample ratio" in md


def test_simpsons_paradox_the_mix_moves_the_aggregate(runs):
    auto, report, md = _run(runs, "canary-slower-success")
    c = auto["checks"]
    # The arms see the same traffic volume honestly (no lost events): the log matches the counters.
    assert not c["counters"]["srm"]["mismatch"], c["counters"]
    assert c["naive"]["harm_z"] >= 3, c["naive"]  # overall the canary looks worse
    shift = next(m for m in c["mix_shifts"] if m["dimension"] == "network_type")
    assert shift["treatment_shares"]["3g"] > 3 * shift["control_shares"]["3g"], shift
    within = c["stratified"]["network_type"]
    assert within["harm_z"] <= -5, within  # within each network type it is better
    _graded_full(auto, report)
    assert "within each network_type" in md


def test_mean_improves_while_p99_worsens(runs):
    auto, report, md = _run(runs, "canary-latency-win")
    c = auto["checks"]
    assert not c["counters"]["srm"]["mismatch"] and not c["mix_shifts"], c
    tail = c["tail"]
    assert tail["mean"]["harm_z"] <= -5, tail["mean"]  # the mean: the canary is much faster
    assert tail["ci"][0] is not None and tail["ci"][0] > 0, tail  # p99: worse, the whole interval above zero
    assert tail["treatment"] >= 1.5 * tail["control"], tail
    _graded_full(auto, report)
    assert "p99" in md


def test_cancellations_counted_as_failures_move_the_rate_not_the_product(runs):
    auto, report, md = _run(runs, "canary-cancel-cleanup")
    c = auto["checks"]
    assert not c["counters"]["srm"]["mismatch"] and not c["mix_shifts"], c
    assert c["naive"]["harm_z"] >= 5, c["naive"]  # the rate says the canary is worse...
    shares = c["outcome_shares"]
    assert shares["cancelled_share"]["z"] <= -5 and shares["failed_share"]["z"] >= 5, shares
    assert abs(shares["not_published_share"]["z"]) < 2, shares  # ...users published as often in both arms
    _graded_full(auto, report)
    assert "Outcome categories" in md


def test_a_peeker_is_fooled_by_an_unchanged_canary(runs):
    auto, report, md = _run(runs, "canary-watched-closely")
    c = auto["checks"]
    assert not c["counters"]["srm"]["mismatch"] and not c["mix_shifts"], c
    looks = c["looks"]
    # The peeker: every window's three tests at p < 0.05, uncorrected, stops on a 'significant' one...
    assert looks["looks"] == 60 and looks["tests"] >= 150 and looks["naive_hits"] >= 1, looks["first_naive_hit"]
    # ...where the rollout's always-valid rule over the same looks finds nothing, and the whole run shows no effect.
    assert looks["corrected_hits"] == 0, looks["smallest_p_always_valid"]
    assert abs(c["naive"]["z"]) < 3, c["naive"]
    print("peeking margin:", looks["naive_hits"], "naive hits of", looks["tests"], "tests (",
          round(looks["expected_by_chance"], 1), "by chance ); smallest always-valid p", looks["smallest_p_always_valid"],
          "against", looks["always_valid_alpha"], "; whole run z", round(c["naive"]["z"], 2))
    _graded_full(auto, report)
    assert "Repeated looks" in md


def test_before_after_confounded_by_a_traffic_change(runs):
    auto, report, md = _run(runs, "release-without-canary")
    c = auto["checks"]
    assert not c["counters"]["srm"]["mismatch"], c["counters"]
    # The arms ran one after the other: the release went to everyone at one moment.
    assert c["time_overlap"]["overlap_share"] < 0.2, c["time_overlap"]
    assert c["naive"]["harm_z"] >= 3, c["naive"]  # after the release the rate is lower than before...
    shift = next(m for m in c["mix_shifts"] if m["dimension"] == "network_type")
    assert shift["treatment_shares"]["3g"] > 3 * shift["control_shares"]["3g"], shift  # ...the traffic changed...
    within = c["stratified"]["network_type"]
    assert within["harm_z"] <= -2, within  # ...and within each network type it is better
    print("before/after margin: naive harm z", round(c["naive"]["harm_z"], 1), "within each network_type",
          round(within["harm_z"], 1))
    _graded_full(auto, report)
    assert "before / after comparison" in md
