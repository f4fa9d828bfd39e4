"""`obslab load` and `obslab reconcile` for real: gunicorn service, Locust headless, faults on.

Every Locust run here is bounded by --duration and stopped by `obslab load` itself; the service
fixtures stop the service process groups even when a test fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from loadtests.record import read_attempts
from toolkit.lab.processes import free_port
from toolkit.analysis.reconcile_io import counters_from_metrics, reconcile_run

# The console script of this environment, as a user runs it.
OBSLAB = [str(Path(sys.executable).with_name("obslab"))]
# Faults reach every worker within a second (the service's contract).
FAULT_PROPAGATION_S = 1.5


def obslab(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([*OBSLAB, *args], capture_output=True, text=True, timeout=timeout, env=env)


def put_fault(service, name: str, spec: dict) -> None:
    response = service.admin("PUT", f"/admin/faults/{name}", json=spec)
    assert response.status_code in (200, 201), response.text
    time.sleep(FAULT_PROPAGATION_S)


def load(service, out: Path, *args: str) -> subprocess.CompletedProcess:
    result = obslab("load", "--host", service.base_url, "--out", str(out), *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def reconcile(service, out: Path) -> subprocess.CompletedProcess:
    return obslab("reconcile", "--client", str(out / "client.jsonl"), "--events", str(service.events_dir),
                  "--metrics", service.base_url + "/metrics", "--limit", "20")


def aggregated_requests(out: Path) -> int:
    import csv

    with (out / "locust_stats.csv").open() as f:
        return next(int(r["Request Count"]) for r in csv.DictReader(f) if r["Name"] == "Aggregated")


@pytest.mark.slow
def test_a_minute_of_load_with_chunk_failures_reconciles_exactly(fresh_service, tmp_path):
    """60 s at >= 100 requests/s with 10 % of chunk writes failing: client, events and /metrics agree."""
    put_fault(fresh_service, "chunks", {"kind": "chunk_failures", "target": "storage", "percentage": 10})
    out = tmp_path / "load"
    run = load(fresh_service, out, "--duration", "60s", "--users", "40", "--spawn-rate", "20",
               "--cancel-rate", "0.05", "--seed", "3", "--set", "think_time=200ms-1s")
    assert "publish attempts (client view)" in run.stdout

    requests_sent = aggregated_requests(out)
    assert requests_sent >= 100 * 60, f"only {requests_sent} requests in 60 s"
    attempts = read_attempts(out / "client.jsonl")
    outcomes = Counter(a.outcome for a in attempts)
    assert outcomes["published"] > 500 and outcomes["cancelled"] > 0
    assert sum(a.retries for a in attempts) > 100, "10 % chunk failures must show as client retries"
    assert all(a.request_id.startswith(a.run_id + ".") for a in attempts)
    assert all(c.get("region") for c in (a.cohort for a in attempts))

    result = reconcile(fresh_service, out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reconciled: zero mismatches" in result.stdout

    # The same verdict from the library, with the numbers behind it.
    verdict = reconcile_run(out / "client.jsonl", fresh_service.events_dir,
                            lambda: counters_from_metrics([fresh_service.base_url + "/metrics"]))
    assert verdict.ok and verdict.attempts == len(attempts)
    assert fresh_service.metric("obslab_events_total", event="chunk_failed") > 50
    assert fresh_service.metric("obslab_events_total", event="chunk_retry") > 50


@pytest.mark.slow
def test_dropped_events_are_caught_by_reconcile(fresh_service, tmp_path):
    """An instrumentation bug (the sink drops a quarter of the events) cannot hide from the reconciliation."""
    # 25 %: with >= 30 attempts, the chance that no terminal event is dropped is below 0.02 %.
    put_fault(fresh_service, "lossy-sink", {"kind": "drop_events", "target": "event_sink", "percentage": 25})
    out = tmp_path / "load"
    load(fresh_service, out, "--duration", "8s", "--users", "10", "--spawn-rate", "10",
         "--set", "think_time=100ms-500ms")
    assert len(read_attempts(out / "client.jsonl")) >= 30
    result = reconcile(fresh_service, out)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOT reconciled" in result.stdout
    lines = result.stdout.splitlines()
    missing = [line for line in lines if line.startswith("missing_events")]
    assert missing, result.stdout
    run_id = read_attempts(out / "client.jsonl")[0].run_id
    assert all(f" {run_id}." in line for line in missing), "each mismatch names its request_id"
    assert any(line.startswith("lost_events") and "dropped_fault" in line for line in lines)
    assert any(line.startswith("counter_drift") and "obslab_publish_outcomes_total" in line for line in lines)


@pytest.mark.slow
def test_phased_shape_distributed_over_two_processes_reconciles(fresh_service, tmp_path):
    """Locust master + 2 worker processes, a phased shape: users follow the phases, nothing is lost."""
    out = tmp_path / "load"
    load(fresh_service, out, "--shape", "phased", "--processes", "2",
         "--set", "phases=4s:2@10,5s:8@10", "--set", "think_time=100ms-300ms")
    import csv

    with (out / "locust_stats_history.csv").open() as f:
        user_counts = {int(r["User Count"]) for r in csv.DictReader(f) if r["Name"] == "Aggregated"}
    assert 2 in user_counts and 8 in user_counts, user_counts
    attempts = read_attempts(out / "client.jsonl")
    workers = {a.user.split(".")[0] for a in attempts}
    assert len(workers) == 2, f"both worker processes recorded attempts: {workers}"
    result = reconcile(fresh_service, out)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_same_seed_same_choices(service, tmp_path):
    """Two runs with one seed: each user's n-th publish flow has the same cohort, media and outcome."""
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        load(service, out, "--duration", "6s", "--users", "6", "--spawn-rate", "10", "--seed", "7",
             "--cancel-rate", "0.2", "--set", "think_time=50ms-200ms", "--set", "viewer_weight=0")
        runs.append({a.request_id.split(".", 1)[1]: a for a in read_attempts(out / "client.jsonl")
                     if a.outcome != "abandoned"})
    common = set(runs[0]) & set(runs[1])
    assert len(common) >= 12, common
    for key in common:
        a, b = runs[0][key], runs[1][key]
        assert (a.cohort, a.media_size_bytes, a.chunk_count, a.outcome) == \
            (b.cohort, b.media_size_bytes, b.chunk_count, b.outcome), key
    assert len({json.dumps(runs[0][k].cohort, sort_keys=True) for k in common}) > 3, "cohorts vary across flows"


