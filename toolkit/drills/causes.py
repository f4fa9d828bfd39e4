"""The causes a learner chooses from when answering a drill.

One shared taxonomy, so drills offer each other's causes as distractors and the
unattended solver (``auto``) has one detector per cause.
"""

from __future__ import annotations

__all__ = ["CAUSES", "cause_label"]

# id → what a learner reads in the list of choices.
CAUSES: dict[str, str] = {
    "transcoder_slow": "The transcoder got slower for some media (tail latency)",
    "transcoder_errors": "The transcoder returns errors",
    "chunk_upload_failures": "Chunk uploads fail server-side for some clients",
    "retry_amplification": "Clients retry immediately without backoff, amplifying load (retry storm)",
    "canary_regression": "The canary release regressed",
    "storage_outage": "Object storage is unavailable in one region",
    "cache_regression": "The feed cache stopped working, pushing work onto the database",
    "database_slow": "The database is slow for every request",
    "instrumentation_loss": "Failure events are being dropped by the event sink (instrumentation bug)",
    "client_auto_cancel": "A client version cancels uploads by itself",
    "queue_backlog": "The async transcode queue cannot keep up",
    "memory_leak": "The API process leaks memory",
    "cpu_saturation": "The API is CPU-saturated",
    "traffic_spike": "Organic traffic spike, nothing broken",
    "database_saturation": "The database's connections saturate under load, and queries wait and fail",
}


def cause_label(cause_id: str) -> str:
    return CAUSES.get(cause_id, cause_id)
