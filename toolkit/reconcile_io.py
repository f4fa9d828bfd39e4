"""The I/O side of reconciliation: read the event log, fetch the service's counters.

``toolkit.reconcile`` holds the rules; this module turns files and URLs into its inputs.
Counters come either straight from the service's ``/metrics`` pages (parsed with
prometheus_client's text parser; several pages are summed, e.g. the API and the transcoder) or
from a Prometheus server's query API (``sum by (...)`` over every scraped instance).
"""

from __future__ import annotations

import gzip
import json
import os
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Iterable, Iterator

import requests
from prometheus_client.parser import text_string_to_metric_families

from loadtests.record import read_attempts
from toolkit.reconcile import AttemptEvents, Counters, Reconciliation, reconcile

__all__ = [
    "SourceError",
    "event_files",
    "read_event_log",
    "counters_from_metrics",
    "counters_from_prometheus",
    "parse_metrics_text",
    "reconcile_run",
    "EVENTS_TOTAL",
    "OUTCOMES_TOTAL",
    "EVENTS_LOST_TOTAL",
]

EVENTS_TOTAL = "obslab_events_total"
OUTCOMES_TOTAL = "obslab_publish_outcomes_total"
EVENTS_LOST_TOTAL = "obslab_events_lost_total"
HTTP_TIMEOUT_S = 10.0


class SourceError(ValueError):
    """An event log or counter source that cannot be read; says which and why, in one line."""


def event_files(directory: str | os.PathLike) -> list[Path]:
    """The event log files under ``directory``: ``*.jsonl``, rotated ``*.jsonl.N`` and ``*.jsonl.gz``."""
    root = Path(directory)
    if not root.exists():
        raise SourceError(f"event directory {root} does not exist")
    if root.is_file():
        return [root]
    files = [p for p in root.rglob("*") if p.is_file() and (
        p.name.endswith((".jsonl", ".jsonl.gz")) or (".jsonl." in p.name and p.name.rsplit(".", 1)[-1].isdigit()))]
    if not files:
        raise SourceError(f"no event files (*.jsonl, *.jsonl.N, *.jsonl.gz) under {root}")
    return sorted(files)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
        yield from enumerate(f, start=1)


def read_event_log(directory: str | os.PathLike,
                   skip_files: Iterable[str | os.PathLike] = ()) -> tuple[dict[str, AttemptEvents], Counter]:
    """Every event in the log: per request_id (counts by name, upload IDs) and totals by name.

    A torn last line (a writer killed mid-write) is not an event and is skipped; any other line
    that is not a JSON event is an error naming file and line, since a reconciliation that
    silently skipped lines would prove nothing.
    """
    skip = {Path(p).resolve() for p in skip_files}
    per_request: dict[str, Counter] = defaultdict(Counter)
    uploads: dict[str, set] = defaultdict(set)
    totals: Counter = Counter()
    for path in event_files(directory):
        if path.resolve() in skip:
            continue
        pending_error = None
        for number, line in _lines(path):
            if pending_error:  # the bad line was not the last one: not a torn write
                raise SourceError(pending_error)
            if not line.strip():
                continue
            try:
                event = json.loads(line)
                name = event["event"]
            except (ValueError, KeyError, TypeError):
                if line.endswith("\n"):
                    raise SourceError(f"{path}:{number}: not a JSON event line") from None
                pending_error = f"{path}:{number}: not a JSON event line"  # torn if it is the last
                continue
            totals[name] += 1
            request_id = event.get("request_id")
            if request_id:
                per_request[request_id][name] += 1
                if event.get("upload_id"):
                    uploads[request_id].add(event["upload_id"])
    events = {rid: AttemptEvents(rid, dict(counts), frozenset(uploads.get(rid, ()))) for rid, counts in
              per_request.items()}
    return events, totals


def parse_metrics_text(text: str, source: str) -> Counters:
    """Counters from one Prometheus text exposition (a ``/metrics`` page)."""
    events: Counter = Counter()
    outcomes: Counter = Counter()
    lost: Counter = Counter()
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == EVENTS_TOTAL:
                    events[sample.labels.get("event", "")] += sample.value
                elif sample.name == OUTCOMES_TOTAL:
                    outcomes[sample.labels.get("outcome", "")] += sample.value
                elif sample.name == EVENTS_LOST_TOTAL:
                    lost[sample.labels.get("reason", "")] += sample.value
    except ValueError as e:
        raise SourceError(f"{source} is not a Prometheus metrics page: {e}") from None
    if not events and not outcomes:
        raise SourceError(f"{source} has no {EVENTS_TOTAL} or {OUTCOMES_TOTAL} samples: is it the obslab service?")
    return Counters(source, dict(events), dict(outcomes), dict(lost))


def _get(url: str, **params) -> requests.Response:
    try:
        response = requests.get(url, params=params or None, timeout=HTTP_TIMEOUT_S)
    except requests.RequestException as e:
        raise SourceError(f"cannot reach {url}: {type(e).__name__}") from None
    if response.status_code != 200:
        raise SourceError(f"{url} answered HTTP {response.status_code}")
    return response


def counters_from_metrics(urls: Iterable[str]) -> Counters:
    """Counters summed over the ``/metrics`` pages at ``urls`` (e.g. the API and the transcoder)."""
    urls = list(urls)
    parts = [parse_metrics_text(_get(url).text, url) for url in urls]
    return Counters(
        " + ".join(urls),
        _sum(p.events_total for p in parts),
        _sum(p.publish_outcomes for p in parts),
        _sum(p.events_lost for p in parts),
    )


def _sum(maps: Iterable[dict]) -> dict:
    total: Counter = Counter()
    for m in maps:
        total.update(m)
    return dict(total)


def _prometheus_vector(base: str, query: str, label: str) -> dict[str, float]:
    url = base.rstrip("/") + "/api/v1/query"
    response = _get(url, query=query)
    try:
        body = response.json()
        if body.get("status") != "success":
            raise SourceError(f"Prometheus at {base} refused {query!r}: {body.get('error', 'unknown error')}")
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in body["data"]["result"]}
    except (ValueError, KeyError, TypeError):
        raise SourceError(f"{url} did not answer a Prometheus query result") from None


def counters_from_prometheus(base_url: str) -> Counters:
    """Counters as a Prometheus server last scraped them, summed over every instance."""
    return Counters(
        f"Prometheus {base_url}",
        _prometheus_vector(base_url, f"sum by (event) ({EVENTS_TOTAL})", "event"),
        _prometheus_vector(base_url, f"sum by (outcome) ({OUTCOMES_TOTAL})", "outcome"),
        _prometheus_vector(base_url, f"sum by (reason) ({EVENTS_LOST_TOTAL})", "reason"),
    )


def reconcile_run(client: str | os.PathLike, events_dir: str | os.PathLike,
                  counters: Callable[[], Counters] | None = None, settle_s: float = 0.0,
                  poll_s: float = 1.0) -> Reconciliation:
    """Reconcile a client record with an event log and, when given, a counter source.

    Prometheus scrapes at intervals, so its counters may trail the log for a scrape or two:
    while only counters disagree, fetch them again for up to ``settle_s`` seconds.
    """
    attempts = read_attempts(client)
    if not attempts:
        raise SourceError(f"client record {client} has no attempts")
    events, totals = read_event_log(events_dir)
    deadline = time.monotonic() + settle_s
    while True:
        result = reconcile(attempts, events, totals, counters() if counters else None)
        drifting = any(m.kind == "counter_drift" for m in result.mismatches)
        if not drifting or time.monotonic() >= deadline:
            return result
        time.sleep(poll_s)
