"""Your own events: cohort dimensions are open strings (any log that follows the contract's
structure is read), guarded against a dimension that is really an identifier."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from contract.events import event_schema
from toolkit.events import TooManyCohortValues, load_events, validate_files
from toolkit.events.synth import SynthConfig, event_dicts, generate

ROOT = Path(__file__).resolve().parents[1]
OBSLAB = str(Path(sys.executable).with_name("obslab"))
SLO = str(ROOT / "slo.yaml")

# Another service's vocabulary: none of these values is in the lab's lists (contract/events.py).
THEIR_REGION = {"us-east": "sa-east", "us-west": "sa-east", "eu-west": "af-south", "ap-south": "me-central"}
THEIR_NETWORK = {"wifi": "cellular", "5g": "cellular", "4g": "ethernet", "3g": "satellite"}


def _their_log(path: Path, *, attempts: int = 400, region_per_attempt: bool = False) -> Path:
    rows = event_dicts(generate(SynthConfig(attempts=attempts), seed=7))
    ids: dict[str, str] = {}
    with open(path, "w") as f:
        for row in rows:
            if row.get("region"):
                row["region"] = (ids.setdefault(row["request_id"], f"r-{len(ids)}") if region_per_attempt
                                 else THEIR_REGION[row["region"]])
            if row.get("network_type"):
                row["network_type"] = THEIR_NETWORK[row["network_type"]]
            if row.get("app_version"):
                row["app_version"] = "7." + row["app_version"]
            if row.get("flags", {}).get("release"):
                row["flags"]["release"] = {"stable": "ga", "canary": "beta"}[row["flags"]["release"]]
            f.write(json.dumps(row) + "\n")
    return path


def run(*args):
    return subprocess.run([OBSLAB, *args], capture_output=True, text=True, timeout=180)


def test_a_log_with_other_cohort_values_is_valid_and_read_whole(tmp_path):
    log = _their_log(tmp_path / "theirs.jsonl")
    report = validate_files([log])
    assert report.ok, report.problems[:3]
    events = load_events([log])
    assert events.skipped == 0 and events.events == report.valid
    got = dict(events.con.execute("SELECT region, count(*) FROM _requests WHERE kind = 0 GROUP BY 1").fetchall())
    assert set(got) == {"sa-east", "af-south", "me-central"}  # read as written, not as NULL
    assert events.cohort_values["network_type"] == 3 and events.cohort_values["release"] == 2


def test_sli_budget_breakdown_compare_work_on_their_log(tmp_path):
    log = str(_their_log(tmp_path / "theirs.jsonl"))
    sli = run("sli", log, "--slo", SLO, "--format", "json", "--by", "region,network_type")
    assert sli.returncode == 0, sli.stderr
    segments = json.loads(sli.stdout)["breakdown"]["segments"]
    seen = {(s["scope"]["segment"]["region"], s["scope"]["segment"]["network_type"]) for s in segments}
    assert ("sa-east", "cellular") in seen and all(r in THEIR_REGION.values() for r, _ in seen)
    budget = run("budget", log, "--slo", SLO, "--format", "json")
    assert budget.returncode == 0, budget.stderr
    bd = run("breakdown", log, "--select", "where", "--where", "network_type = 'cellular'",
             "--dimensions", "region,release", "--format", "json")
    assert bd.returncode == 0, bd.stderr
    assert "sa-east" in bd.stdout and "beta" in bd.stdout
    cmp = run("compare", log, "--control", "release=ga", "--treatment", "release=beta", "--slo", SLO,
              "--format", "json")
    assert cmp.returncode == 0, cmp.stderr
    assert json.loads(cmp.stdout)["verdict"]["verdict"]


def test_a_dimension_that_explodes_is_refused_by_name(tmp_path, monkeypatch):
    log = _their_log(tmp_path / "ids.jsonl", attempts=1200, region_per_attempt=True)
    with pytest.raises(TooManyCohortValues, match=r"cohort dimension 'region' has 1,2\d\d distinct values, "
                                                  r"more than the 1,000 allowed") as e:
        load_events([log])
    assert e.value.column == "region" and e.value.limit == 1000
    assert abs(load_events([log], max_cohort_values=0).cohort_values["region"] - e.value.distinct) < 60  # 0: no limit
    assert load_events([log], max_cohort_values=5000).events > 0
    monkeypatch.setenv("OBSLAB_MAX_COHORT_VALUES", "2000")
    assert load_events([log]).cohort_values["region"] > 1000
    monkeypatch.setenv("OBSLAB_MAX_COHORT_VALUES", "10")
    with pytest.raises(TooManyCohortValues, match="'region'"):
        load_events([log])
    p = run("sli", str(log), "--slo", SLO)
    assert p.returncode != 0 and "cohort dimension 'region'" in p.stderr and "Traceback" not in p.stderr


def test_schema_keeps_the_lab_values_as_examples():
    from contract.events import (
        APP_VERSIONS,
        FLAGS,
        MEDIA_SIZE_BUCKETS,
        NETWORK_TYPES,
        REGIONS,
    )

    props = event_schema()["properties"]
    for field, lab in (("region", REGIONS), ("app_version", APP_VERSIONS), ("network_type", NETWORK_TYPES),
                       ("media_size_bucket", MEDIA_SIZE_BUCKETS)):
        assert "enum" not in props[field] and tuple(props[field]["examples"]) == lab
    for flag, variants in FLAGS.items():
        assert tuple(props["flags"]["properties"][flag]["examples"]) == variants
