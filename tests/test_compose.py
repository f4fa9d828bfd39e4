"""docker-compose.yml and the Dockerfile: valid, small, healthy, and running the tests' command lines.

Docker cannot run here; `docker-compose config` validates the file, and the command
lines are compared with toolkit.processes, which the tests and `obslab serve` run.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from toolkit import slo_names as names
from toolkit.processes import MULTIPROC_SUBDIR, api_command, transcoder_command
from toolkit.slo_spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKER_COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"
MEMORY_BUDGET = 2 * 1024**3
UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


@pytest.fixture(scope="module")
def resolved() -> dict:
    """The file as Docker Compose resolves it (anchors, interpolation, defaults)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBSLAB_")}
    r = subprocess.run([DOCKER_COMPOSE, "-f", str(COMPOSE), "config"], capture_output=True, text=True, cwd=ROOT,
                       env=env)
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)


def _bytes(limit) -> int:
    if isinstance(limit, int):
        return limit
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmg])?b?", str(limit).strip().lower())
    assert m, f"unreadable memory limit {limit!r}"
    return int(float(m.group(1)) * UNITS[m.group(2) or "b"])


def _ports(svc: dict) -> list[tuple[str, int]]:
    """(host ip, published port) of each port mapping, long or short syntax."""
    out = []
    for port in svc.get("ports", []):
        if isinstance(port, dict):
            out.append((port.get("host_ip", ""), int(port["published"])))
        else:
            parts = str(port).split("/")[0].split(":")
            out.append((parts[0] if len(parts) == 3 else "", int(parts[-2])))
    return out


def _volumes(svc: dict) -> list[tuple[str, str]]:
    """(source, target) of each volume, long or short syntax."""
    out = []
    for v in svc.get("volumes", []):
        if isinstance(v, dict):
            out.append((v["source"], v["target"]))
        else:
            source, target = str(v).split(":")[:2]
            out.append((source, target))
    return out


def _argv(command_line) -> list[str]:
    # In the image, the interpreter is `python` on PATH; everything after it must be identical.
    argv = list(command_line.argv)
    assert Path(argv[0]).name.startswith("python")
    return ["python", *argv[1:]]


def test_compose_file_is_valid_and_small(resolved):
    services = resolved["services"]
    assert set(services) == {"api", "transcoder", "prometheus", "grafana", "jaeger", "locust-master",
                             "locust-worker"}
    assert len(services) <= 7
    total = 0
    for name, svc in services.items():
        assert "mem_limit" in svc, f"{name} has no memory limit"
        assert "healthcheck" in svc and svc["healthcheck"]["test"], f"{name} has no health check"
        total += _bytes(svc["mem_limit"])
    assert total <= MEMORY_BUDGET, f"memory limits add up to {total / 1024**2:.0f} MiB"
    # Every published port is on loopback: the control plane stays off the network.
    for name, svc in services.items():
        for host_ip, port in _ports(svc):
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"
    published = {svc_name: {port for _, port in _ports(svc)} for svc_name, svc in services.items()}
    assert published["grafana"] == {3000} and published["prometheus"] == {9090}
    assert published["jaeger"] == {16686} and published["locust-master"] == {8089}


def test_service_command_lines_are_the_tests_ones(resolved):
    services = resolved["services"]
    api = api_command(host="0.0.0.0", port=8000, data_dir="/data", transcoder_url="http://transcoder:8001",
                      admin_token=None)
    assert services["api"]["command"] == _argv(api)
    for key, value in api.env.items():
        assert services["api"]["environment"][key] == value
    assert services["api"]["environment"]["PROMETHEUS_MULTIPROC_DIR"] == f"/data/{MULTIPROC_SUBDIR}"
    assert any(t.startswith(f"/data/{MULTIPROC_SUBDIR}") for t in services["api"]["tmpfs"])

    transcoder = transcoder_command(host="0.0.0.0", port=8001, data_dir="/data")
    assert services["transcoder"]["command"] == _argv(transcoder)
    for key, value in transcoder.env.items():
        assert services["transcoder"]["environment"][key] == value
    for key in transcoder.unset_env:
        assert key not in services["transcoder"]["environment"]
    # Both read the same state (faults on the transcoder live in the shared SQLite).
    assert _volumes(services["api"]) == _volumes(services["transcoder"]) == [("obslab-data", "/data")]


def test_dockerfile_default_command_is_the_api(resolved):
    text = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert cmd, "Dockerfile has no exec-form CMD"
    api = api_command(host="0.0.0.0", port=8000, data_dir="/data", transcoder_url="http://transcoder:8001",
                      admin_token=None)
    assert json.loads(cmd.group(1)) == _argv(api)
    assert re.search(r"^FROM python:3\.11", text, re.M)
    assert re.search(rf"mkdir -p /data/{MULTIPROC_SUBDIR}", text)
    for service in ("api", "transcoder", "locust-master", "locust-worker"):
        assert resolved["services"][service]["image"] == "obslab:local"


def test_locust_runs_the_packaged_locustfile(resolved):
    master = resolved["services"]["locust-master"]["command"]
    worker = resolved["services"]["locust-worker"]["command"]
    assert master[:3] == ["python", "-m", "locust"] and "--master" in master
    assert "--worker" in worker and worker[worker.index("--master-host") + 1] == "locust-master"
    locustfile = master[master.index("-f") + 1]
    assert locustfile == "/app/loadtests/locustfile.py" and (ROOT / "loadtests" / "locustfile.py").is_file()
    assert master[master.index("--host") + 1] == "http://api:8000"


def test_prometheus_runs_the_generated_lab_rules(resolved):
    prom = resolved["services"]["prometheus"]
    mounts = dict((target, source) for source, target in _volumes(prom))
    assert Path(mounts["/etc/prometheus"]) == ROOT / "dashboards" / "prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    assert re.fullmatch(r"prom/prometheus:v2\.\d+\.\d+", prom["image"])  # 3.x rewrites le="1.0" to le="1"
    config = yaml.safe_load((ROOT / "dashboards" / "prometheus" / "prometheus.yml").read_text())
    spec = load_spec(ROOT / "slo.yaml")
    assert config["global"]["scrape_interval"] == "1s" == config["global"]["evaluation_interval"]
    assert spec.profile("lab").scrape_interval_s == 1
    matched = [Path(p).name for pattern in config["rule_files"]
               for p in glob.glob(str(ROOT / "dashboards" / "prometheus" / pattern))]
    assert matched == [names.RULES_FILE]
    assert Path(glob.glob(str(ROOT / "dashboards" / "prometheus" / config["rule_files"][0]))[0]).parent.name == "lab"
    targets = {c["job_name"]: c["static_configs"][0]["targets"] for c in config["scrape_configs"]}
    assert targets == {"publish-api": ["api:8000"], "transcoder": ["transcoder:8001"]}


def test_grafana_is_provisioned_anonymous_viewer(resolved):
    grafana = resolved["services"]["grafana"]
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    mounts = {target: Path(source) for source, target in _volumes(grafana)}
    assert mounts["/etc/grafana/provisioning"] == ROOT / "dashboards" / "grafana" / "provisioning"
    dash_dir = mounts["/var/lib/grafana/dashboards/obslab"]
    home = Path(env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert (dash_dir / home.relative_to("/var/lib/grafana/dashboards/obslab")).is_file()


def test_jaeger_accepts_otlp_from_the_services(resolved):
    services = resolved["services"]
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    for name in ("api", "transcoder"):
        assert services[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"


def test_compose_config_rejects_a_broken_file(tmp_path):
    """The validation can fail: a service with an unknown key is refused."""
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["api"]["memory_limit"] = "1g"
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    r = subprocess.run([DOCKER_COMPOSE, "-f", str(path), "config", "-q"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode != 0 and "memory_limit" in r.stderr
