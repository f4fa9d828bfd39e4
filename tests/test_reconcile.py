"""Reconciliation rules on constructed data: client calls -> expected events -> mismatches."""

import pytest

from loadtests.record import Call, ClientAttempt
from toolkit.analysis.reconcile import AttemptEvents, Bounds, Counters, expected_events, reconcile

PUBLISHED_EVENTS = {"upload_started": 1, "chunk_uploaded": 2, "chunk_failed": 1, "chunk_retry": 1,
                    "upload_completed": 1, "transcode_started": 1, "transcode_completed": 1,
                    "publish_succeeded": 1}


def attempt(rid="r1.0.0.1", outcome="published", calls=None, upload_id="up_" + "a" * 24):
    if calls is None:
        calls = [Call("create", 201), Call("chunk", 200, 0, 1), Call("chunk", 503, 1, 1, "chunk_failed"),
                 Call("chunk", 200, 1, 2), Call("complete", 200)]
    return ClientAttempt(request_id=rid, run_id=rid.split(".")[0], user="0.0", trace_id="b" * 32,
                         started_at="2026-01-01T00:00:00.000Z", cohort={}, media_size_bytes=1, chunk_count=2,
                         upload_id=upload_id, outcome=outcome, calls=calls)


def events(rid, counts, upload_id="up_" + "a" * 24):
    return AttemptEvents(rid, counts, frozenset({upload_id}))


def totals(*event_sets):
    out = {}
    for e in event_sets:
        for name, n in e.counts.items():
            out[name] = out.get(name, 0) + n
    return out


def counters_for(counts, lost=None, outcomes=None):
    outcome = outcomes or {"succeeded": counts.get("publish_succeeded", 0),
                           "failed": counts.get("publish_failed", 0),
                           "cancelled": counts.get("upload_cancelled", 0)}
    return Counters("http://127.0.0.1:1/metrics", dict(counts), outcome, lost or {})


def test_a_clean_published_attempt_reconciles():
    e = events("r1.0.0.1", PUBLISHED_EVENTS)
    result = reconcile([attempt()], {e.request_id: e}, totals(e), counters_for(totals(e)))
    assert result.ok and result.mismatches == ()
    assert result.attempts == 1 and result.attempts_with_events == 1 and result.events_of_run == 9


def test_expected_events_from_calls():
    bounds = expected_events(attempt())
    assert bounds["chunk_uploaded"] == Bounds(2, 2)
    assert bounds["chunk_failed"] == Bounds(1, 1)
    assert bounds["chunk_retry"] == Bounds(1, 1)
    assert bounds["publish_succeeded"] == Bounds(1, 1) and bounds["publish_failed"] == Bounds(0, 0)


def test_a_lost_chunk_event_is_missing():
    counts = dict(PUBLISHED_EVENTS, chunk_uploaded=1)
    e = events("r1.0.0.1", counts)
    (m,) = reconcile([attempt()], {e.request_id: e}, totals(e)).mismatches
    assert (m.kind, m.request_id, m.event, m.expected, m.found) == ("missing_events", "r1.0.0.1", "chunk_uploaded",
                                                                    "2", "1")


def test_a_duplicated_event_is_extra():
    e = events("r1.0.0.1", dict(PUBLISHED_EVENTS, upload_started=2))
    (m,) = reconcile([attempt()], {e.request_id: e}, totals(e)).mismatches
    assert (m.kind, m.event) == ("extra_events", "upload_started")


def test_a_client_published_but_server_failed_is_an_outcome_disagreement():
    counts = dict(PUBLISHED_EVENTS, publish_succeeded=0, publish_failed=1)
    e = events("r1.0.0.1", counts)
    (m,) = reconcile([attempt()], {e.request_id: e}, totals(e)).mismatches
    assert (m.kind, m.expected, m.found) == ("outcome_disagreement", "publish_succeeded", "publish_failed")


def test_no_terminal_event_for_a_definite_outcome_is_missing():
    counts = dict(PUBLISHED_EVENTS, publish_succeeded=0)
    e = events("r1.0.0.1", counts)
    (m,) = reconcile([attempt()], {e.request_id: e}, totals(e)).mismatches
    assert (m.kind, m.event) == ("missing_events", "publish_succeeded")


