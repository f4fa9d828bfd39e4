"""The compose lab for real: a Docker engine, the project's images, Prometheus paging on an outage.

`make compose-test` runs this file (as root with apt it first installs docker.io, mmdebstrap and
docker-compose from Debian). The test starts dockerd when none runs (and stops it after), builds
the base images it cannot pull from Debian packages (compose/debian-images.sh; kept between runs
on a machine that keeps its Docker images), builds the project's images and brings up every
service of docker-compose.yml except Grafana and Jaeger, whose images cannot be had here. It then
checks what a user relies on: every container healthy, events written, Prometheus scraping both
targets with the lab rules loaded, the dashboard serving the shared data, load running by itself,
and an outage injected through the admin API firing the page alert, which resolves once the fault
is removed. Everything is torn down with `down -v`. docs/compose.md says what this proves and what not.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests

from toolkit.lab.processes import free_ports

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[1]
DEBIAN_IMAGES = ROOT / "compose" / "debian-images.sh"
# Grafana and Jaeger: no image can be pulled here and Debian packages neither.
SERVICES = ["api", "transcoder", "prometheus", "locust", "dashboard"]
LEFT_OUT = ["grafana", "jaeger"]
TOKEN = "compose-live-test-token"
PAGE = "PublishSuccessErrorBudgetBurnPage"
TICKET = "PublishSuccessErrorBudgetBurnTicket"
OUTAGE_S = 30.0


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (starts dockerd, builds base images with mmdebstrap)"
    for tool in ("docker", "dockerd", "mmdebstrap"):
        if not shutil.which(tool):
            return f"{tool} is not installed (`make compose-test` installs it with apt)"
    if not _compose_argv():
        return "neither `docker compose` nor docker-compose is installed"
    return None


def _compose_argv() -> list[str] | None:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return [shutil.which("docker-compose")] if shutil.which("docker-compose") else None


pytestmark.append(pytest.mark.skipif(_why_not() is not None, reason=_why_not() or ""))


def say(line: str) -> None:
    print(f"[compose-live] {line}", file=sys.stderr, flush=True)


def _wait(what: str, probe: Callable[[], object], timeout_s: float, every_s: float = 1.0,
          explain: Callable[[], str] = lambda: "") -> tuple[object, float]:
    """Poll probe() until it returns something truthy; (value, seconds waited)."""
    started = time.monotonic()
    while True:
        value = probe()
        if value:
            return value, time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"{what}: not within {timeout_s:g} s\n{explain()}")
        time.sleep(every_s)


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Iterator[None]:
    """A running Docker engine: the machine's, or a dockerd started here and stopped afterwards."""
    if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        yield
        return
    log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    say(f"starting dockerd (log {log})")
    with open(log, "wb") as out:
        proc = subprocess.Popen(["dockerd"], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        _wait("dockerd answering", lambda: proc.poll() is None and subprocess.run(
            ["docker", "info"], capture_output=True).returncode == 0 or proc.poll() is not None, 60,
              explain=lambda: log.read_text()[-2000:])
        assert proc.poll() is None, f"dockerd exited (code {proc.returncode}):\n{log.read_text()[-2000:]}"
        yield
    finally:
        say("stopping the dockerd this test started")
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def lab(engine) -> Iterator["ComposeLab"]:
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    # Prometheus's base image builds meanwhile the Python one and the project's images do.
    prometheus_build = subprocess.Popen(["bash", str(DEBIAN_IMAGES), "prometheus"], stdout=subprocess.PIPE, text=True)
    ports = dict(zip(["API", "PROMETHEUS", "LOCUST", "DASHBOARD", "GRAFANA", "JAEGER"], free_ports(6)))
    env = {**os.environ, "OBSLAB_ADMIN_TOKEN": TOKEN,
           **{f"OBSLAB_{name}_PORT": str(port) for name, port in ports.items()}}
    compose = ComposeLab(_compose_argv() + ["-p", f"obslab-live-{uuid.uuid4().hex[:8]}"], env, ports)
    try:
        python_build = subprocess.run(["bash", str(DEBIAN_IMAGES), "python"], stdout=subprocess.PIPE, text=True)
        assert python_build.returncode == 0, "compose/debian-images.sh python failed"
        env["OBSLAB_PYTHON_IMAGE"] = python_build.stdout.strip().splitlines()[-1]
        timings["python base image"] = time.monotonic() - t0
        t = time.monotonic()
        compose.run("build", *SERVICES, timeout_s=1200)
        timings["project images"] = time.monotonic() - t
        out, _ = prometheus_build.communicate(timeout=1200)
        assert prometheus_build.returncode == 0, "compose/debian-images.sh prometheus failed"
        env["OBSLAB_PROMETHEUS_IMAGE"] = out.strip().splitlines()[-1]
        timings["every image ready (Prometheus's base built alongside)"] = time.monotonic() - t0
        say(f"bringing up {', '.join(SERVICES)}; left out (no image here): {', '.join(LEFT_OUT)}")
        t = time.monotonic()
        compose.run("up", "-d", "--no-build", *SERVICES, timeout_s=300)
        compose.wait_healthy()
        timings["up to all healthy"] = time.monotonic() - t
        compose.timings = timings
        yield compose
    finally:
        if prometheus_build.poll() is None:
            prometheus_build.kill()
            prometheus_build.wait()
        compose.stats()
        compose.run("down", "-v", "--remove-orphans", "--timeout", "10", check=False, timeout_s=300)
        say("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
            + f"; total {time.monotonic() - t0:.0f} s")


class ComposeLab:
    def __init__(self, argv: list[str], env: dict[str, str], ports: dict[str, int]):
        self.argv, self.env, self.ports = argv, env, ports
        self.timings: dict[str, float] = {}

    def url(self, name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def run(self, *args: str, check: bool = True, timeout_s: float = 120) -> subprocess.CompletedProcess:
        r = subprocess.run([*self.argv, *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                           timeout=timeout_s)
        if check and r.returncode != 0:
            pytest.fail(f"{' '.join(self.argv[:2])} {' '.join(args)} failed ({r.returncode}):\n"
                        f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return r

    def container(self, service: str) -> str:
        return self.run("ps", "-q", service).stdout.strip()

    def health(self) -> dict[str, str]:
        out = {}
        for service in SERVICES:
            cid = self.container(service)
            r = subprocess.run(["docker", "inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}", cid],
                               capture_output=True, text=True) if cid else None
            out[service] = r.stdout.strip() if r is not None and r.returncode == 0 else "missing"
        return out

    def logs(self, *services: str) -> str:
        return self.run("logs", "--no-color", "--tail", "40", *services, check=False).stdout[-6000:]

    def wait_healthy(self, timeout_s: float = 240) -> None:
        _wait("every container healthy", lambda: all(s == "running healthy" for s in self.health().values()),
              timeout_s, every_s=2, explain=lambda: f"{self.health()}\n{self.logs()}")

    def exec(self, service: str, *argv: str) -> str:
        return self.run("exec", "-T", service, *argv).stdout

    def stats(self) -> None:
        r = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}"],
                           capture_output=True, text=True)
        say("memory: " + "; ".join(line for line in r.stdout.splitlines() if "obslab-live" in line))

    def prometheus(self, path: str, **params) -> dict:
        resp = requests.get(self.url("PROMETHEUS", path), params=params, timeout=5)
        resp.raise_for_status()
        return resp.json()["data"]

    def alert_states(self) -> dict[str, str]:
        return {a["labels"]["alertname"]: a["state"] for a in self.prometheus("/api/v1/alerts")["alerts"]}

    def admin(self, method: str, path: str, body: dict | None = None) -> requests.Response:
        resp = requests.request(method, self.url("API", path), json=body, timeout=10,
                                headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status_code < 300, f"{method} {path}: HTTP {resp.status_code} {resp.text}"
        return resp


def test_compose_lab_comes_up_and_pages_on_an_outage(lab: ComposeLab):
    # Load starts by itself: outcomes reach the events file on the shared volume.
    def outcomes() -> int:
        out = lab.exec("api", "python", "-c", "import json\nn = 0\nfor line in open('/data/events/events.jsonl'):\n"
                       "    n += json.loads(line)['event'] in ('publish_succeeded', 'publish_failed')\nprint(n)")
        return int(out.strip() or 0)

    n, waited = _wait("publish outcomes in /data/events/events.jsonl", outcomes, 90, every_s=2,
                      explain=lambda: lab.logs("locust", "api"))
    say(f"first {n} publish outcomes in the events after {waited:.0f} s")
    locust = requests.get(lab.url("LOCUST", "/stats/requests"), timeout=5).json()
    assert locust["state"] == "running" and locust["user_count"] > 0, locust

    # Prometheus scrapes both targets and runs the lab rules.
    def targets_up() -> dict[str, str] | None:
        active = lab.prometheus("/api/v1/targets")["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in active}
        return health if health == {"publish-api": "up", "transcoder": "up"} else None

    _wait("both scrape targets up", targets_up, 60, explain=lambda: str(lab.prometheus("/api/v1/targets")))
    rules = [r for g in lab.prometheus("/api/v1/rules")["groups"] for r in g["rules"]]
    alerts = {r["name"] for r in rules if r["type"] == "alerting"}
    assert {PAGE, TICKET} <= alerts, alerts
    assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]
    build = lab.prometheus("/api/v1/status/buildinfo")
    say(f"Prometheus {build['version']}: {len(rules)} rules loaded, {len(alerts)} alerts")
    recorded, _ = _wait("the success SLI recorded", lambda: lab.prometheus(
        "/api/v1/query", query='slo:sli_error:ratio_rate1m{slo="publish-success"}')["result"], 60)
    assert 0 <= float(recorded[0]["value"][1]) < 0.144, recorded  # healthy lab: no page-level burn
    # Load runs from the start, so no NoData alert pages the healthy lab either.
    assert not [name for name, state in lab.alert_states().items() if state == "firing"], lab.alert_states()

    # The dashboard serves the shared data, and its drills (the toolkit image) are there.
    info = requests.get(lab.url("DASHBOARD", "/api/info"), timeout=5).json()
    assert info["alerts_source"] == "Prometheus", info
    snapshot = requests.get(lab.url("DASHBOARD", "/api/snapshot"), timeout=30).json()
    assert snapshot["success"]["good"] > 0, snapshot["success"]
    drills = requests.get(lab.url("DASHBOARD", "/api/drills"), timeout=10).json()
    assert drills["available"] and drills["drills"], drills
    listed = lab.exec("dashboard", "obslab", "drill", "list")
    assert drills["drills"][0]["name"] in listed

    # An outage through the control plane pages; removing it resolves the page.
    lab.admin("PUT", "/admin/faults/outage", {"kind": "errors", "target": "transcoder"})
    fault_at = time.monotonic()
    _, fired_s = _wait(f"{PAGE} firing", lambda: lab.alert_states().get(PAGE) == "firing", 120,
                       explain=lambda: str(lab.alert_states()))
    say(f"{PAGE} firing {fired_s:.1f} s after the outage fault; alerts {lab.alert_states()}")
    # Hold the outage OUTAGE_S in all, so both window pairs of the page burn, as in a real incident.
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - fault_at)))
    lab.admin("DELETE", "/admin/faults/outage")
    _, resolved_s = _wait(f"{PAGE} resolved", lambda: PAGE not in lab.alert_states(), 180,
                          explain=lambda: str(lab.alert_states()))
    say(f"{PAGE} resolved {resolved_s:.1f} s after the fault was removed "
        f"(after a {OUTAGE_S:g} s outage); "
        f"alerts now {lab.alert_states()}")
    assert lab.health() == {s: "running healthy" for s in SERVICES}
