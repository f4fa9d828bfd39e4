"""Load generator pieces without Locust: cohort mix, settings from the environment, client record."""

import json
import os
import random
from collections import Counter

import pytest

from loadtests import settings
from loadtests.cohorts import DEFAULT_MIX, MEDIA_SIZES, CohortMix, CohortMixError, chunk_pause_s, parse_mix
from loadtests.identity import traceparent, user_rng
from loadtests.record import AttemptRecorder, Call, ClientAttempt, RecordError, read_attempts
from contract.events import APP_VERSIONS, MEDIA_SIZE_BUCKETS, NETWORK_TYPES, REGIONS, media_size_bucket


def test_cohorts_follow_the_weights_and_stay_in_the_contract():
    rng = random.Random(5)
    cohorts = [CohortMix().draw(rng) for _ in range(20_000)]
    networks = Counter(c.network_type for c in cohorts)
    for value, weight in DEFAULT_MIX["network_type"].items():
        assert networks[value] / len(cohorts) == pytest.approx(weight, abs=0.015)
    for c in cohorts[:2000]:
        assert c.region in REGIONS and c.app_version in APP_VERSIONS
        assert c.network_type in NETWORK_TYPES and c.media_size_bucket in MEDIA_SIZE_BUCKETS
        assert media_size_bucket(c.media_size_bytes) == c.media_size_bucket
        low, high = MEDIA_SIZES[c.media_size_bucket][1]
        assert low <= c.chunk_count <= high <= 64


def test_same_seed_same_cohorts():
    def draws(seed, user):
        rng = user_rng(seed, "creator", 0, user)
        return [CohortMix().draw(rng) for _ in range(5)]

    assert draws(9, 3) == draws(9, 3)
    assert draws(9, 3) != draws(9, 4) and draws(9, 3) != draws(10, 3)


def test_mix_override_replaces_only_the_named_dimension():
    mix = parse_mix('{"network_type": {"3g": 1}}')
    rng = random.Random(1)
    drawn = [mix.draw(rng) for _ in range(200)]
    assert {c.network_type for c in drawn} == {"3g"}
    assert len({c.region for c in drawn}) == 4


@pytest.mark.parametrize("text, message", [
    ('{"network": {"3g": 1}}', "unknown cohort dimension 'network'"),
    ('{"network_type": {"2g": 1}}', "unknown network_type value"),
    ('{"network_type": {"3g": 0}}', "positive sum"),
    ("{not json", "not JSON"),
])
def test_bad_mixes_name_the_problem(text, message):
    with pytest.raises(CohortMixError, match=message):
        parse_mix(text)


def test_slower_networks_pause_longer_and_pace_zero_never_pauses():
    rng = random.Random(1)
    wifi = sum(chunk_pause_s("wifi", 65536, 1.0, rng) for _ in range(100))
    slow = sum(chunk_pause_s("3g", 65536, 1.0, rng) for _ in range(100))
    assert slow > 10 * wifi
    assert chunk_pause_s("3g", 65536, 0.0, rng) == 0.0


def test_traceparent_is_w3c_and_samples_by_trace_id():
    tp = traceparent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1.0)
    assert tp == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert traceparent("4bf92f3577b34da6ffffffffffffffff", "00f067aa0ba902b7", 0.5).endswith("-00")
    assert traceparent("4bf92f3577b34da60000000000000001", "00f067aa0ba902b7", 0.5).endswith("-01")


def test_settings_defaults_and_overrides():
    s = settings.from_env({})
    assert s.retry.kind == "backoff" and s.retry.max_attempts == 4 and s.cancel_rate == 0.02
    assert len(s.run_id) == 8 and s.shape == "none"
    s = settings.from_env({
        settings.RETRY_POLICY: "immediate", settings.RETRY_MAX_ATTEMPTS: "2", settings.CANCEL_RATE: "0.5",
        settings.THINK_TIME: "100ms-1s", settings.SHAPE: "phased", settings.PHASES: "10s:5,10s:1",
        settings.RUN_ID: "abcd1234", settings.SEED: "42",
    })
    assert (s.retry.kind, s.retry.max_attempts, s.cancel_rate) == ("immediate", 2, 0.5)
    assert s.think_time_s == (0.1, 1.0) and s.shape == "phased" and s.run_id == "abcd1234" and s.seed == 42


@pytest.mark.parametrize("env, message", [
    ({settings.CANCEL_RATE: "2"}, "OBSLAB_LOAD_CANCEL_RATE='2' must be between 0.0 and 1.0"),
    ({settings.RETRY_POLICY: "forever"}, "OBSLAB_LOAD_RETRY_POLICY: unknown retry policy 'forever'"),
    ({settings.SEED: "x"}, "OBSLAB_LOAD_SEED='x' is not an integer"),
    ({settings.SHAPE: "square"}, "OBSLAB_LOAD_SHAPE='square'"),
    ({settings.SHAPE: "phased"}, "OBSLAB_LOAD_PHASES"),
    ({settings.THINK_TIME: "2s-1s"}, "maximum is below the minimum"),
    ({settings.RUN_ID: "has space"}, "letters or digits"),
    ({settings.RETRY_BASE: "soon"}, "OBSLAB_LOAD_RETRY_BASE"),
    ({settings.CREATOR_WEIGHT: "0", settings.VIEWER_WEIGHT: "0"}, "no user would run"),
])
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(settings.SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings.from_env(env)


def _attempt(rid="run1.0.1.1", outcome="published", started="2026-01-01T00:00:00.000Z"):
    return ClientAttempt(request_id=rid, run_id="run1", user="0.1", trace_id="a" * 32, started_at=started,
                         cohort={"region": "us-east"}, media_size_bytes=1, chunk_count=1, outcome=outcome,
                         calls=[Call("create", 201), Call("chunk", 503, 0, 1, "chunk_failed"), Call("chunk", 200, 0, 2)])


def test_record_round_trips_and_each_process_gets_its_own_file(tmp_path):
    recorder = AttemptRecorder(tmp_path)
    recorder.write(_attempt("run1.0.1.2", started="2026-01-01T00:00:01.000Z"))
    pid = os.fork()
    if pid == 0:  # a forked Locust worker process writes its own file
        recorder.write(_attempt("run1.0.2.1"))
        os._exit(0)
    os.waitpid(pid, 0)
    recorder.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and all(f.startswith("attempts-") and f.endswith(".jsonl") for f in files)
    attempts = read_attempts(tmp_path)
    assert [a.request_id for a in attempts] == ["run1.0.2.1", "run1.0.1.2"]  # start order
    assert attempts[0].calls[1] == Call("chunk", 503, 0, 1, "chunk_failed")
    line = json.loads((tmp_path / files[0]).read_text().splitlines()[0])
    assert line["format"] == "obslab-client-attempt/1"


def test_a_bad_record_line_is_named_by_file_and_line(tmp_path):
    path = tmp_path / "client.jsonl"
    path.write_text(_attempt().to_line() + '{"format": "obslab-client-attempt/1", "outcome": "maybe"}\n')
    with pytest.raises(RecordError, match=r"client.jsonl:2: not a client attempt record"):
        read_attempts(path)
    with pytest.raises(RecordError, match="does not exist"):
        read_attempts(tmp_path / "nope.jsonl")
