"""The viewer: reads the feed of recent videos, the unrelated flow that guardrails watch."""

from __future__ import annotations

from locust import FastHttpUser, task

from loadtests import settings as settings_module
from loadtests.identity import next_user_number, user_rng, worker_index

__all__ = ["ViewerUser", "FEED_LIMIT", "VIEWER_THINK_TIME_S"]

SETTINGS = settings_module.current()
FEED_LIMIT = 20
VIEWER_THINK_TIME_S = (1.0, 3.0)


class ViewerUser(FastHttpUser):
    """Opens the app and scrolls the feed now and then."""

    weight = SETTINGS.viewer_weight
    network_timeout = SETTINGS.request_timeout_s
    connection_timeout = SETTINGS.request_timeout_s
    concurrency = 1

    def wait_time(self) -> float:
        return self.rng.uniform(*VIEWER_THINK_TIME_S)

    def on_start(self) -> None:
        self.rng = user_rng(SETTINGS.seed, "viewer", worker_index(self.environment), next_user_number("viewer"))

    @task
    def read_feed(self) -> None:
        with self.client.get(f"/v1/feed?limit={FEED_LIMIT}", name="GET /v1/feed", headers={"X-Synthetic": "1"},
                             catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"feed: HTTP {response.status_code or 'transport error'}")
                return
            try:
                videos = response.json().get("videos")
            except Exception:  # noqa: BLE001 - any bad body is a failed check
                videos = None
            if not isinstance(videos, list):
                response.failure("feed: no 'videos' list in the body")
