"""Shared fixtures: the real service (gunicorn API + transcoder) on free loopback ports.

``service`` (module scope) and ``fresh_service`` (function scope) start the publish API
with 2 gunicorn workers plus the transcoder in a tmp data dir and stop both (process
groups) afterwards, even when the test fails. Both yield a ``ServiceHandle``:

    def test_something(service):
        upload = service.create_upload(region="eu-west")
        service.publish(upload_id=upload["upload_id"])
        events = service.events(lambda e: e["upload_id"] == upload["upload_id"])
        service.admin("PUT", "/admin/faults/slow", json={...})
        assert service.metric("obslab_events_total", event="upload_started") >= 1

``make_service(**kwargs)`` (function scope) starts more with custom options
(workers, instrumentation, trace_sample_ratio, extra_env), stopping them at teardown.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import pytest
import requests
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from prometheus_client.parser import text_string_to_metric_families

from demo_service.telemetry.events import read_events
from toolkit.lab.processes import ServiceProcesses

# The machine running tests is shared and can be very busy: give the transcode call room, so a test
# fails on behaviour, not on a 2 s default timeout (faults that time out use longer hangs).
TEST_ENV = {"OBSLAB_TRANSCODER_TIMEOUT_S": "15"}
DEFAULT_COHORT = {"app_version": "5.4.0", "region": "us-east", "network_type": "wifi"}


def new_traceparent(sampled: bool = True) -> tuple[str, str]:
    """(traceparent header, trace_id) for one client-side attempt."""
    trace_id = secrets.token_hex(16)
    return f"00-{trace_id}-{secrets.token_hex(8)}-{'01' if sampled else '00'}", trace_id


class UninstrumentedSession(requests.Session):
    """The test client's own HTTP session, never traced by this process.

    An in-process ``create_app`` (Flask test-client tests) instruments ``requests`` for the whole pytest
    process; an instrumented client then injects a new ``traceparent`` of its own over the one a test sends,
    so the service would see a different trace than the test asserts on."""

    def send(self, request, **kwargs):
        with suppress_http_instrumentation():
            return super().send(request, **kwargs)


class ServiceHandle:
    """A running service plus helpers to drive it and read what it emitted."""

    def __init__(self, processes: ServiceProcesses):
        self.processes = processes
        self.base_url = processes.base_url
        self.transcoder_url = processes.transcoder_url
        self.admin_token = processes.admin_token
        self.data_dir = processes.data_dir
        self.events_dir = processes.events_dir
        self.http = UninstrumentedSession()

    def url(self, path: str) -> str:
        return self.base_url + path

    # --- driving the API ---------------------------------------------------------------------------
    def create_upload(self, *, media_size_bytes: int = 1_000_000, chunk_count: int = 2, user_id: str | None = None,
                      headers: dict | None = None, **cohort: str) -> dict:
        body = {"media_size_bytes": media_size_bytes, "chunk_count": chunk_count,
                "user_id": user_id or f"user-{secrets.token_hex(4)}", **DEFAULT_COHORT, **cohort}
        r = self.http.post(self.url("/v1/uploads"), json=body, headers=headers or {}, timeout=30)
        assert r.status_code == 201, r.text
        return r.json()

    def put_chunk(self, upload_id: str, n: int, data: bytes = b"x" * 1024, attempt: int = 1,
                  headers: dict | None = None) -> requests.Response:
        h = {"Content-Type": "application/octet-stream", "X-Chunk-Attempt": str(attempt), **(headers or {})}
        return self.http.put(self.url(f"/v1/uploads/{upload_id}/chunks/{n}"), data=data, headers=h, timeout=30)

    def complete(self, upload_id: str, headers: dict | None = None) -> requests.Response:
        return self.http.post(self.url(f"/v1/uploads/{upload_id}/complete"), headers=headers or {}, timeout=30)

    def status(self, upload_id: str) -> dict:
        return self.http.get(self.url(f"/v1/uploads/{upload_id}"), timeout=30).json()

    def publish(self, *, chunk_count: int = 2, traceparent: str | None = None, **create_kwargs: Any) -> dict:
        """One whole attempt (create, every chunk, complete); returns ids and the complete response."""
        headers = {"traceparent": traceparent} if traceparent else {}
        upload = self.create_upload(chunk_count=chunk_count, headers=headers, **create_kwargs)
        headers["X-Request-ID"] = upload["request_id"]
        for n in range(chunk_count):
            r = self.put_chunk(upload["upload_id"], n, headers=headers)
            assert r.status_code == 200, r.text
        r = self.complete(upload["upload_id"], headers=headers)
        return {**upload, "complete_status": r.status_code, "complete": r.json()}

    def admin(self, method: str, path: str, token: str | None = "default", **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token == "default":
            token = self.admin_token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, self.url(path), headers=headers, timeout=30, **kwargs)

    # --- reading what it emitted --------------------------------------------------------------------
    def events(self, predicate: Callable[[dict], bool] | None = None) -> list[dict]:
        return read_events(self.events_dir, predicate)

    def wait_for_events(self, predicate: Callable[[dict], bool], count: int = 1, timeout_s: float = 30.0) -> list[dict]:
        """Poll the event log until ``count`` events match (async paths write after the response)."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.events(predicate)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def metric_samples(self, url: str | None = None) -> list:
        text = self.http.get(url or self.url("/metrics"), timeout=30).text
        return [s for fam in text_string_to_metric_families(text) for s in fam.samples]

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (0.0 when none)."""
        return sum(s.value for s in self.metric_samples()
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[ServiceHandle]:
    """The service for a whole test module (2 API workers + transcoder, tmp data dir)."""
    with ServiceProcesses(tmp_path_factory.mktemp("service"), workers=2, extra_env=TEST_ENV) as processes:
        yield ServiceHandle(processes)


@pytest.fixture
def fresh_service(tmp_path: Path) -> Iterator[ServiceHandle]:
    """A service of its own for one test (clean state, clean event log)."""
    with ServiceProcesses(tmp_path / "service", workers=2, extra_env=TEST_ENV) as processes:
        yield ServiceHandle(processes)


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Callable[..., ServiceHandle]]:
    """Start services with custom ``ServiceProcesses`` options; all are stopped at teardown."""
    started: list[ServiceProcesses] = []

    def start(**kwargs: Any) -> ServiceHandle:
        kwargs.setdefault("workers", 2)
        kwargs["extra_env"] = {**TEST_ENV, **(kwargs.get("extra_env") or {})}
        processes = ServiceProcesses(tmp_path / f"service-{len(started)}", **kwargs)
        started.append(processes)
        processes.start()
        return ServiceHandle(processes)

    yield start
    for processes in reversed(started):
        processes.stop()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's) through Playwright, one per test module; skips saying what is missing."""
    from toolkit.bench.lab import CHROMIUM, CHROMIUM_ARGS

    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture()
def page(browser):
    """A fresh 1400x1800 page of the module's Chromium; ``page.errors`` collects the page's uncaught errors
    (tests assert it is empty). test_lab.py and test_oncall_ui.py keep pages of their own."""
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    context.close()


def stop_lab(proc: subprocess.Popen, grace_s: float = 60) -> None:
    """Stop an ``obslab lab``/``serve`` started by a test as a user would (Ctrl-C), then SIGKILL whatever of its
    process tree is left: a failed test must never leave a lab behind."""
    if proc.poll() is not None:
        return
    pids = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        pass
    for pid in pids + [proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        proc.wait(10)
