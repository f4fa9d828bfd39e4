"""obslab load's library side without running Locust: command line, environment, stats, capacity verdict."""

from pathlib import Path

import pytest

from loadtests import LOCUSTFILE
from loadtests import settings as load_settings
from toolkit.bench.capacity import CapacityReport, CapacityStep, render_markdown, sustainable
from toolkit.lab.load import LoadError, LoadOptions, locust_command, locust_environment, read_request_stats, run_duration_s


def test_locust_runs_headless_bounded_with_csv_and_a_stop_timeout(tmp_path):
    command = locust_command(LoadOptions(host="http://127.0.0.1:8000/", users=7, duration_s=90, processes=2), tmp_path)
    assert command[command.index("-f") + 1] == str(LOCUSTFILE)
    for flag, value in (("--users", "7"), ("--run-time", "90s"), ("--host", "http://127.0.0.1:8000"),
                        ("--csv", str(tmp_path / "locust")), ("--processes", "2"), ("--stop-timeout", "30")):
        assert command[command.index(flag) + 1] == value
    assert "--headless" in command


def test_the_environment_carries_every_setting_over_exported_ones(tmp_path):
    options = LoadOptions(retry_policy="none", cancel_rate=0.1, seed=5, shape="ramp",
                          settings={load_settings.THINK_TIME: "0"})
    env = locust_environment(options, "abc123", tmp_path / "rec", tmp_path / "p.json",
                             base={"PATH": "/bin", load_settings.MIX: '{"region": {"eu-west": 1}}',
                                   load_settings.RUN_ID: "old", load_settings.SEED: "9"})
    assert env[load_settings.RETRY_POLICY] == "none" and env[load_settings.SEED] == "5"
    assert env[load_settings.RUN_ID] == "abc123" and env[load_settings.SHAPE] == "ramp"
    assert env[load_settings.THINK_TIME] == "0" and env[load_settings.MIX] == '{"region": {"eu-west": 1}}'
    assert env["PATH"] == "/bin" and str(Path(LOCUSTFILE).parent.parent) in env["PYTHONPATH"]
    parsed = load_settings.from_env(env)
    assert parsed.cancel_rate == 0.1 and parsed.think_time_s == (0.0, 0.0)


def test_a_phased_run_lasts_its_phases():
    options = LoadOptions(shape="phased", duration_s=5, settings={load_settings.PHASES: "30s:2,1m:4"})
    assert run_duration_s(options) == 90
    with pytest.raises(LoadError, match="OBSLAB_LOAD_PHASES"):
        run_duration_s(LoadOptions(shape="phased"))


def test_locust_stats_csv_is_read_by_name(tmp_path):
    path = tmp_path / "locust_stats.csv"
    header = ("Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
              "Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,"
              "99.99%,100%")
    path.write_text(header + "\nPUT,PUT /v1/uploads/{id}/chunks/{n},100,10,4,5,1,90,40,10.5,1.0,4,5,6,7,8,20,30,"
                    "40,80,90,90\n,Aggregated,120,10,4,6,1,300,40,12.0,1.0,4,5,6,7,8,25,60,70,280,300,300\n")
    rows = {r.name: r for r in read_request_stats(path)}
    assert rows["Aggregated"].requests == 120 and rows["Aggregated"].p99_ms == 70
    assert rows["PUT /v1/uploads/{id}/chunks/{n}"].failures == 10


def step(users, published, requests, failures, p99):
    return CapacityStep(users=users, duration_s=20, published=published, attempts=published, requests=requests,
                        failures=failures, request_p50_ms=5, request_p99_ms=p99, flow_p50_ms=100, flow_p99_ms=900,
                        locust_cpu_s=4, service_cpu_s=16, wall_s=25, load_average=1.0)


def test_sustainable_is_the_busiest_step_within_the_limits():
    steps = (step(10, 400, 3000, 0, 200), step(20, 700, 5000, 10, 600), step(40, 900, 6000, 200, 900),
             step(80, 950, 6500, 0, 2500))
    best = sustainable(steps)
    assert best.users == 20 and best.flows_per_s == 35.0 and best.requests_per_s == 250
    markdown = render_markdown(CapacityReport(steps, 2, 4, 1, 2), "obslab bench capacity", "today")
    assert markdown.startswith("## Load capacity\n") and "**35.0 publish flows/s, 250 requests/s**" in markdown
    assert "Locust 0.16 cores, service 0.64 cores (20% of the lab's CPU" in markdown
    assert sustainable((step(10, 1, 100, 50, 100),)) is None
