"""The synthetic event generator: schema-valid, deterministic per seed, realistic mix, exact sizes."""

import json
from collections import Counter

import jsonschema_rs

from contract.events import event_schema
from toolkit.events import load_events
from toolkit.events.attempts import attempts
from toolkit.events.synth import Effect, SynthConfig, event_dicts, generate, write_jsonl, write_parquet


def test_every_event_matches_the_schema(tmp_path):
    table = generate(SynthConfig(attempts=400), seed=5)
    validator = jsonschema_rs.validator_for(event_schema())
    path = write_jsonl(table, tmp_path / "e.jsonl")
    lines = path.read_text().splitlines()
    assert len(lines) == table.num_rows
    for line in lines:
        validator.validate(json.loads(line))
    assert [json.loads(line) for line in lines] == event_dicts(table)


def test_same_seed_same_events_other_seed_differs():
    a = generate(SynthConfig(attempts=50), seed=1)
    assert a.equals(generate(SynthConfig(attempts=50), seed=1))
    assert not a.equals(generate(SynthConfig(attempts=50), seed=2))


def test_mix_of_outcomes_and_events(tmp_path):
    table = generate(SynthConfig(attempts=3000, cancel_rate=0.05, abandon_rate=0.03), seed=3)
    names = Counter(table.column("event").to_pylist())
    for name in ("chunk_retry", "chunk_failed", "transcode_failed", "publish_failed", "upload_cancelled",
                 "upload_rejected", "flag_changed"):
        assert names[name] > 0, name
    ts = table.column("ts").to_pylist()
    assert ts == sorted(ts)
    path = write_parquet(table, tmp_path / "e.parquet")
    outcomes = Counter(r[0] for r in attempts(load_events([path]), 600).select("outcome").fetchall())
    assert set(outcomes) >= {"succeeded", "failed", "cancelled", "abandoned"}
    assert outcomes["succeeded"] > 0.85 * sum(outcomes.values())


def test_exact_event_count_and_effects():
    assert generate(events=4321, seed=4).num_rows == 4321
    cfg = SynthConfig(attempts=1000, canary_share=0.5, transcode_failure_rate=0.0, publish_failure_rate=0.0,
                      effects=(Effect(where={"release": "canary"}, failure_rate=0.5),))
    rows = event_dicts(generate(cfg, seed=6))
    failed = Counter(r["flags"].get("release") for r in rows if r["event"] == "publish_failed")
    assert failed["canary"] > 150 and failed["stable"] == 0
