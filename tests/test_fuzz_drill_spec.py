"""Fuzz the drill YAML reader: every bad drill ends in DrillSpecError naming the file and a
line or field path, never another exception (a traceback in `obslab drill`)."""

from __future__ import annotations

import copy
import math

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from fuzz_support import (FUZZ, HOSTILE_FILES, assert_clear_error, assert_hostile_file_is_reader_error, delete_at,
                          documents, paths, scalars, set_at)
from toolkit.drills.schema import Drill, DrillSpecError, catalogue_dir, load_drill, parse_drill

CATALOGUE = sorted(catalogue_dir().glob("*.yaml"))
BASES = {p.name: yaml.safe_load(p.read_text()) for p in CATALOGUE}
# (file name, path) for every value in every shipped drill: mutations start from real drills.
ALL_PATHS = [(name, p) for name, doc in BASES.items() for p in paths(doc) if p]


def _parse_or_clear_error(doc, source):
    try:
        drill = parse_drill(doc, source=source)
    except DrillSpecError as e:
        assert_clear_error(str(e), source)
        return None
    assert isinstance(drill, Drill)
    # An accepted drill must be runnable: finite, positive timings.
    assert math.isfinite(drill.setup.duration_s) and drill.setup.duration_s > 0
    return drill


def test_catalogue_is_the_valid_base():
    assert len(BASES) >= 5
    for path in CATALOGUE:
        load_drill(path)


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes_in_a_file(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("drill") / "some-drill.yaml"
    path.write_bytes(data)
    try:
        load_drill(path)
    except DrillSpecError as e:
        assert_clear_error(str(e), str(path))


@FUZZ
@given(documents)
def test_arbitrary_documents(doc):
    _parse_or_clear_error(doc, "some-drill.yaml")


@FUZZ
@given(st.sampled_from(ALL_PATHS), scalars | documents)
def test_one_field_replaced(where, value):
    name, path = where
    doc = copy.deepcopy(BASES[name])
    set_at(doc, path, value)
    _parse_or_clear_error(doc, name)


@FUZZ
@given(st.sampled_from(ALL_PATHS))
def test_one_field_deleted(where):
    name, path = where
    doc = copy.deepcopy(BASES[name])
    delete_at(doc, path)
    _parse_or_clear_error(doc, name)


@FUZZ
@given(st.sampled_from([(n, ()) for n in BASES] + ALL_PATHS), st.text(min_size=1, max_size=12))
def test_unknown_field_added(where, key):
    name, path = where
    doc = copy.deepcopy(BASES[name])
    target = doc
    for k in path:
        target = target[k]
    if not isinstance(target, dict) or key in target:
        return
    target[key] = 1
    _parse_or_clear_error(doc, name)


@pytest.mark.parametrize("content, where, what", HOSTILE_FILES)
def test_hostile_file_is_a_drill_error(tmp_path, content, where, what):
    assert_hostile_file_is_reader_error(load_drill, DrillSpecError, tmp_path / "some-drill.yaml", content, where, what)
