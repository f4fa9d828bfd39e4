"""The creator: a user who publishes videos, start to finish, like the mobile app does.

One task, one publish flow: create an upload for a cohort drawn from the weighted mix, send the
chunks (real bytes, paced by the network type, retried under the configured policy with
``X-Chunk-Attempt``), sometimes cancel part-way, complete, and in async transcode mode poll the
status until it is terminal. Every call of the flow carries the same ``X-Request-ID`` (minted
here, so the client record joins the events) and a ``traceparent`` of one trace per flow, and is
marked ``X-Synthetic: 1``. Each flow ends as one line of the client record.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone

import gevent
from gevent import GreenletExit
from locust import FastHttpUser, task
from locust.exception import InterruptTaskSet, StopUser

from loadtests import settings as settings_module
from loadtests.cohorts import Cohort, chunk_pause_s
from loadtests.identity import new_span_id, new_trace_id, next_user_number, traceparent, user_rng, worker_index
from loadtests.record import INTERRUPTED, TRANSPORT_ERROR, AttemptRecorder, Call, ClientAttempt

__all__ = ["CreatorUser", "RETRYABLE_CHUNK_STATUSES", "REQUEST_NAMES"]

SETTINGS = settings_module.current()
# A chunk answer worth another try: the server's "chunk failed, retry" (503), overload and
# gateway errors, and transport errors (status 0). Anything else is a client bug or a gone upload.
RETRYABLE_CHUNK_STATUSES = frozenset({TRANSPORT_ERROR, 429, 502, 503, 504})
TERMINAL_STATUSES = {"published": "published", "failed": "failed", "cancelled": "cancelled"}
# Locust statistics group requests by these names, not by the per-upload URL.
REQUEST_NAMES = {
    "create": "POST /v1/uploads",
    "chunk": "PUT /v1/uploads/{id}/chunks/{n}",
    "complete": "POST /v1/uploads/{id}/complete",
    "status": "GET /v1/uploads/{id}",
    "cancel": "POST /v1/uploads/{id}/cancel",
}
CANCEL_REASON = "user_cancelled"

_recorder = AttemptRecorder(SETTINGS.record_dir) if SETTINGS.record_dir else None
# The bytes creators upload: a fixed pseudo-random buffer (seeded; the content does not matter,
# its size and incompressibility do). Chunks are slices of it.
_PAYLOAD = random.Random(SETTINGS.seed).randbytes(2 * settings_module.MAX_CHUNK_BYTES)


def _now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _status_of(response) -> int:
    # geventhttpclient reports a transport error as a response with status 0.
    return int(getattr(response, "status_code", 0) or TRANSPORT_ERROR)


def _json(response) -> dict:
    try:
        body = response.json()
    except Exception:  # noqa: BLE001 - any undecodable body is "no body" to the client
        return {}
    return body if isinstance(body, dict) else {}


class FlowOver(Exception):
    """Ends a publish flow early with the outcome the client settled on."""

    def __init__(self, outcome: str, reason: str | None = None):
        super().__init__(outcome, reason)
        self.outcome = outcome
        self.reason = reason


class CreatorUser(FastHttpUser):
    """Publishes videos: one publish flow per task run."""

    weight = SETTINGS.creator_weight
    network_timeout = SETTINGS.request_timeout_s
    connection_timeout = SETTINGS.request_timeout_s
    # One connection per user: a creator's app talks to the API over one keep-alive connection.
    concurrency = 1

    def wait_time(self) -> float:
        low, high = SETTINGS.think_time_s
        return self.rng.uniform(low, high) if high > 0 else 0.0

    def on_start(self) -> None:
        self.worker = worker_index(self.environment)
        self.number = next_user_number("creator")
        self.rng = user_rng(SETTINGS.seed, "creator", self.worker, self.number)
        self.user_key = f"{self.worker}.{self.number}"
        # A raw, stable creator identity; the service hashes it (sticky flag rollout by user).
        self.user_id = f"creator-{SETTINGS.seed}-{self.user_key}"
        self.flows = 0
        self.release: str | None = None  # the release variant the service last put this creator in

    # -- one publish flow -------------------------------------------------------------------------

    @task
    def publish(self) -> None:
        self.flows += 1
        # The service assigns the release per user (sticky); its answer tells which variant this creator is in.
        cohort = settings_module.mix_for(SETTINGS, self.release).draw(self.rng)
        # Drawn up front, in a fixed order, so the choices do not depend on server answers.
        cancel_before_chunk = (self.rng.randrange(cohort.chunk_count)
                               if self.rng.random() < SETTINGS.cancel_rate else None)
        attempt = ClientAttempt(
            request_id=f"{SETTINGS.run_id}.{self.user_key}.{self.flows}",
            run_id=SETTINGS.run_id,
            user=self.user_key,
            trace_id=new_trace_id(),
            started_at=_now_rfc3339(),
            cohort=cohort.as_dict(),
            media_size_bytes=cohort.media_size_bytes,
            chunk_count=cohort.chunk_count,
        )
        self._headers = {
            "X-Request-ID": attempt.request_id,
            "X-Synthetic": "1",
            # One trace per flow: every call is a child of the flow's (client-side) root span.
            "traceparent": traceparent(attempt.trace_id, new_span_id(), SETTINGS.trace_sample_ratio),
        }
        started = time.perf_counter()
        try:
            self._run_flow(attempt, cohort, cancel_before_chunk)
        except FlowOver as over:
            attempt.outcome, attempt.reason = over.outcome, over.reason
        except (GreenletExit, StopUser, InterruptTaskSet):
            # Stopped mid-flow (end of run, ramp-down): the client walks away; the server sees
            # an attempt with no terminal event (abandoned). Record it, then let Locust stop us.
            attempt.outcome, attempt.reason = "abandoned", "stopped"
            raise
        except Exception as e:
            attempt.outcome, attempt.reason = "error", f"load generator error: {e!r}"
            raise
        finally:
            attempt.latency_ms = round((time.perf_counter() - started) * 1000, 3)
            if _recorder is not None:
                _recorder.write(attempt)

    def _run_flow(self, attempt: ClientAttempt, cohort: Cohort, cancel_before_chunk: int | None) -> None:
        self._create(attempt, cohort)
        chunk_bytes = min(SETTINGS.chunk_bytes, self.max_chunk_bytes)
        gave_up = False
        for index in range(cohort.chunk_count):
            if index == cancel_before_chunk:
                self._cancel(attempt)
            if not self._send_chunk(attempt, index, chunk_bytes):
                gave_up = True
                if SETTINGS.on_give_up == "abandon":
                    raise FlowOver("abandoned", f"chunk {index}: retries exhausted")
                break  # "complete": tell the server we are done; it fails the publish
            gevent.sleep(chunk_pause_s(cohort.network_type, chunk_bytes, SETTINGS.pace, self.rng))
        self._complete(attempt, gave_up)

    # -- calls ------------------------------------------------------------------------------------

    def _call(self, attempt: ClientAttempt, kind: str, method: str, path: str, *, chunk: int | None = None,
              try_number: int | None = None, ok: tuple[int, ...], **kwargs):
        """One HTTP call of the flow, recorded before it is sent (so a stopped user leaves -1)."""
        call = Call(kind, INTERRUPTED, chunk, try_number)
        attempt.calls.append(call)
        headers = dict(self._headers)
        headers.update(kwargs.pop("headers", {}))
        with self.client.request(method, path, name=REQUEST_NAMES[kind], headers=headers,
                                 catch_response=True, **kwargs) as response:
            call.status = _status_of(response)
            body = _json(response) if call.status else {}
            if call.status in ok:
                response.success()
            elif call.status == TRANSPORT_ERROR:
                response.failure(f"{kind}: transport error: {response.error!r}")
            else:
                error = body.get("error")
                call.code = error.get("code") if isinstance(error, dict) and isinstance(error.get("code"), str) else None
                response.failure(f"{kind}: HTTP {call.status}" + (f" ({call.code})" if call.code else ""))
        return call.status, body

    def _create(self, attempt: ClientAttempt, cohort: Cohort) -> None:
        body = {
            "media_size_bytes": cohort.media_size_bytes,
            "chunk_count": cohort.chunk_count,
            "app_version": cohort.app_version,
            "region": cohort.region,
            "network_type": cohort.network_type,
            "user_id": self.user_id,
        }
        status, answer = self._call(attempt, "create", "POST", "/v1/uploads", json=body, ok=(201,))
        if status != 201 or not answer.get("upload_id"):
            raise FlowOver("error" if status == TRANSPORT_ERROR else "failed", f"create: HTTP {status}")
        attempt.upload_id = answer["upload_id"]
        attempt.transcode_mode = (answer.get("flags") or {}).get("transcode_mode")
        self.release = (answer.get("flags") or {}).get("release")
        self.max_chunk_bytes = int(answer.get("max_chunk_bytes") or settings_module.MAX_CHUNK_BYTES)

    def _send_chunk(self, attempt: ClientAttempt, index: int, chunk_bytes: int) -> bool:
        """Send chunk ``index`` until it is accepted (True) or the retry policy gives up (False)."""
        offset = (index * 7919) % (len(_PAYLOAD) - chunk_bytes + 1)
        payload = _PAYLOAD[offset:offset + chunk_bytes]
        try_number = 1
        while True:
            status, _ = self._call(
                attempt, "chunk", "PUT", f"/v1/uploads/{attempt.upload_id}/chunks/{index}",
                chunk=index, try_number=try_number, ok=(200,), data=payload,
                headers={"Content-Type": "application/octet-stream", "X-Chunk-Attempt": str(try_number)},
            )
            if status == 200:
                return True
            if status not in RETRYABLE_CHUNK_STATUSES:
                raise FlowOver("error", f"chunk {index}: HTTP {status}")
            delay = SETTINGS.retry.delay_s(try_number, self.rng)
            if delay is None:
                return False
            gevent.sleep(delay)
            try_number += 1
            attempt.retries += 1

    def _complete(self, attempt: ClientAttempt, gave_up: bool) -> None:
        """Complete the upload; retry a refusal that left it uploading (an API error, overload)."""
        try_number = 1
        while True:
            status, answer = self._call(attempt, "complete", "POST", f"/v1/uploads/{attempt.upload_id}/complete",
                                        ok=(200, 202))
            state = answer.get("status")
            why = f"complete: HTTP {status}" + (f" ({attempt.calls[-1].code})" if attempt.calls[-1].code else "") + \
                (" after a chunk gave up" if gave_up else "")
            if status == 200 and state == "published":
                raise FlowOver("published")
            if state in TERMINAL_STATUSES:  # a failed publish (503/409) names its terminal status
                raise FlowOver(TERMINAL_STATUSES[state], answer.get("error_class") or why)
            if status in (202, TRANSPORT_ERROR) or state == "transcoding":
                # Async, no answer, or already claimed: the server may still be working; wait for it.
                self._settle(attempt, why, wait=True)
            if status not in RETRYABLE_CHUNK_STATUSES:
                self._settle(attempt, why, wait=False)
            delay = SETTINGS.retry.delay_s(try_number, self.rng)
            if delay is None:
                self._settle(attempt, why, wait=False)
            gevent.sleep(delay)
            try_number += 1

    def _cancel(self, attempt: ClientAttempt) -> None:
        status, answer = self._call(attempt, "cancel", "POST", f"/v1/uploads/{attempt.upload_id}/cancel",
                                    json={"reason": CANCEL_REASON}, ok=(200,))
        if status == 200 and answer.get("status") == "cancelled":
            raise FlowOver("cancelled")
        self._settle(attempt, f"cancel: HTTP {status}", wait=status == TRANSPORT_ERROR)

    def _settle(self, attempt: ClientAttempt, why: str, wait: bool) -> None:
        """Ask the upload's status (polling until terminal when ``wait``) and end the flow with it.

        A status that never turns terminal ends the flow as ``error``: the client cannot tell.
        """
        deadline = time.monotonic() + (SETTINGS.poll_timeout_s if wait else 0.0)
        while True:
            status, answer = self._call(attempt, "status", "GET", f"/v1/uploads/{attempt.upload_id}", ok=(200,))
            state = answer.get("status") if status == 200 else None
            if state in TERMINAL_STATUSES:
                reason = None if state == "published" else answer.get("error_class") or why
                raise FlowOver(TERMINAL_STATUSES[state], reason)
            if status != 200 and status not in RETRYABLE_CHUNK_STATUSES:
                raise FlowOver("error", f"{why}; status: HTTP {status}")
            if time.monotonic() >= deadline:
                waited = f"no terminal status within {SETTINGS.poll_timeout_s:g}s" if wait else f"status {state!r}"
                raise FlowOver("error", f"{why}; {waited}")
            gevent.sleep(SETTINGS.poll_interval_s)
