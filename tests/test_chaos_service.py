"""Chaos: SIGKILL of real service processes at the worst moment, and what the service makes of it.

- the transcoder's gunicorn master under ``obslab serve``: serve restarts it, says so, and the
  next publish succeeds;
- the API worker holding a sync publish (made slow by a transcoder latency fault): the attempt
  still ends — one ``publish_failed`` (``internal``), status ``failed``, complete answers it —
  instead of ``transcoding`` forever.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from conftest import DEFAULT_COHORT
from toolkit.events import validate_files
from toolkit.lab.processes import free_ports

pytestmark = [pytest.mark.slow, pytest.mark.chaos]
OBSLAB = str(Path(sys.executable).parent / "obslab")


def _wait(predicate, timeout_s: float, what: str, poll_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def _publish(base_url: str) -> requests.Response:
    body = {"media_size_bytes": 2048, "chunk_count": 1, "user_id": "chaos-user", **DEFAULT_COHORT}
    r = requests.post(f"{base_url}/v1/uploads", json=body, timeout=30)
    assert r.status_code == 201, r.text
    upload_id = r.json()["upload_id"]
    assert requests.put(f"{base_url}/v1/uploads/{upload_id}/chunks/0", data=b"x" * 2048, timeout=30).status_code == 200
    return requests.post(f"{base_url}/v1/uploads/{upload_id}/complete", timeout=60)


def _masters(serve_pid: int, app_marker: str) -> list[psutil.Process]:
    return [p for p in psutil.Process(serve_pid).children() if any(app_marker in a for a in p.cmdline())]


def test_serve_restarts_a_sigkilled_transcoder_master(tmp_path: Path):
    api_port, transcoder_port = free_ports(2)
    env = {k: v for k, v in os.environ.items() if k != "OBSLAB_ADMIN_TOKEN"}
    env["OBSLAB_TRANSCODER_TIMEOUT_S"] = "15"  # a busy shared machine must not fail the publish on time
    out_path, err_path = tmp_path / "serve.out", tmp_path / "serve.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([OBSLAB, "serve", "--port", str(api_port), "--transcoder-port", str(transcoder_port),
                                 "--workers", "1", "--data-dir", str(tmp_path / "data")],
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    base_url = f"http://127.0.0.1:{api_port}"
    try:
        _wait(lambda: "press Ctrl-C" in out_path.read_text() or proc.poll() is not None, 90, "obslab serve to start")
        assert proc.poll() is None, err_path.read_text()
        assert _publish(base_url).status_code == 200
        victim = _masters(proc.pid, "create_transcoder_app")[0]
        victim.send_signal(signal.SIGKILL)
        _wait(lambda: "transcoder restarted" in err_path.read_text() or proc.poll() is not None, 90,
              "serve to restart the transcoder")
        assert proc.poll() is None, f"obslab serve exited ({proc.returncode}): {err_path.read_text()}"
        stderr = err_path.read_text()
        assert "transcoder exited with code -9; restarting it" in stderr, stderr
        fresh = _masters(proc.pid, "create_transcoder_app")
        assert len(fresh) == 1 and fresh[0].pid != victim.pid
        r = _publish(base_url)
        assert r.status_code == 200 and r.json()["status"] == "published", r.text
        assert "restarting it" in (tmp_path / "data" / "logs" / "transcoder.log").read_text()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, err_path.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for master in _masters(proc.pid, "gunicorn") if psutil.pid_exists(proc.pid) else []:
            os.killpg(master.pid, signal.SIGKILL)


def test_a_worker_sigkilled_mid_sync_publish_ends_the_attempt(make_service):
    svc = make_service(workers=1)
    r = svc.admin("PUT", "/admin/faults/slow-transcode",
                  json={"kind": "latency", "target": "transcoder", "params": {"latency_ms": 8000}})
    assert r.status_code == 200, r.text
    upload = svc.create_upload(chunk_count=1)
    upload_id = upload["upload_id"]
    assert svc.put_chunk(upload_id, 0).status_code == 200
    answers: list = []

    def complete():
        try:
            answers.append(requests.post(svc.url(f"/v1/uploads/{upload_id}/complete"), timeout=60))
        except requests.RequestException as e:  # the worker dies under it: no answer
            answers.append(e)

    caller = threading.Thread(target=complete)
    caller.start()
    try:
        # The claim is taken and the transcode (8 s) is under way: kill the worker holding it.
        _wait(lambda: svc.events(lambda e: e["event"] == "transcode_started" and e["upload_id"] == upload_id), 30,
              "the transcode to start")
        master = next(p for p in svc.processes.processes if p.name == "publish-api").proc.pid
        victim = psutil.Process(master).children()[0]
        victim.send_signal(signal.SIGKILL)
    finally:
        caller.join(70)
    assert answers and isinstance(answers[0], requests.RequestException), answers
    svc.http = requests.Session()  # its pooled keep-alive connections died with the worker
    svc.admin("DELETE", "/admin/faults/slow-transcode")

    # gunicorn starts a new worker; the attempt reaches a terminal state without any client help...
    status = _wait(lambda: (s := svc.status(upload_id)) and s["status"] != "transcoding" and s, 30,
                   "the attempt to leave 'transcoding'")
    assert status["status"] == "failed" and status["error_class"] == "internal", status
    # ...with exactly one terminal event, and the client's retry of complete gets that answer, not a 202.
    terminal = svc.wait_for_events(lambda e: e["upload_id"] == upload_id and e["event"] in
                                   ("publish_succeeded", "publish_failed", "upload_cancelled"))
    assert [(e["event"], e["error_class"]) for e in terminal] == [("publish_failed", "internal")]
    retry = svc.complete(upload_id)
    assert retry.status_code == 503 and retry.json()["error_class"] == "internal", retry.text
    assert validate_files([Path(svc.events_dir) / "events.jsonl"]).ok
    # The service is whole: the next publish goes through.
    assert svc.publish(chunk_count=1)["complete_status"] == 200