def test_two_terminal_events_are_extra():
    e = events("r1.0.0.1", dict(PUBLISHED_EVENTS, publish_failed=1))
    kinds = [(m.kind, m.event) for m in reconcile([attempt()], {e.request_id: e}, totals(e)).mismatches]
    assert kinds == [("extra_events", None)]


def test_an_attempt_with_no_events_at_all_misses_each_of_them():
    mismatches = reconcile([attempt()], {}, {}).mismatches
    assert {m.kind for m in mismatches} == {"missing_events"}
    assert {m.event for m in mismatches} == {"upload_started", "chunk_uploaded", "chunk_failed", "chunk_retry",
                                            "upload_completed", "publish_succeeded"}


def test_a_transport_error_makes_the_call_uncertain_either_way():
    calls = [Call("create", 201), Call("chunk", 0, 0, 1), Call("chunk", 200, 0, 2), Call("complete", 0),
             Call("status", 200)]
    a = attempt(outcome="published", calls=calls)
    bounds = expected_events(a)
    assert bounds["chunk_uploaded"] == Bounds(1, 2) and bounds["chunk_retry"] == Bounds(1, 1)
    assert bounds["chunk_failed"] == Bounds(0, 1)
    for chunk_events in ({"chunk_uploaded": 1, "chunk_retry": 1}, {"chunk_uploaded": 2, "chunk_retry": 1},
                         {"chunk_uploaded": 1, "chunk_failed": 1, "chunk_retry": 1}):
        counts = {"upload_started": 1, "upload_completed": 1, "publish_succeeded": 1, **chunk_events}
        e = events(a.request_id, counts)
        assert reconcile([a], {e.request_id: e}, totals(e)).ok, chunk_events


def test_an_error_outcome_accepts_any_terminal_a_call_could_cause():
    calls = [Call("create", 201), Call("chunk", 200, 0, 1), Call("complete", 0), Call("status", 0)]
    a = attempt(outcome="error", calls=calls)
    base = {"upload_started": 1, "chunk_uploaded": 1}
    for terminal in ({}, {"upload_completed": 1, "publish_succeeded": 1},
                     {"upload_completed": 1, "publish_failed": 1}):
        e = events(a.request_id, {**base, **terminal})
        assert reconcile([a], {e.request_id: e}, totals(e)).ok, terminal
    e = events(a.request_id, {**base, "upload_cancelled": 1})  # it never sent a cancel
    (m,) = reconcile([a], {e.request_id: e}, totals(e)).mismatches
    assert (m.kind, m.event) == ("extra_events", "upload_cancelled")


def test_an_abandoned_attempt_has_no_terminal_event():
    calls = [Call("create", 201), Call("chunk", 503, 0, 1, "chunk_failed")]
    a = attempt(outcome="abandoned", calls=calls)
    e = events(a.request_id, {"upload_started": 1, "chunk_failed": 1})
    assert reconcile([a], {e.request_id: e}, totals(e)).ok
    e = events(a.request_id, {"upload_started": 1, "chunk_failed": 1, "publish_failed": 1})
    assert [m.kind for m in reconcile([a], {e.request_id: e}, totals(e)).mismatches] == ["extra_events"]


def test_a_user_stopped_mid_call_may_have_reached_the_server():
    calls = [Call("create", 201), Call("chunk", 200, 0, 1), Call("complete", -1)]
    a = attempt(outcome="abandoned", calls=calls)
    for extra in ({}, {"upload_completed": 1, "publish_succeeded": 1}):
        e = events(a.request_id, {"upload_started": 1, "chunk_uploaded": 1, **extra})
        assert reconcile([a], {e.request_id: e}, totals(e)).ok


def test_create_never_answered_may_or_may_not_have_started_an_upload():
    a = attempt(outcome="error", calls=[Call("create", 0)], upload_id=None)
    assert reconcile([a], {}, {}).ok
    e = events(a.request_id, {"upload_started": 1})
    assert reconcile([a], {e.request_id: e}, totals(e)).ok
    e = events(a.request_id, {"upload_started": 1, "chunk_uploaded": 1})
    assert [m.event for m in reconcile([a], {e.request_id: e}, totals(e)).mismatches] == ["chunk_uploaded"]


