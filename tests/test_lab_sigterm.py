"""SIGTERM (a supervisor, `kill`) and SIGHUP (the terminal closed) stop the lab like Ctrl-C: no process
left, data kept, exit 0. Even SIGKILL, which the lab cannot catch, leaves no process behind."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from toolkit.bench.lab import free_ports, lab_command

pytestmark = pytest.mark.slow

SPEC = Path(__file__).resolve().parents[1] / "slo.yaml"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
def test_a_signal_stops_every_process_of_the_lab(tmp_path: Path, signum):
    ports = dict(zip(("api", "transcoder", "web", "prometheus", "locust"), free_ports(5)))
    data_dir = tmp_path / "lab"
    log = tmp_path / "lab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(lab_command(data_dir, ports, users=2, prometheus=False, spec=SPEC), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not (data_dir / "lab.json").exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the lab did not start within 120 s:\n" + log.read_text()
            time.sleep(0.2)
        pids += [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert len(pids) >= 4  # API master + workers, transcoder master + worker, Locust
        proc.send_signal(signum)
        if signum == signal.SIGKILL:
            assert proc.wait(10) == -signal.SIGKILL
            # No cleanup ran: the kernel's parent-death signal stops the children (they shut down on SIGTERM).
            deadline = time.monotonic() + 60
            while alive_of(pids) and time.monotonic() < deadline:
                time.sleep(0.5)
        else:
            assert proc.wait(90) == 0, log.read_text()
            assert not (data_dir / "lab.json").exists()
        assert alive_of(pids) == []
        assert (data_dir / "data" / "events").is_dir()
    finally:  # the test failed midway: never leave the lab or its children behind
        if proc.poll() is None:
            pids += [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
            proc.kill()
            proc.wait(10)
        for pid in alive_of(pids):
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass


def alive_of(pids):
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive
