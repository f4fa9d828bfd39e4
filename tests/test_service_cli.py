"""``obslab serve`` as a user runs it: URLs printed, token generated, both processes gone after SIGTERM/Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from toolkit.lab.processes import free_port

pytestmark = pytest.mark.slow
OBSLAB = str(Path(sys.executable).parent / "obslab")


def _children(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_serve_prints_urls_and_stops_everything(tmp_path: Path, stop_signal):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "OBSLAB_ADMIN_TOKEN"}
    proc = subprocess.Popen([OBSLAB, "serve", "--port", str(port),
                             "--transcoder-port", str(free_port()), "--workers", "2", "--data-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    descendants: list[int] = []
    try:
        lines = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "press Ctrl-C" in line:
                break
        out = "".join(lines)
        assert f"http://127.0.0.1:{port}" in out, out + proc.stderr.read() if proc.poll() is not None else out
        token_file = tmp_path / "admin-token"
        assert str(token_file) in out and token_file.read_text().strip()
        assert oct(token_file.stat().st_mode)[-3:] == "600"
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        r = requests.get(f"http://127.0.0.1:{port}/admin/flags", timeout=5,
                         headers={"Authorization": f"Bearer {token_file.read_text().strip()}"})
        assert r.status_code == 200
        descendants = _children(proc.pid)
        assert len(descendants) >= 5  # 2 masters + 2 API workers + 1 transcoder worker
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=30) == 0
        assert "stopped" in proc.stderr.read()
        gone_by = time.monotonic() + 10
        while time.monotonic() < gone_by and any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                                                 for p in descendants):
            time.sleep(0.1)
        assert not [p for p in descendants if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in descendants:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_serve_refuses_a_busy_port_in_one_line(tmp_path: Path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([OBSLAB, "serve", "--port", str(port), "--transcoder-port",
                            str(free_port()), "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert r.stderr.strip().startswith("error:") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_picked_ports_taken_meanwhile_are_picked_again_and_a_given_one_names_its_holder(tmp_path: Path):
    import socket

    from toolkit.lab.processes import ServiceProcesses, ServiceStartError

    svc = ServiceProcesses(tmp_path / "picked", workers=1)
    taken = svc.port
    with socket.socket() as squatter:
        # Another process binds a port we picked before our gunicorn does.
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        with svc:
            assert svc.port != taken
            assert requests.get(f"{svc.base_url}/healthz", timeout=5).status_code == 200
        given = ServiceProcesses(tmp_path / "given", port=taken, workers=1)
        with pytest.raises(ServiceStartError, match=f"127.0.0.1:{taken}: .*held by pid {os.getpid()}"):
            given.start()
