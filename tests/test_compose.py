"""docker-compose.yml and the Dockerfile: valid, small, healthy, and running the tests' command lines.

`docker-compose config` validates the file without an engine, and the command lines are compared
with toolkit.lab.processes and toolkit.lab.runtime, which the tests, `obslab serve` and `obslab lab` run.
tests/test_compose_live.py brings the lab up on a real Docker engine.
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

from toolkit.slo import names
from toolkit.lab.runtime import locust_argv
from toolkit.lab.processes import MULTIPROC_SUBDIR, api_command, transcoder_command
from toolkit.slo.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKER_COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"
MEMORY_BUDGET = 2 * 1024**3
UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


@pytest.fixture(scope="module")
def resolved() -> dict:
    """The file as Docker Compose resolves it (anchors, interpolation, .env)."""
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
    argv = list(getattr(command_line, "argv", command_line))
    assert Path(argv[0]).name.startswith("python")
    return ["python", *argv[1:]]


def test_compose_file_is_valid_and_small(resolved):
    # What `docker compose up` starts: every service outside an opt-in profile.
    services = {name: svc for name, svc in resolved["services"].items() if not svc.get("profiles")}
    optional = {name: svc for name, svc in resolved["services"].items() if svc.get("profiles")}
    assert set(optional) == {"otel-collector"} and optional["otel-collector"]["profiles"] == ["collector"]
    assert "mem_limit" in optional["otel-collector"] and not _ports(optional["otel-collector"])
    assert set(services) == {"api", "transcoder", "prometheus", "grafana", "jaeger", "locust", "dashboard"}
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
    assert published["jaeger"] == {16686} and published["locust"] == {8089} and published["dashboard"] == {8050}
    assert published["api"] == {8000}


def test_service_command_lines_are_the_tests_ones(resolved):
    services = resolved["services"]
    api = api_command(host="0.0.0.0", port=8000, data_dir="/data", transcoder_url="http://transcoder:8001",
                      admin_token=None)
    assert services["api"]["command"] == _argv(api)
    for key, value in api.env.items():
        assert services["api"]["environment"][key] == value
    assert services["api"]["environment"]["PROMETHEUS_MULTIPROC_DIR"] == f"/data/{MULTIPROC_SUBDIR}"
    # The service runs as uid 10001: a tmpfs left root's 0755 made the API restart forever.
    assert services["api"]["tmpfs"] == [f"/data/{MULTIPROC_SUBDIR}:uid=10001,mode=1777"]

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
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.M)
    assert re.search(rf"mkdir -p /data/{MULTIPROC_SUBDIR}", text)
    for service in ("api", "transcoder", "locust"):
        assert resolved["services"][service]["image"] == "obslab-service:local"
        assert resolved["services"][service]["build"]["target"] == "service"
    assert resolved["services"]["dashboard"]["image"] == "obslab-toolkit:local"
    assert resolved["services"]["dashboard"]["build"]["target"] == "toolkit"


def _stages(text: str) -> dict[str, list[str]]:
    """Dockerfile instructions (continuation lines joined) by stage name."""
    stages: dict[str, list[str]] = {}
    current = None
    for line in re.sub(r"\\\n\s*", " ", text).splitlines():
        if m := re.match(r"FROM \S+ AS (\S+)", line):
            current = stages.setdefault(m.group(1), [line])
        elif current is not None and line.strip() and not line.startswith("#"):
            current.append(line)
    return stages


def test_dependencies_install_before_the_source_is_copied():
    """An edit to the source must not reinstall every dependency: they come from pyproject.toml alone."""
    import tomllib

    stages = _stages((ROOT / "Dockerfile").read_text())
    base = stages["base"]
    copies = [line for line in base if line.startswith("COPY")]
    assert copies == ["COPY pyproject.toml ./"], copies
    assert any("pip install -r requirements.txt" in line for line in base)
    for final in ("service", "toolkit"):
        installs = [line for line in stages[final] if "pip install" in line]
        assert installs and all("--no-deps" in line for line in installs), installs
    toolkit_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["toolkit"]
    assert {"duckdb>=1.0", "scipy>=1.11", "matplotlib>=3.8"} <= set(toolkit_extra)
    assert any('["toolkit"]' in line for line in stages["toolkit-deps"])
    assert not any("toolkit" in line for line in stages["service"] if "pip install" in line)


def test_locust_runs_the_labs_load_from_the_start(resolved):
    """One Locust process (master and worker merged), steady load at a few users, started by itself."""
    locust = resolved["services"]["locust"]
    users = int(locust["command"][locust["command"].index("--users") + 1])
    expected = locust_argv(host="http://api:8000", users=users, web_ui=("0.0.0.0", 8089))
    expected[expected.index("-f") + 1] = "/app/loadtests/locustfile.py"
    assert locust["command"] == _argv(expected)
    assert 1 <= users <= 10 and "--autostart" in locust["command"]
    assert (ROOT / "loadtests" / "locustfile.py").is_file()
    assert locust["environment"]["OBSLAB_LOAD_SHAPE"] == "none"
    # Healthy while load runs: the check asks Locust's state, not whether a process exists.
    assert "/stats/requests" in " ".join(locust["healthcheck"]["test"]) and "running" in " ".join(
        locust["healthcheck"]["test"])


def test_dashboard_serves_the_shared_data_with_drills(resolved):
    dash = resolved["services"]["dashboard"]
    cmd = dash["command"]
    assert cmd[:2] == ["obslab", "dashboard"]
    opt = {cmd[i]: cmd[i + 1] for i in range(2, len(cmd) - 1) if cmd[i].startswith("--") and cmd[i] != "--link"}
    assert opt["--data-dir"] == "/data" and opt["--api-url"] == "http://api:8000"
    assert opt["--prometheus-url"] == "http://prometheus:9090" and opt["--host"] == "0.0.0.0"
    assert _volumes(dash) == [("obslab-data", "/data")]
    assert dash["environment"]["OBSLAB_ADMIN_TOKEN"] == resolved["services"]["api"]["environment"]["OBSLAB_ADMIN_TOKEN"]
    links = dict(cmd[i + 1].split("=", 1) for i in range(len(cmd)) if cmd[i] == "--link")
    assert links["Grafana"] == "http://localhost:3000" and links["Jaeger"] == "http://localhost:16686"


def test_env_file_overrides_ports_and_pins_versions(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBSLAB_")}
    dotenv = dict(line.split("=", 1) for line in (ROOT / ".env").read_text().splitlines()
                  if line and not line.startswith("#"))
    for key in ("OBSLAB_PROMETHEUS_IMAGE", "OBSLAB_GRAFANA_IMAGE", "OBSLAB_JAEGER_IMAGE", "OBSLAB_PYTHON_IMAGE"):
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+(\.\d+)?(-\w+)?", dotenv[key]), f"{key}={dotenv[key]} is not pinned"
    assert re.fullmatch(r"prom/prometheus:v3\.\d+\.\d+", dotenv["OBSLAB_PROMETHEUS_IMAGE"])
    env.update(OBSLAB_DASHBOARD_PORT="18050", OBSLAB_PROMETHEUS_IMAGE="obslab-debian/prometheus:2-bookworm")
    r = subprocess.run([DOCKER_COMPOSE, "-f", str(COMPOSE), "config"], capture_output=True, text=True, cwd=ROOT,
                       env=env)
    assert r.returncode == 0, r.stderr
    services = yaml.safe_load(r.stdout)["services"]
    assert _ports(services["dashboard"]) == [("127.0.0.1", 18050)]
    assert services["prometheus"]["image"] == "obslab-debian/prometheus:2-bookworm"


def test_prometheus_runs_the_generated_lab_rules(resolved):
    prom = resolved["services"]["prometheus"]
    mounts = dict((target, source) for source, target in _volumes(prom))
    assert Path(mounts["/etc/prometheus"]) == ROOT / "dashboards" / "prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]
    assert re.fullmatch(r"prom/prometheus:v3\.\d+\.\d+", prom["image"])  # rules match le="1" and le="1.0"
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
    assert env["GF_USERS_VIEWERS_CAN_EDIT"] == "true"  # Explore for the anonymous viewer
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
