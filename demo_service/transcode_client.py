"""The API's client of the transcoder: HTTP with bounded timeouts and bounded retries.

Retries only what a retry can fix (connection errors, 5xx other than 504) with a short
exponential backoff; a read timeout is not retried (the work may still be running, and
retrying would multiply the wait). Trace context travels in ``traceparent`` (injected by
the requests instrumentation).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import requests

from demo_service.store import Upload

__all__ = ["TranscodeResult", "TranscodeClient"]


@dataclass(frozen=True)
class TranscodeResult:
    ok: bool
    error_class: str | None
    attempts: int
    duration_s: float
    output_id: str | None = None


class TranscodeClient:
    def __init__(self, base_url: str, connect_timeout_s: float, read_timeout_s: float, max_attempts: int,
                 backoff_s: float = 0.05):
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout_s, read_timeout_s)
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
        return s

    def transcode(self, upload: Upload, size_bytes: int) -> TranscodeResult:
        body = {"upload_id": upload.upload_id, "request_id": upload.request_id,
                "media_size_bucket": upload.media_size_bucket, "bytes": size_bytes,
                "region": upload.region, "app_version": upload.app_version, "network_type": upload.network_type,
                "release": upload.flags.get("release", "stable")}
        headers = {"X-Request-ID": upload.request_id}
        started = time.perf_counter()
        error_class = "dependency_unavailable"
        for attempt in range(1, self.max_attempts + 1):
            try:
                r = self.session.post(f"{self.base_url}/v1/transcode", json=body, headers=headers,
                                      timeout=self.timeout)
            except requests.Timeout as e:
                # A connect timeout is retryable (nothing started); a read timeout is final.
                if isinstance(e, requests.ConnectTimeout):
                    error_class = "dependency_unavailable"
                else:
                    return TranscodeResult(False, "timeout", attempt, time.perf_counter() - started)
            except requests.RequestException:
                error_class = "dependency_unavailable"
            else:
                if r.status_code == 200:
                    output = r.json().get("output_id") if r.content else None
                    return TranscodeResult(True, None, attempt, time.perf_counter() - started, output)
                if r.status_code == 504:
                    return TranscodeResult(False, "timeout", attempt, time.perf_counter() - started)
                if r.status_code < 500:  # our request was wrong: a bug, not worth retrying
                    return TranscodeResult(False, "internal", attempt, time.perf_counter() - started)
                error_class = "dependency_unavailable"
            if attempt < self.max_attempts:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
        return TranscodeResult(False, error_class, self.max_attempts, time.perf_counter() - started)