def test_unreachable_host_is_one_line_and_non_zero(tmp_path):
    port = free_port()
    result = obslab("load", "--host", f"http://127.0.0.1:{port}", "--duration", "5s", "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert f"cannot reach the service at http://127.0.0.1:{port}" in result.stderr
    assert not (tmp_path / "client.jsonl").exists()


@pytest.mark.parametrize("args, message", [
    (["--users", "0"], "--users must be at least 1"),
    (["--shape", "square"], "--shape must be one of"),
    (["--retry-policy", "forever"], "--retry-policy must be one of"),
    (["--cancel-rate", "1.5"], "--cancel-rate must be between 0 and 1"),
    (["--duration", "soon"], "expected a duration"),
    (["--host", "localhost:8000"], "--host must be an http(s) URL"),
    (["--set", "bogus=1"], "unknown setting"),
    (["--set", "think_time=2s-1s"], "maximum is below the minimum"),
    (["--shape", "phased"], "OBSLAB_LOAD_PHASES"),
])
def test_bad_load_options_are_one_line(args, message, tmp_path):
    from typer.testing import CliRunner

    from toolkit.cli import app

    result = CliRunner().invoke(app, ["load", "--out", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0, result.output


def test_a_bad_option_from_the_real_console_script_is_one_line_on_stderr(tmp_path):
    result = obslab("load", "--out", str(tmp_path), "--retry-policy", "forever")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "--retry-policy must be one of" in result.stderr and "Traceback" not in result.stderr


def test_reconcile_user_errors_are_one_line(tmp_path):
    result = obslab("reconcile", "--client", str(tmp_path / "none.jsonl"), "--events", str(tmp_path))
    assert result.returncode == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "client.jsonl").write_text("{}\n")
    result = obslab("reconcile", "--client", str(tmp_path / "client.jsonl"), "--events", str(tmp_path))
    assert result.returncode == 2 and "client.jsonl:1" in result.stderr


@pytest.fixture
def prometheus(service, tmp_path):
    """A real Prometheus scraping the service every second; stopped (process group) afterwards."""
    import signal

    import requests

    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: publish-api\n    static_configs: [{{targets: ['{service.base_url.split('//')[1]}']}}]\n")
    process = subprocess.Popen(
        ["/usr/bin/prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


@pytest.mark.slow
def test_reconcile_reads_counters_from_a_prometheus_server(service, prometheus, tmp_path):
    out = tmp_path / "load"
    load(service, out, "--duration", "8s", "--users", "6", "--spawn-rate", "10", "--set", "think_time=100ms-300ms")
    # Prometheus trails the service by up to a scrape interval; --settle waits for it.
    result = obslab("reconcile", "--client", str(out / "client.jsonl"), "--events", str(service.events_dir),
                    "--prometheus", prometheus, "--settle", "20s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Prometheus {prometheus}" in result.stdout and "reconciled: zero mismatches" in result.stdout
