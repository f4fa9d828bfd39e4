"""The API's transcoder client against a real local HTTP server: bounded retries and error classes."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from demo_service.store import Upload
from demo_service.transcode_client import TranscodeClient
from toolkit.lab.processes import free_port

UPLOAD = Upload(upload_id="up_" + "0" * 24, request_id="req-00000001", user_hash="u_" + "0" * 16,
                app_version="5.4.0", region="us-east", network_type="wifi", media_size_bytes=10,
                media_size_bucket="small", chunk_count=1, synthetic=True, flags={"release": "stable"},
                status="transcoding", created_at=0.0, completed_at=0.0, finished_at=None, video_id=None,
                error_class=None, traceparent=None)


@pytest.fixture
def transcoder():
    """A scripted transcoder: answers the queued (status, delay_s) in order, then 200."""
    script: list[tuple[int, float]] = []
    calls: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            calls.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            status, delay = script.pop(0) if script else (200, 0.0)
            time.sleep(delay)
            body = json.dumps({"output_id": "out_1"} if status == 200 else {"error": {}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", script, calls
    server.shutdown()
    server.server_close()


def test_retries_5xx_then_succeeds(transcoder):
    url, script, calls = transcoder
    script += [(503, 0), (500, 0)]
    result = TranscodeClient(url, 0.5, 2.0, 3, backoff_s=0.001).transcode(UPLOAD, 10)
    assert result.ok and result.attempts == 3 and result.output_id == "out_1"
    assert calls[0]["media_size_bucket"] == "small" and calls[0]["bytes"] == 10


def test_gives_up_after_max_attempts_as_dependency_unavailable(transcoder):
    url, script, calls = transcoder
    script += [(503, 0)] * 5
    result = TranscodeClient(url, 0.5, 2.0, 3, backoff_s=0.001).transcode(UPLOAD, 10)
    assert (result.ok, result.error_class, result.attempts, len(calls)) == (False, "dependency_unavailable", 3, 3)


def test_read_timeout_is_final_and_classed_timeout(transcoder):
    url, script, calls = transcoder
    script += [(200, 1.0)]
    result = TranscodeClient(url, 0.5, 0.2, 3, backoff_s=0.001).transcode(UPLOAD, 10)
    assert (result.ok, result.error_class, result.attempts, len(calls)) == (False, "timeout", 1, 1)


def test_504_is_timeout_and_4xx_is_internal(transcoder):
    url, script, _ = transcoder
    script += [(504, 0), (422, 0)]
    client = TranscodeClient(url, 0.5, 2.0, 3, backoff_s=0.001)
    assert client.transcode(UPLOAD, 10).error_class == "timeout"
    assert client.transcode(UPLOAD, 10).error_class == "internal"


def test_nothing_listening_is_dependency_unavailable():
    result = TranscodeClient(f"http://127.0.0.1:{free_port()}", 0.5, 1.0, 2, backoff_s=0.001).transcode(UPLOAD, 1)
    assert (result.ok, result.error_class, result.attempts) == (False, "dependency_unavailable", 2)
