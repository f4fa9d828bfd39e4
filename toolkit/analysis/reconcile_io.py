"""The I/O side of reconciliation: read the event log, fetch the service's counters.

``toolkit.analysis.reconcile`` holds the rules; this module turns files and URLs into its inputs.
Counters come either straight from the service's ``/metrics`` pages (parsed with
prometheus_client's text parser; several pages are summed, e.g. the API and the transcoder) or
from a Prometheus server's query API (``sum by (...)`` over every scraped instance).
"""

from __future__ import annotations

import gzip
import json
import os
import time
from datetime import timezone
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Iterable, Iterator

import requests
from prometheus_client.parser import text_string_to_metric_families

from loadtests.record import read_attempts
from toolkit.events import EventsError, Source, connect, resolve_paths
from toolkit.analysis.reconcile import AttemptEvents, Counters, Reconciliation, reconcile
from contract.events import parse_time
from contract.regular_file import NotRegularFileError, open_regular

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


def event_files(directory: str | os.PathLike) -> tuple[Source, ...]:
    """The event log under ``directory`` (or one file), found as ``toolkit.events`` finds it."""
    try:
        return resolve_paths([directory])
    except EventsError as e:
        raise SourceError(str(e)) from None


def _jsonl_events(path: Path) -> Iterator[dict]:
    """Events of one JSONL file. A torn last line (a writer killed mid-write) is not an event and is
    skipped; any other line that is not a JSON event is an error naming file and line, since a
    reconciliation that silently skipped lines would prove nothing."""
    pending_error = None
    try:
        raw_file = open_regular(path)  # a FIFO would block the reader forever
    except OSError as e:
        raise SourceError(str(e) if isinstance(e, NotRegularFileError) else f"{path}: cannot read: {e.strerror or e}"
                          ) from None
    with raw_file, (gzip.open(raw_file) if path.suffix == ".gz" else raw_file) as f:
        for number, raw in enumerate(f, start=1):
            if pending_error:  # the bad line was not the last one: not a torn write
                raise SourceError(pending_error)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise SourceError(f"{path}:{number}: not valid UTF-8 (byte {raw[e.start]:#04x})") from None
            if not line.strip():
                continue
            try:
                event = json.loads(line)
                if not isinstance(event, dict) or not isinstance(event.get("event"), str):
                    raise ValueError
            except ValueError:
                pending_error = f"{path}:{number}: not a JSON event line"
                if line.endswith("\n"):
                    raise SourceError(pending_error) from None
                continue
            yield event


def _parquet_events(path: Path) -> Iterator[dict]:
    con = connect()
    try:
        rows = con.execute("SELECT event, request_id, upload_id FROM read_parquet(?)", [str(path)]).fetchall()
    finally:
        con.close()
    for event, request_id, upload_id in rows:
        yield {"event": event, "request_id": request_id, "upload_id": upload_id}


def _unix_time(ts) -> float | None:
    """An event's ``ts`` as Unix time; None when absent or unreadable (the schema check is `events validate`'s job)."""
    if not isinstance(ts, str):
        return None
    try:
        t = parse_time(ts)
    except ValueError:
        return None
    return t.replace(tzinfo=timezone.utc).timestamp() if t is not None else None


def read_event_log(directory: str | os.PathLike) -> tuple[dict[str, AttemptEvents], Counter]:
    """Every event in the log: per request_id (counts by name, upload IDs) and totals by name."""
    per_request: dict[str, Counter] = defaultdict(Counter)
    uploads: dict[str, set] = defaultdict(set)
    latest: dict[str, float] = {}
    totals: Counter = Counter()
    for source in event_files(directory):
        path = Path(source.path)
        for event in (_parquet_events(path) if source.format == "parquet" else _jsonl_events(path)):
            name = event["event"]
            totals[name] += 1
            request_id = event.get("request_id")
            if request_id:
                per_request[request_id][name] += 1
                if event.get("upload_id"):
                    uploads[request_id].add(event["upload_id"])
                ts = _unix_time(event.get("ts"))
                if ts is not None and ts > latest.get(request_id, float("-inf")):
                    latest[request_id] = ts
    events = {rid: AttemptEvents(rid, dict(counts), frozenset(uploads.get(rid, ())), latest.get(rid)) for rid, counts in
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
                  poll_s: float = 1.0, in_flight_s: float = 0.0) -> Reconciliation:
    """Reconcile a client record with an event log and, when given, a counter source.

    Prometheus scrapes at intervals, so its counters may trail the log for a scrape or two:
    while only counters disagree, fetch them again for up to ``settle_s`` seconds.

    On a running lab (``in_flight_s`` > 0) nothing can be read at one instant: counters are read
    before and after the log (a count between the two agrees), and an attempt whose latest event is
    less than ``in_flight_s`` old but which the client has not recorded yet is in flight (counted,
    not a mismatch).
    """
    running = in_flight_s > 0
    before = counters() if counters and running else None
    # The client record before the log: the client writes an attempt once it has its outcome, so every
    # attempt it recorded by then has all its events in the log read next.
    attempts = read_attempts(client)
    if not attempts:
        raise SourceError(f"client record {client} has no attempts")
    events, totals = read_event_log(events_dir)
    read_at = time.time()
    deadline = time.monotonic() + settle_s
    while True:
        after = counters() if counters else None
        result = reconcile(attempts, events, totals, before or after, after if running else None,
                           in_flight_after=read_at - in_flight_s if running else None)
        drifting = any(m.kind == "counter_drift" for m in result.mismatches)
        if not drifting or time.monotonic() >= deadline:
            return result
        time.sleep(poll_s)

