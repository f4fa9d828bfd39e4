"""Fuzz the SLO spec reader: every bad input ends in SloSpecError naming the file and a
line or field path, never another exception (which the CLI would print as a traceback).

Three generators, from far to near the valid spec:
- arbitrary bytes written to a file (encoding, YAML syntax, deep nesting);
- arbitrary YAML-representable documents (wrong shapes everywhere);
- the repo's valid spec with one field replaced, deleted or added (the errors users make).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from fuzz_support import (FUZZ, HOSTILE_FILES, assert_clear_error, assert_hostile_file_is_reader_error, delete_at,
                          documents, field_path, paths, scalars, set_at)

from toolkit.slo.spec import SloSpec, SloSpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
VALID = yaml.safe_load((ROOT / "slo.yaml").read_text())
SOURCE = "fuzz.yaml"

ALL_PATHS = [p for p in paths(VALID) if p]


def _assert_clear_error(err: SloSpecError, source: str) -> None:
    assert_clear_error(str(err), source)


def _parse_or_clear_error(doc, source=SOURCE):
    try:
        spec = parse_spec(doc, source=source)
    except SloSpecError as e:
        _assert_clear_error(e, source)
        return None
    assert isinstance(spec, SloSpec)
    _assert_sane(spec)
    return spec


def _assert_sane(spec: SloSpec) -> None:
    """A spec the reader accepts must be usable: finite, positive windows and periods."""
    for slo in spec.slos:
        assert math.isfinite(slo.period_s) and slo.period_s > 0
        assert 0 < slo.objective < 1
        if slo.threshold_s is not None:
            assert math.isfinite(slo.threshold_s) and slo.threshold_s > 0
    for w in spec.windows:
        assert math.isfinite(w.long_s) and 0 < w.short_s < w.long_s
        w.long, w.short  # formatting must not raise
    for p in spec.profiles.values():
        assert math.isfinite(p.scrape_interval_s) and p.scrape_interval_s > 0
        spec.windows_for(p.name)


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes_in_a_file(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("spec") / "slo.yaml"
    path.write_bytes(data)
    try:
        spec = load_spec(path)
    except SloSpecError as e:
        _assert_clear_error(e, str(path))
    else:
        _assert_sane(spec)


@FUZZ
@given(documents)
def test_arbitrary_documents(doc):
    _parse_or_clear_error(doc)


@FUZZ
@given(st.sampled_from(ALL_PATHS), scalars | documents)
def test_one_field_replaced(path, value):
    doc = copy.deepcopy(VALID)
    set_at(doc, path, value)
    _parse_or_clear_error(doc)


@FUZZ
@given(st.sampled_from(ALL_PATHS))
def test_one_field_deleted_is_named(path):
    doc = copy.deepcopy(VALID)
    delete_at(doc, path)
    try:
        parse_spec(doc, source=SOURCE)
    except SloSpecError as e:
        _assert_clear_error(e, SOURCE)
        # A missing mapping key is named by its own path; a shortened list by its parent.
        if not isinstance(path[-1], int) and path[-1] not in ("abandon_after", "latency", "scrape_interval",
                                                             "description"):
            assert field_path(path) in str(e) or field_path(path[:-1]) in str(e), (path, str(e))


@FUZZ
@given(st.sampled_from([()] + ALL_PATHS), st.text(min_size=1, max_size=12))
def test_unknown_field_added(path, key):
    doc = copy.deepcopy(VALID)
    target = doc
    for k in path:
        target = target[k]
    if not isinstance(target, dict) or key in target or target is doc["profiles"]:
        return  # only mappings with a fixed set of fields (profiles takes any name)
    target[key] = 1
    with pytest.raises(SloSpecError) as e:
        parse_spec(doc, source=SOURCE)
    _assert_clear_error(e.value, SOURCE)


@pytest.mark.parametrize("content, where, what", HOSTILE_FILES)
def test_hostile_file_is_a_spec_error(tmp_path, content, where, what):
    assert_hostile_file_is_reader_error(load_spec, SloSpecError, tmp_path / "slo.yaml", content, where, what)


@pytest.mark.parametrize("value", ["9" * 400 + "s", float("inf"), float("nan")])
def test_non_finite_durations_are_named(value):
    doc = copy.deepcopy(VALID)
    doc["alerting"]["windows"][0]["long"] = value
    with pytest.raises(SloSpecError, match=r"^fuzz\.yaml: alerting\.windows\[0\]\.long: "):
        parse_spec(doc, source=SOURCE)
