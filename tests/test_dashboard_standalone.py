"""`obslab dashboard`: the lab's web app served alone against a service that runs elsewhere (compose)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.drills.lab import find_lab
from toolkit.lab.runtime import LabAlreadyRunning
from toolkit.lab.processes import free_ports
from toolkit.lab.web.standalone import StandaloneConfig, StandaloneDashboard, parse_link

ROOT = Path(__file__).resolve().parents[1]


def test_serves_the_page_and_tells_drills_where_the_lab_is(tmp_path):
    port, other = free_ports(2)
    config = StandaloneConfig(data_dir=tmp_path, spec_path=ROOT / "slo.yaml", api_url="http://api:8000/",
                              prometheus_url="http://prometheus:9090", port=port,
                              links=(("Grafana", "http://localhost:3000"),))
    served = StandaloneDashboard(config)
    url = served.start()
    try:
        info = requests.get(url + "/api/info", timeout=5).json()
        assert info["links"] == [{"name": "Grafana", "url": "http://localhost:3000"}]
        assert info["alerts_source"] == "Prometheus"
        lab_file = json.loads((tmp_path / "lab.json").read_text())
        assert lab_file["url"] == "http://api:8000" and lab_file["prometheus_url"] == "http://prometheus:9090"
        # `obslab drill …` run beside it finds the API without --url.
        assert find_lab(tmp_path, token="t").url == "http://api:8000"
        # A second dashboard (or lab) on the same data directory says so instead of clobbering lab.json.
        with pytest.raises(LabAlreadyRunning, match="already running"):
            StandaloneDashboard(StandaloneConfig(data_dir=tmp_path, spec_path=ROOT / "slo.yaml",
                                                 api_url="http://x:1", port=other)).start()
        assert json.loads((tmp_path / "lab.json").read_text())["url"] == "http://api:8000"
    finally:
        served.stop()
    assert not (tmp_path / "lab.json").exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/api/info", timeout=2)


def test_bad_input_is_one_clear_line(tmp_path):
    with pytest.raises(ValueError, match="expected NAME=http"):
        parse_link("Grafana:3000")
    assert parse_link("Prometheus alerts=http://localhost:9090/alerts") == (
        "Prometheus alerts", "http://localhost:9090/alerts")
    result = CliRunner().invoke(app, ["dashboard", "--data-dir", str(tmp_path), "--spec", str(tmp_path / "no.yaml")])
    assert result.exit_code == 2 and "SLO spec not found" in result.output
    result = CliRunner().invoke(app, ["dashboard", "--data-dir", str(tmp_path), "--link", "nope"])
    assert result.exit_code == 2 and "--link 'nope'" in result.output
