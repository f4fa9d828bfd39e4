"""Nothing lost: do the client record, the event log and the Prometheus counters of a run agree?

Pure logic: it takes the three views as data and returns a frozen ``Reconciliation``; reading
files and fetching counters is ``toolkit.analysis.reconcile_io``. The rules (docs/load.md, "Reconciliation")
in short:

1. Per attempt, from every call the client made and the answer it got, the client derives a range
   ``[min, max]`` of events the server must have written for that ``request_id``: an answered call
   is certain (a 200 on a chunk is exactly one ``chunk_uploaded``), an unanswered one (transport
   error, or the user stopped mid-call) may or may not have reached the server (0 or 1).
2. The terminal event must agree with the outcome the client saw: ``published`` needs
   ``publish_succeeded``, ``failed`` ``publish_failed``, ``cancelled`` ``upload_cancelled``.
   ``abandoned`` and ``error`` outcomes (the client could not tell) accept no terminal event or
   one a call it sent could have caused. Never more than one terminal event per attempt.
3. Events carrying this run's request_id prefix but absent from the client record are extra.
4. Over the whole event log, the count of each event equals ``obslab_events_total{event}``, the
   terminal events equal ``obslab_publish_outcomes_total{outcome}``, and no event was counted
   as lost (``obslab_events_lost_total``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from loadtests.record import ClientAttempt
from contract.events import ERROR_CLASSES, TERMINAL_EVENTS

__all__ = [
    "MISMATCH_KINDS",
    "OUTCOME_TERMINAL",
    "COUNTER_OUTCOMES",
    "CHECKED_EVENTS",
    "CHUNK_FAILED_CODES",
    "API_REFUSAL_CODES",
    "PUBLISH_FAILURE_CODES",
    "Bounds",
    "AttemptEvents",
    "Counters",
    "Mismatch",
    "Reconciliation",
    "expected_events",
    "check_attempt",
    "check_counters",
    "reconcile",
]

MISMATCH_KINDS = ("missing_events", "extra_events", "outcome_disagreement", "counter_drift", "lost_events")
# The terminal event each definite client outcome requires.
OUTCOME_TERMINAL = {"published": "publish_succeeded", "failed": "publish_failed", "cancelled": "upload_cancelled"}
# obslab_publish_outcomes_total{outcome} for each terminal event.
COUNTER_OUTCOMES = {"publish_succeeded": "succeeded", "publish_failed": "failed", "upload_cancelled": "cancelled"}
# The events checked per attempt. The transcode events are left to the counter check: how many a
# publish emits depends on the server's path (a transcoder retry, a timeout), not on the client.
CHECKED_EVENTS = ("upload_started", "upload_rejected", "chunk_uploaded", "chunk_failed", "chunk_retry",
                  "upload_completed") + TERMINAL_EVENTS
# error.code of a chunk answer that means "the server failed to store this chunk; retry".
CHUNK_FAILED_CODES = frozenset({"chunk_failed"})
# error.code of a 503 from complete whose publish failed after the upload was claimed (the error class).
PUBLISH_FAILURE_CODES = frozenset(ERROR_CLASSES) - {"chunk_missing"}
# error.code of an answer refused at the API door (an injected API fault), before any event.
API_REFUSAL_CODES = frozenset({"unavailable", "timeout"})
UNBOUNDED = None


@dataclass(frozen=True)
class Bounds:
    """How many of one event an attempt must (``low``) and may (``high``; None = any) have."""

    low: int = 0
    high: int | None = 0

    def __add__(self, other: "Bounds") -> "Bounds":
        high = None if self.high is None or other.high is None else self.high + other.high
        return Bounds(self.low + other.low, high)

    def admits(self, count: int) -> bool:
        return count >= self.low and (self.high is None or count <= self.high)

    def __str__(self) -> str:
        if self.high == self.low:
            return str(self.low)
        return f"{self.low}..{'' if self.high is None else self.high}"


EXACTLY_ONE = Bounds(1, 1)
MAYBE_ONE = Bounds(0, 1)


@dataclass(frozen=True)
class AttemptEvents:
    """The events one request_id has in the log: counts by name and the upload IDs they name."""

    request_id: str
    counts: Mapping[str, int]
    upload_ids: frozenset[str] = frozenset()
    # Unix time of its latest event (None: not known, e.g. read from Parquet): tells an attempt still
    # under way on a running lab from one the client never recorded.
    last_ts: float | None = None


@dataclass(frozen=True)
class Counters:
    """Counter values of one service lifetime, summed over label sets other than the key."""

    source: str
    events_total: Mapping[str, float]
    publish_outcomes: Mapping[str, float]
    events_lost: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Mismatch:
    kind: str
    request_id: str | None
    event: str | None
    expected: str
    found: str
    detail: str

    def __str__(self) -> str:
        who = self.request_id or "(whole log)"
        what = f" {self.event}" if self.event else ""
        return f"{self.kind:<20} {who}{what}: expected {self.expected}, found {self.found} ({self.detail})"


@dataclass(frozen=True)
class Reconciliation:
    """The verdict: every mismatch, plus the counts behind it."""

    attempts: int
    attempts_by_outcome: Mapping[str, int]
    attempts_with_events: int
    run_ids: tuple[str, ...]
    events_in_log: int
    events_of_run: int
    counters_source: str | None
    mismatches: tuple[Mismatch, ...]
    # Attempts of this run with events but not yet in the client record, whose latest event is recent
    # enough that they may still be under way (``in_flight_after``): excluded from the check, counted here.
    in_flight: int = 0

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def by_kind(self) -> dict[str, int]:
        counts = Counter(m.kind for m in self.mismatches)
        return {kind: counts.get(kind, 0) for kind in MISMATCH_KINDS}


def _call_bounds(attempt: ClientAttempt) -> dict[str, Bounds]:
    """Rule 1: the events the calls of one attempt must and may have caused (terminals aside)."""
    bounds: dict[str, Bounds] = {name: Bounds() for name in CHECKED_EVENTS}

    def add(event: str, b: Bounds) -> None:
        bounds[event] = bounds[event] + b

    for call in attempt.calls:
        certain = call.answered
        if call.kind == "create":
            if call.status == 201:
                add("upload_started", EXACTLY_ONE)
            elif not certain:
                add("upload_started", MAYBE_ONE)
            elif 400 <= call.status < 500 and call.status != 404:  # 409: X-Request-ID already used
                add("upload_rejected", MAYBE_ONE)  # an invalid request is recorded, not an attempt
        elif call.kind == "chunk":
            retry = (call.attempt or 1) > 1
            if call.status == 200:
                add("chunk_uploaded", EXACTLY_ONE)
                if retry:
                    add("chunk_retry", EXACTLY_ONE)
            elif call.status == 503 and call.code in CHUNK_FAILED_CODES:
                add("chunk_failed", EXACTLY_ONE)
                if retry:
                    add("chunk_retry", EXACTLY_ONE)
            elif not certain or (call.status >= 500 and call.code not in API_REFUSAL_CODES):
                # No answer, or an unexpected server error: the chunk may have been stored or failed.
                add("chunk_uploaded", MAYBE_ONE)
                add("chunk_failed", MAYBE_ONE)
                if retry:
                    add("chunk_retry", MAYBE_ONE)
            # Else refused before it was looked at (4xx, an injected API error): no chunk events.
        elif call.kind == "complete":
            if call.status in (200, 202) or (call.status == 503 and call.code in PUBLISH_FAILURE_CODES):
                add("upload_completed", EXACTLY_ONE)  # claimed for transcoding (then published or failed)
            elif not certain or (call.status >= 500 and call.code not in API_REFUSAL_CODES):
                add("upload_completed", MAYBE_ONE)
            # Else refused at the door, answered from the upload's state, or failed for a missing
            # chunk before being claimed: no upload_completed from this call.
    # Completing again never completes twice.
    completed = bounds["upload_completed"]
    bounds["upload_completed"] = Bounds(completed.low, min(1, completed.high or 0))
    return bounds


def expected_events(attempt: ClientAttempt) -> dict[str, Bounds]:
    """Rules 1 and 2: bounds for every checked event of an attempt, terminal events included."""
    bounds = _call_bounds(attempt)
    sent = {call.kind for call in attempt.calls}
    possible = set()
    if "complete" in sent:
        possible |= {"publish_succeeded", "publish_failed"}
    if "cancel" in sent:
        possible.add("upload_cancelled")
    required = OUTCOME_TERMINAL.get(attempt.outcome)
    for terminal in TERMINAL_EVENTS:
        if required is not None:
            bounds[terminal] = EXACTLY_ONE if terminal == required else Bounds()
        else:
            bounds[terminal] = MAYBE_ONE if terminal in possible else Bounds()
    if attempt.outcome == "published":
        bounds["upload_completed"] = EXACTLY_ONE
    return bounds


def check_attempt(attempt: ClientAttempt, events: AttemptEvents | None) -> list[Mismatch]:
    """Every way the events of one attempt disagree with what its client saw."""
    counts: Mapping[str, int] = events.counts if events else {}
    rid = attempt.request_id
    bounds = expected_events(attempt)
    problems: list[Mismatch] = []
    for event in CHECKED_EVENTS:
        if event in TERMINAL_EVENTS:
            continue
        count = counts.get(event, 0)
        if not bounds[event].admits(count):
            kind = "missing_events" if count < bounds[event].low else "extra_events"
            problems.append(Mismatch(kind, rid, event, str(bounds[event]), str(count), _why(attempt, event)))
    # Rule 2, the terminal event.
    found = [t for t in TERMINAL_EVENTS for _ in range(counts.get(t, 0))]
    required = OUTCOME_TERMINAL.get(attempt.outcome)
    if len(found) > 1:
        problems.append(Mismatch("extra_events", rid, None, "at most 1 terminal event",
                                 f"{len(found)} ({', '.join(found)})", "an attempt has one terminal outcome"))
    elif required and not found:
        problems.append(Mismatch("missing_events", rid, required, "1", "0", _why(attempt, required)))
    elif required and found[0] != required:
        problems.append(Mismatch("outcome_disagreement", rid, found[0], required, found[0],
                                 _why(attempt, required)))
    elif found and not bounds[found[0]].admits(1):
        problems.append(Mismatch("extra_events", rid, found[0], "0", "1",
                                 _why(attempt, found[0]) + "; no call it made could end the attempt so"))
    if events and attempt.upload_id and events.upload_ids - {attempt.upload_id}:
        others = ", ".join(sorted(events.upload_ids - {attempt.upload_id}))
        problems.append(Mismatch("extra_events", rid, None, f"events of upload {attempt.upload_id} only",
                                 f"events of {others}", "another upload carries this request_id"))
    return problems


def _why(attempt: ClientAttempt, event: str) -> str:
    if event in TERMINAL_EVENTS:
        reason = f": {attempt.reason}" if attempt.reason else ""
        return f"the client saw {attempt.outcome}{reason}"
    kind = "chunk" if event.startswith("chunk") else "complete" if event == "upload_completed" else "create"
    answers = Counter(("no answer" if c.status <= 0 else str(c.status) + (f"/{c.code}" if c.code else ""))
                      for c in attempt.calls if c.kind == kind)
    return f"client {kind} answers: " + (", ".join(f"{a} x{n}" for a, n in sorted(answers.items())) or "none")


def check_counters(event_counts: Mapping[str, int], counters: Counters,
                   counters_after: Counters | None = None) -> list[Mismatch]:
    """Rule 4: the whole event log against the service's counters of the same lifetime.

    On a running service the log and the counters cannot be read at one instant: given the counters
    read before the log (``counters``) and after it (``counters_after``), a count between the two agrees."""
    after = counters_after or counters

    def agrees(in_log: int, before: float, later: float) -> bool:
        return before <= in_log <= later if counters_after is not None else in_log == before

    problems = []
    for event in sorted(set(event_counts) | set(counters.events_total) | set(after.events_total)):
        in_log, counted = event_counts.get(event, 0), counters.events_total.get(event, 0.0)
        later = after.events_total.get(event, 0.0)
        if not agrees(in_log, counted, later):
            shown = f"{counted:g}" if later == counted else f"{counted:g} before and {later:g} after reading the log"
            problems.append(Mismatch("counter_drift", None, event, f"obslab_events_total{{event=\"{event}\"}} = {shown}",
                                     f"{in_log} in the event log", f"{counters.source}"))
    for terminal, outcome in COUNTER_OUTCOMES.items():
        in_log, counted = event_counts.get(terminal, 0), counters.publish_outcomes.get(outcome, 0.0)
        if not agrees(in_log, counted, after.publish_outcomes.get(outcome, 0.0)):
            problems.append(Mismatch("counter_drift", None, terminal,
                                     f"obslab_publish_outcomes_total{{outcome=\"{outcome}\"}} = {counted:g}",
                                     f"{in_log} {terminal} in the event log", f"{counters.source}"))
    for reason, lost in sorted(after.events_lost.items()):
        if lost:
            problems.append(Mismatch("lost_events", None, None, "0 events lost",
                                     f"obslab_events_lost_total{{reason=\"{reason}\"}} = {lost:g}",
                                     f"the service says its event sink lost events ({counters.source})"))
    return problems


def _run_prefixes(attempts: Iterable[ClientAttempt]) -> tuple[str, ...]:
    return tuple(sorted({a.run_id for a in attempts}))


def reconcile(attempts: Iterable[ClientAttempt], events: Mapping[str, AttemptEvents],
              event_counts: Mapping[str, int], counters: Counters | None = None,
              counters_after: Counters | None = None, in_flight_after: float | None = None) -> Reconciliation:
    """All four rules. ``events`` maps request_id to its events (at least every request_id of this
    run); ``event_counts`` counts every event of the whole log by name. On a running lab:
    ``counters_after`` are the counters read after the log (see ``check_counters``), and an attempt
    the client has not recorded yet whose latest event is after ``in_flight_after`` (Unix time) is
    in flight: counted in ``in_flight``, not a mismatch."""
    attempts = list(attempts)
    # Whole-log findings first: they summarise; the per-attempt ones can run to thousands.
    mismatches: list[Mismatch] = (check_counters(event_counts, counters, counters_after)
                                  if counters is not None else [])
    seen: Counter[str] = Counter(a.request_id for a in attempts)
    for request_id, times in sorted(seen.items()):
        if times > 1:
            mismatches.append(Mismatch("extra_events", request_id, None, "1 client record line", f"{times}",
                                       "the client recorded this attempt more than once"))
    for attempt in attempts:
        mismatches.extend(check_attempt(attempt, events.get(attempt.request_id)))
    run_ids = _run_prefixes(attempts)
    prefixes = tuple(f"{run_id}." for run_id in run_ids)
    unrecorded = sorted(rid for rid in events if rid and rid.startswith(prefixes) and rid not in seen)
    in_flight = [rid for rid in unrecorded if in_flight_after is not None and events[rid].last_ts is not None
                 and events[rid].last_ts > in_flight_after]
    orphans = [rid for rid in unrecorded if rid not in set(in_flight)]
    for rid in orphans:
        counts = events[rid].counts
        shown = ", ".join(f"{name}×{n}" for name, n in sorted(counts.items()))
        mismatches.append(Mismatch("extra_events", rid, None, "no events (no such attempt in the client record)",
                                   shown, "the server saw an attempt of this run the client did not record"))
    run_events = sum(sum(e.counts.values()) for rid, e in events.items() if rid and rid.startswith(prefixes))
    return Reconciliation(
        attempts=len(attempts),
        attempts_by_outcome=dict(Counter(a.outcome for a in attempts)),
        attempts_with_events=sum(1 for a in attempts if a.request_id in events),
        run_ids=run_ids,
        events_in_log=sum(event_counts.values()),
        events_of_run=run_events,
        counters_source=counters.source if counters else None,
        mismatches=tuple(mismatches),
        in_flight=len(in_flight),
    )
