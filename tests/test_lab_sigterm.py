"""SIGTERM (a supervisor, `kill`) stops the lab like Ctrl-C: no process left, data kept, exit 0."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from toolkit.lab_bench import free_ports, lab_command

pytestmark = pytest.mark.slow

SPEC = Path(__file__).resolve().parents[1] / "slo.yaml"


def test_sigterm_stops_every_process_of_the_lab(tmp_path: Path):
    ports = dict(zip(("api", "transcoder", "web", "prometheus", "locust"), free_ports(5)))
    data_dir = tmp_path / "lab"
    log = tmp_path / "lab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(lab_command(data_dir, ports, users=2, prometheus=False, spec=SPEC), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (data_dir / "lab.json").exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the lab did not start within 120 s:\n" + log.read_text()
            time.sleep(0.2)
        pids = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert len(pids) >= 4  # API master + workers, transcoder master + worker, Locust
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0, log.read_text()
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        assert alive == []
        assert (data_dir / "data" / "events").is_dir() and not (data_dir / "lab.json").exists()
    finally:
        if proc.poll() is None:  # the test failed midway: never leave the lab behind
            leftovers = psutil.Process(proc.pid).children(recursive=True)
            proc.kill()
            proc.wait(10)
            for child in leftovers:
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
