"""The lab's parts that need no running lab: config, port and lock checks, Locust and Prometheus set-up."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolkit.lab.load import locust_argv
from toolkit.lab.runtime import Lab, LabAlreadyRunning, LabConfig, LabError, port_in_use
from toolkit.slo.prometheus_config import write_prometheus_config
from toolkit.lab.procgroup import descendants, start_group_process

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "slo.yaml"


def test_port_in_use_sees_a_listening_socket():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert port_in_use(port)
    assert not port_in_use(port)


def _leave_time_wait_on(port_holder: socket.socket) -> int:
    """Accept one connection on a listening socket and close it from the server side first: the
    server's end of it stays in TIME_WAIT on the listening port (as after a lab's Ctrl-C)."""
    port = port_holder.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = port_holder.accept()
    conn.close()  # active close: TIME_WAIT is on this side, the listening port
    time.sleep(0.05)
    client.close()
    port_holder.close()
    return port


def test_a_port_left_in_time_wait_is_free_for_a_new_lab():
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as every server of the lab binds
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = _leave_time_wait_on(holder)
    with socket.socket() as plain:  # the situation is real: a bind without SO_REUSEADDR fails
        with pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))
    assert not port_in_use(port)
    with socket.socket() as server:  # and a server (SO_REUSEADDR) can indeed listen there
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        assert port_in_use(port)


def test_a_busy_port_stops_the_lab_before_it_starts_anything(tmp_path: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        for attempt in range(2):  # the failed start released its lock: the second is told about the port again
            lab = Lab(LabConfig(data_dir=tmp_path / "d", spec_path=SPEC, port_api=busy, prometheus=False))
            try:
                with pytest.raises(LabAlreadyRunning, match=f"port {busy} \\(api\\).*--port"):
                    lab.start()
                assert lab.pids() == []
            finally:
                lab.stop()


def test_the_data_dir_lock_refuses_a_second_lab(tmp_path: Path):
    first = Lab(LabConfig(data_dir=tmp_path, spec_path=SPEC))
    first._acquire_lock()
    try:
        second = Lab(LabConfig(data_dir=tmp_path, spec_path=SPEC))
        with pytest.raises(LabAlreadyRunning, match="already running"):
            second._acquire_lock()
    finally:
        first.stop()
    third = Lab(LabConfig(data_dir=tmp_path, spec_path=SPEC))
    third._acquire_lock()  # released by stop()
    third.stop()


def test_missing_spec_is_one_clear_error(tmp_path: Path):
    with pytest.raises(LabError, match="SLO spec not found"):
        Lab(LabConfig(data_dir=tmp_path, spec_path=tmp_path / "nope.yaml")).start()


def test_prometheus_is_used_only_when_wanted_and_installed():
    assert LabConfig(prometheus=False).use_prometheus is False
    assert LabConfig(prometheus=None, prometheus_binary="no-such-prometheus-binary").use_prometheus is False
    assert "prometheus" not in LabConfig(prometheus=False).ports()


def test_locust_runs_the_installed_locustfile_without_a_run_time():
    argv = locust_argv("http://127.0.0.1:1234", users=5)
    assert argv[argv.index("-f") + 1].endswith("loadtests/locustfile.py")
    assert Path(argv[argv.index("-f") + 1]).is_file()
    assert "--headless" in argv and "--run-time" not in argv  # the lab's lifetime bounds the load
    ui = locust_argv("http://127.0.0.1:1234", users=5, web_ui=("127.0.0.1", 8089))
    assert "--headless" not in ui and "--autostart" in ui and ui[ui.index("--web-host") + 1] == "127.0.0.1"


@pytest.mark.skipif(not Path("/usr/bin/promtool").exists(), reason="promtool not installed")
def test_prometheus_config_and_generated_rules_pass_promtool(tmp_path: Path):
    config = write_prometheus_config(tmp_path, SPEC, "lab", "127.0.0.1:8000")
    out = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "rule files found" in out.stdout
    text = config.read_text()
    assert "scrape_interval: 1s" in text and "127.0.0.1:8000" in text


def test_group_process_stops_with_its_children(tmp_path: Path):
    # A shell that starts a grandchild, like gunicorn starts workers.
    proc = start_group_process("sleeper", ["sh", "-c", "sleep 60 & sleep 60"], log_path=tmp_path / "log")
    deadline = time.monotonic() + 5
    while len(descendants(proc.pid)) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    tree = [proc.pid] + descendants(proc.pid)
    assert len(tree) >= 2
    proc.stop(timeout_s=5)
    import psutil

    alive = [p for p in tree if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []


def test_child_dies_with_its_parent(tmp_path: Path):
    """PR_SET_PDEATHSIG: a lab killed with SIGKILL still takes its direct children along."""
    import psutil

    script = (
        "import sys, time\n"
        "from toolkit.lab.procgroup import start_group_process\n"
        "p = start_group_process('sleeper', ['sleep', '60'])\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert psutil.pid_exists(child)
    parent.kill()
    parent.wait(5)
    deadline = time.monotonic() + 5
    while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "child outlived its killed parent"
        time.sleep(0.05)
