"""The lab's Prometheus config with a remote-write block: promtool accepts it, and a real
Prometheus sends the lab's series (and only those) to the endpoint it names."""

import http.server
import subprocess
import threading
import time
from pathlib import Path

import pytest

from toolkit.lab.processes import free_port
from toolkit.slo.prometheus_config import write_prometheus_config

SPEC = Path(__file__).resolve().parents[1] / "slo.yaml"
needs_promtool = pytest.mark.skipif(not Path("/usr/bin/promtool").exists(), reason="promtool not installed")


@needs_promtool
def test_remote_write_block_passes_promtool(tmp_path, monkeypatch):
    config = write_prometheus_config(tmp_path / "a", SPEC, "lab", "127.0.0.1:8000",
                                     remote_write_url="http://127.0.0.1:9009/api/v1/push")
    out = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "remote_write:" in config.read_text() and "http://127.0.0.1:9009/api/v1/push" in config.read_text()
    monkeypatch.setenv("OBSLAB_PROMETHEUS_REMOTE_WRITE_URL", "https://metrics.example.invalid/api/v1/write")
    from_env = write_prometheus_config(tmp_path / "b", SPEC, "lab", "127.0.0.1:8000")
    assert "https://metrics.example.invalid/api/v1/write" in from_env.read_text()
    monkeypatch.delenv("OBSLAB_PROMETHEUS_REMOTE_WRITE_URL")
    assert "remote_write:" not in write_prometheus_config(tmp_path / "c", SPEC, "lab", "127.0.0.1:8000").read_text()


def test_a_bad_remote_write_url_is_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("OBSLAB_PROMETHEUS_REMOTE_WRITE_URL", "metrics-host:9009")
    with pytest.raises(ValueError, match="OBSLAB_PROMETHEUS_REMOTE_WRITE_URL 'metrics-host:9009': expected an http"):
        write_prometheus_config(tmp_path, SPEC, "lab", "127.0.0.1:8000")


class _Recorder(http.server.BaseHTTPRequestHandler):
    posts: list = []

    def do_GET(self):  # the scrape target
        body = b"# TYPE obslab_probe_total counter\nobslab_probe_total 7\n# TYPE other_probe gauge\nother_probe 1\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # the remote-write receiver
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).posts.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.skipif(not Path("/usr/bin/prometheus").exists(), reason="prometheus not installed")
def test_prometheus_sends_the_lab_series_to_the_remote_write_endpoint(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    config = write_prometheus_config(tmp_path, SPEC, "lab", f"127.0.0.1:{port}",
                                     remote_write_url=f"http://127.0.0.1:{port}/api/v1/write")
    prom = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{free_port()}", "--log.level=warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(b"obslab_probe_total" in b for _, b in _Recorder.posts):
            time.sleep(0.5)
    finally:
        prom.terminate()
        prom.wait(timeout=30)
        server.shutdown()
    sent = [(h, b) for h, b in _Recorder.posts if b"obslab_probe_total" in b]
    assert sent, f"no remote-write request carried obslab_probe_total ({len(_Recorder.posts)} requests)"
    headers, _ = sent[0]
    assert headers.get("Content-Encoding") == "snappy" and headers.get("X-Prometheus-Remote-Write-Version")
    # write_relabel_configs keeps the lab's series only.
    assert not any(b"other_probe" in b or b"scrape_duration_seconds" in b for _, b in _Recorder.posts)
