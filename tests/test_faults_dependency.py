"""The transcoder slow, failing or gone: bounded waits, bounded retries, 503 + Retry-After
instead of a hang, unrelated routes keep answering, and the SLIs come back after the fault.

Real processes: the publish API under gunicorn (2 workers × 4 threads) and the transcoder
as its own gunicorn; faults go through the control API like a drill's would, and the
transcoder is killed with SIGKILL for "gone".
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
import requests

from demo_service.config import default_config
from toolkit.events import load_events
from toolkit.measures.sli import SliQuery, compute_report
from toolkit.slo.spec import load_spec

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A request that takes longer than this is a hang, not a slow answer (the bound under test
# is the service's: read timeout 2 s, 3 attempts with ms backoff).
HANG_S = 30
MAX_ATTEMPTS = default_config()["TRANSCODER_MAX_ATTEMPTS"]
CONCURRENT_PUBLISHES = 12  # more than the API's 8 threads: they must not starve other routes


def _transcoder_requests(service) -> float:
    return service.metric_samples_total(service.transcoder_url + "/metrics", "obslab_transcoder_requests_total")


def _publish_until_complete(service) -> requests.Response:
    upload = service.create_upload(chunk_count=1)
    headers = {"X-Request-ID": upload["request_id"]}
    assert service.put_chunk(upload["upload_id"], 0, headers=headers).status_code == 200
    r = requests.post(service.url(f"/v1/uploads/{upload['upload_id']}/complete"), headers=headers,
                      timeout=HANG_S)
    r.request_id = upload["request_id"]
    return r


def _put_fault_in_force(service, name: str, spec: dict) -> None:
    """PUT a fault, then publish until one attempt shows it: workers and the transcoder pick
    faults up from the shared state on their next refresh, not at the PUT."""
    assert service.admin("PUT", f"/admin/faults/{name}", json=spec).status_code == 200
    deadline = time.monotonic() + HANG_S
    while _publish_until_complete(service).status_code != 503:
        assert time.monotonic() < deadline, f"fault {name} never took effect"


class Bystander:
    """Calls /healthz and /v1/feed in a loop while a fault is on; records every status."""

    def __init__(self, service):
        self.service = service
        self.statuses: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for path in ("/healthz", "/v1/feed?limit=5"):
                try:
                    code = requests.get(self.service.url(path), timeout=HANG_S).status_code
                except requests.RequestException as e:  # a hang or a refused connection is a failure
                    code = f"{type(e).__name__}"
                self.statuses.append((path, code))
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=HANG_S + 5)


def _concurrent_completes(service, n=CONCURRENT_PUBLISHES) -> list[requests.Response]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: _publish_until_complete(service), range(n)))


def _assert_unavailable(responses, error_class):
    for r in responses:
        assert r.status_code == 503, r.text
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json()["error"]["code"] and r.json().get("error_class") in (error_class, None), r.text


def _start(make_service, **kwargs):
    handle = make_service(**kwargs)
    # Total of one metric family on another process's /metrics.
    handle.metric_samples_total = lambda url, name: sum(
        s.value for s in handle.metric_samples(url) if s.name == name)
    return handle


@pytest.fixture
def svc(make_service):
    return _start(make_service)


# The read timeout under test: short enough to keep the test brief, and the injected
# latency far beyond it, so a busy machine cannot blur the two.
READ_TIMEOUT_S = 3
INJECTED_LATENCY_MS = 20_000


def test_slow_transcoder_times_out_without_retry_and_without_starving_other_routes(make_service):
    svc = _start(make_service, extra_env={"OBSLAB_TRANSCODER_TIMEOUT_S": str(READ_TIMEOUT_S)})
    _put_fault_in_force(svc, "slow-transcoder",
                        {"kind": "latency", "target": "transcoder", "params": {"latency_ms": INJECTED_LATENCY_MS}})
    before = _transcoder_requests(svc)
    with Bystander(svc) as bystander:
        responses = _concurrent_completes(svc)
    _assert_unavailable(responses, "timeout")
    batch = {r.request_id for r in responses}
    failed = svc.events(lambda e: e["event"] == "publish_failed" and e["request_id"] in batch)
    assert len(failed) == CONCURRENT_PUBLISHES and {e["error_class"] for e in failed} == {"timeout"}
    # A read timeout is final: one transcode call per publish, never a retry that doubles the wait.
    calls = _transcoder_requests(svc) - before
    svc.admin("DELETE", "/admin/faults/slow-transcoder")
    assert bystander.statuses and all(code == 200 for _, code in bystander.statuses), set(bystander.statuses)
    assert calls <= CONCURRENT_PUBLISHES, calls


def test_failing_transcoder_is_retried_a_bounded_number_of_times(svc):
    _put_fault_in_force(svc, "broken-transcoder", {"kind": "errors", "target": "transcoder"})
    before = _transcoder_requests(svc)
    with Bystander(svc) as bystander:
        responses = _concurrent_completes(svc)
    calls = _transcoder_requests(svc) - before
    svc.admin("DELETE", "/admin/faults/broken-transcoder")
    _assert_unavailable(responses, "dependency_unavailable")
    batch = {r.request_id for r in responses}
    failed = svc.events(lambda e: e["event"] == "publish_failed" and e["request_id"] in batch)
    assert len(failed) == CONCURRENT_PUBLISHES
    assert {e["error_class"] for e in failed} == {"dependency_unavailable"}
    assert calls == CONCURRENT_PUBLISHES * MAX_ATTEMPTS, calls  # every attempt retried, none more than allowed
    assert all(code == 200 for _, code in bystander.statuses), set(bystander.statuses)


def _success_rate(svc, since: datetime, until: datetime):
    spec = load_spec(os.path.join(ROOT, "slo.yaml"))
    events = load_events([svc.events_dir])
    report = compute_report(events, spec, SliQuery(since=since, until=until, window_s=None))
    fig = report.totals.figure("publish_success_rate")
    events.con.close()
    return fig.value, fig.numerator, fig.denominator


def test_transcoder_gone_then_back_slis_recover_within_60s(svc):
    def now():
        return datetime.now(timezone.utc).replace(tzinfo=None)

    t0 = now()
    for _ in range(5):  # baseline
        assert _publish_until_complete(svc).status_code == 200
    transcoder = next(p for p in svc.processes.processes if p.name == "transcoder")
    os.killpg(os.getpgid(transcoder.proc.pid), signal.SIGKILL)
    transcoder.proc.wait(timeout=10)
    t_gone = now()
    with Bystander(svc) as bystander:
        responses = _concurrent_completes(svc, 6)
    _assert_unavailable(responses, "dependency_unavailable")
    assert all(code == 200 for _, code in bystander.statuses), set(bystander.statuses)

    # The fault clears: the transcoder is back (same port, same command line).
    transcoder.start()
    transcoder.wait_healthy(60)
    t_clear = now()
    cleared_at = time.monotonic()
    statuses = []
    # Publish steadily for the 60 s the SLIs have to recover in; stop early once 10 in a row succeed.
    while time.monotonic() - cleared_at < 60:
        statuses.append(_publish_until_complete(svc).status_code)
        if statuses[-10:] == [200] * 10:
            break
    t_end = now()
    assert statuses[-10:] == [200] * 10, statuses

    baseline = _success_rate(svc, t0, t_gone)
    during = _success_rate(svc, t_gone, t_clear)
    after = _success_rate(svc, t_clear, t_end)
    assert baseline[0] == 1.0 and baseline[2] == 5, baseline
    assert during[0] == 0.0 and during[2] == 6, during
    # Every attempt started after the transcoder came back succeeded: back to baseline at once.
    assert after[0] == baseline[0] and after[2] == len(statuses), (after, statuses)