def test_an_injected_api_error_on_a_chunk_stores_nothing():
    calls = [Call("create", 201), Call("chunk", 503, 0, 1, "unavailable"), Call("chunk", 200, 0, 2),
             Call("complete", 200)]
    a = attempt(calls=calls)
    # The second try arrives with X-Chunk-Attempt: 2, so the server records a retry.
    counts = {"upload_started": 1, "chunk_uploaded": 1, "chunk_retry": 1, "upload_completed": 1,
              "publish_succeeded": 1}
    e = events(a.request_id, counts)
    assert reconcile([a], {e.request_id: e}, totals(e)).ok
    e = events(a.request_id, dict(counts, chunk_failed=1))
    assert [m.event for m in reconcile([a], {e.request_id: e}, totals(e)).mismatches] == ["chunk_failed"]


def test_events_of_the_run_missing_from_the_client_record_are_extra():
    e1 = events("r1.0.0.1", PUBLISHED_EVENTS)
    orphan = events("r1.0.0.2", {"upload_started": 1})
    other_run = events("zz.0.0.1", {"upload_started": 1})
    all_events = {x.request_id: x for x in (e1, orphan, other_run)}
    (m,) = reconcile([attempt()], all_events, totals(e1, orphan, other_run)).mismatches
    assert (m.kind, m.request_id) == ("extra_events", "r1.0.0.2")


def test_an_attempt_recorded_twice_is_flagged():
    e = events("r1.0.0.1", PUBLISHED_EVENTS)
    mismatches = reconcile([attempt(), attempt()], {e.request_id: e}, totals(e)).mismatches
    assert [m.detail for m in mismatches] == ["the client recorded this attempt more than once"]


def test_another_upload_with_the_same_request_id_is_extra():
    e = AttemptEvents("r1.0.0.1", PUBLISHED_EVENTS, frozenset({"up_" + "a" * 24, "up_" + "b" * 24}))
    (m,) = reconcile([attempt()], {e.request_id: e}, totals(e)).mismatches
    assert m.kind == "extra_events" and "up_bbbb" in m.found


def test_counter_drift_names_the_event_and_both_numbers():
    e = events("r1.0.0.1", PUBLISHED_EVENTS)
    counts = totals(e)
    counter_values = dict(counts, chunk_uploaded=3)
    result = reconcile([attempt()], {e.request_id: e}, counts, counters_for(counter_values))
    (m,) = result.mismatches
    assert (m.kind, m.event) == ("counter_drift", "chunk_uploaded")
    assert "= 3" in m.expected and m.found == "2 in the event log"


def test_dropped_events_show_as_outcome_drift_and_lost_events():
    # The sink dropped one publish_succeeded: the log and obslab_events_total agree (both never saw
    # it), but the outcome counter and the lost-events counter do not.
    e = events("r1.0.0.1", dict(PUBLISHED_EVENTS, publish_succeeded=0))
    counts = totals(e)
    counters = counters_for(counts, lost={"dropped_fault": 1.0}, outcomes={"succeeded": 1, "failed": 0,
                                                                            "cancelled": 0})
    result = reconcile([attempt()], {e.request_id: e}, counts, counters)
    assert not result.ok
    assert result.by_kind() == {"missing_events": 1, "extra_events": 0, "outcome_disagreement": 0,
                                "counter_drift": 1, "lost_events": 1}


@pytest.mark.parametrize("outcome, terminal", [("failed", "publish_failed"), ("cancelled", "upload_cancelled")])
def test_failed_and_cancelled_need_their_own_terminal(outcome, terminal):
    calls = [Call("create", 201), Call("cancel", 200)] if outcome == "cancelled" else \
        [Call("create", 201), Call("chunk", 200, 0, 1), Call("complete", 503, code="publish_failed"),
         Call("status", 200)]
    a = attempt(outcome=outcome, calls=calls)
    counts = {"upload_started": 1, terminal: 1}
    if outcome == "failed":
        counts.update(chunk_uploaded=1, upload_completed=1)
    e = events(a.request_id, counts)
    assert reconcile([a], {e.request_id: e}, totals(e)).ok


# -- property: a server that follows the contract always reconciles; losing any certain event never does --

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def served_attempts(draw):
    """A client attempt with only answered calls, and the events a contract-following server wrote."""
    rid = "r9.0.0.1"
    calls, events = [Call("create", 201)], {"upload_started": 1}

    def add(name):
        events[name] = events.get(name, 0) + 1

    chunk_count = draw(st.integers(1, 5))
    cancel_at = draw(st.one_of(st.none(), st.integers(0, chunk_count - 1)))
    gave_up = False
    for index in range(chunk_count):
        if index == cancel_at:
            calls.append(Call("cancel", 200))
            add("upload_cancelled")
            return attempt(rid, "cancelled", calls), events
        for try_number in range(1, 5):
            answer = draw(st.sampled_from(["ok", "chunk_failed", "api_refused", "lost"]))
            if answer == "api_refused":
                calls.append(Call("chunk", 503, index, try_number, "unavailable"))
                continue
            if answer == "lost":  # the answer never reached the client: the server did something, or not
                calls.append(Call("chunk", 0, index, try_number))
                effect = draw(st.sampled_from(["chunk_uploaded", "chunk_failed", None]))
                if effect:
                    add(effect)
                    if try_number > 1:
                        add("chunk_retry")
                continue
            if try_number > 1:
                add("chunk_retry")
            if answer == "ok":
                calls.append(Call("chunk", 200, index, try_number))
                add("chunk_uploaded")
                break
            calls.append(Call("chunk", 503, index, try_number, "chunk_failed"))
            add("chunk_failed")
        else:
            gave_up = True  # every try failed: the creator completes anyway
            break
    if gave_up:
        calls.append(Call("complete", 409, code="chunk_missing"))
        add("publish_failed")
        return attempt(rid, "failed", calls), events
    result = draw(st.sampled_from(["published", "failed"]))
    calls.append(Call("complete", 200 if result == "published" else 503,
                      code=None if result == "published" else "dependency_unavailable"))
    add("upload_completed")
    add("transcode_started")
    add("publish_succeeded" if result == "published" else "publish_failed")
    return attempt(rid, result, calls), events


@settings(max_examples=200, deadline=None)
@given(served=served_attempts(), data=st.data())
def test_contract_following_servers_reconcile_and_any_lost_certain_event_is_caught(served, data):
    """Including answers lost in transit, after which the server may or may not have acted."""
    a, counts = served
    e = events(a.request_id, counts)
    assert reconcile([a], {a.request_id: e}, totals(e)).ok
    bounds = expected_events(a)
    # Only events the client is sure of: losing one the server may or may not have written is invisible.
    checked = sorted(name for name in counts if name != "transcode_started" and counts[name] <= bounds[name].low)
    if not checked:
        return
    lost = data.draw(st.sampled_from(checked))
    fewer = dict(counts, **{lost: counts[lost] - 1})
    e = events(a.request_id, fewer)
    result = reconcile([a], {a.request_id: e}, totals(e), counters_for(totals(e)))
    assert not result.ok and result.mismatches[0].event == lost


def test_on_a_running_lab_a_recent_unrecorded_attempt_is_in_flight_and_an_old_one_is_extra():
    done = events("r1.0.0.1", PUBLISHED_EVENTS)
    running = AttemptEvents("r1.0.0.2", {"upload_started": 1, "chunk_uploaded": 1}, frozenset(), last_ts=1000.0)
    stale = AttemptEvents("r1.0.0.3", {"upload_started": 1}, frozenset(), last_ts=500.0)
    log = {e.request_id: e for e in (done, running, stale)}
    result = reconcile([attempt()], log, totals(done, running, stale), in_flight_after=900.0)
    assert result.in_flight == 1
    assert [(m.kind, m.request_id) for m in result.mismatches] == [("extra_events", "r1.0.0.3")]
    # Without the running-lab rule both are extra, as on a finished run.
    assert reconcile([attempt()], log, totals(done, running, stale)).in_flight == 0
    assert len(reconcile([attempt()], log, totals(done, running, stale)).mismatches) == 2


def test_counters_read_before_and_after_the_log_bracket_it():
    e = events("r1.0.0.1", PUBLISHED_EVENTS)
    log_totals = totals(e)
    before = counters_for({k: v - 1 if k == "chunk_uploaded" else v for k, v in log_totals.items()})
    after = counters_for({k: v + 3 if k == "chunk_uploaded" else v for k, v in log_totals.items()})
    assert reconcile([attempt()], {e.request_id: e}, log_totals, before, after).ok
    # One instant only: the same counters disagree with the log.
    (m,) = reconcile([attempt()], {e.request_id: e}, log_totals, before).mismatches
    assert (m.kind, m.event) == ("counter_drift", "chunk_uploaded")
    # A log above the later reading is drift even with a bracket.
    (m,) = reconcile([attempt()], {e.request_id: e}, log_totals, before, before).mismatches
    assert m.kind == "counter_drift"
