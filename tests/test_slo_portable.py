"""Portable SLOs: exports to Sloth, Pyrra and OpenSLO (golden files, each format's schema, PromQL that parses),
imports back (OpenSLO round-trips to an equal spec), and one-line errors naming the file and the field."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.slo.portable import EXPORT_FORMATS, PortableError, export_spec, import_spec
from toolkit.slo.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "slo-export"
SCHEMAS = ROOT / "tests" / "fixtures" / "portable"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
# Each tool's structure as read from its repository (see each file's $comment): Pyrra's is its CRD's own schema.
FORMAT_SCHEMAS = {"sloth": "sloth-prometheus-v1.schema.json", "pyrra": "pyrra-slo-v1alpha1.schema.json",
                  "openslo": "openslo-v1.schema.json"}


@pytest.fixture(scope="module")
def spec():
    return load_spec(ROOT / "slo.yaml")


def _variant():
    """A spec unlike the shipped one: three SLOs, e2e latency, 99.95 %, a 7-day period with its own windows."""
    d = yaml.safe_load((ROOT / "slo.yaml").read_text())
    d["abandon_after"] = "15m"
    for s in d["slos"]:
        s["period"] = "7d"
    d["slos"][0]["objective"] = 0.9995
    d["slos"][1].update(latency="e2e", threshold="250ms")
    extra = copy.deepcopy(d["slos"][0])
    extra.update(name="publish-no-abandon", description="", objective=0.98)
    extra["events"] = {"good": ["succeeded", "cancelled"], "total": ["succeeded", "failed", "cancelled"]}
    extra["prometheus"].update(good=["succeeded"], total=["succeeded", "failed", "abandoned"])
    del extra["description"]
    d["slos"].append(extra)
    d["alerting"]["windows"] = [
        {"severity": "page", "long": "1h", "short": "5m", "budget_consumed": 0.02, "burn_rate": 3.36},
        {"severity": "ticket", "long": "1d", "short": "2h", "budget_consumed": 0.1, "burn_rate": 0.7},
    ]
    d["profiles"] = {"prod": {"time_compression": 1, "scrape_interval": "15s"},
                     "lab": {"time_compression": 12, "scrape_interval": "1s"}}
    return parse_spec(d, source="variant.yaml")


def _docs(text):
    return [d for d in yaml.safe_load_all(text) if d is not None]


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_exports_are_golden(fmt, tmp_path):
    out = tmp_path / f"{fmt}.yaml"
    r = CliRunner().invoke(app, ["slo", "export", "--format", fmt, "--slo", str(ROOT / "slo.yaml"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text() == (GOLDEN / f"{fmt}.yaml").read_text(), (
        f"tests/golden/slo-export/{fmt}.yaml drifted from the exporter; regenerate with "
        f"`obslab slo export --format {fmt} -o tests/golden/slo-export/{fmt}.yaml --force`")


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
@pytest.mark.parametrize("which", ["shipped", "variant"])
def test_exports_validate_against_the_formats_schema(fmt, which, spec):
    schema = json.loads((SCHEMAS / FORMAT_SCHEMAS[fmt]).read_text())
    validator = jsonschema.Draft7Validator(schema)
    docs = _docs(export_spec(spec if which == "shipped" else _variant(), fmt))
    assert docs
    for doc in docs:
        errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]
        assert errors == []


def test_format_schemas_can_fail(spec):
    """The fixture schemas reject what each tool rejects (so the validation above means something)."""
    sloth = _docs(export_spec(spec, "sloth"))[0]
    sloth["slos"][0]["sli"]["events"]["error_query"] = "sum(rate(x[5m]))"  # no {{.window}}
    pyrra = _docs(export_spec(spec, "pyrra"))[0]
    pyrra["spec"]["target"] = 99  # a string in the CRD
    openslo = _docs(export_spec(spec, "openslo"))[1]
    openslo["spec"]["timeWindow"][0]["duration"] = "30s"  # no seconds in duration-shorthand
    for fmt, doc in (("sloth", sloth), ("pyrra", pyrra), ("openslo", openslo)):
        schema = json.loads((SCHEMAS / FORMAT_SCHEMAS[fmt]).read_text())
        assert list(jsonschema.Draft7Validator(schema).iter_errors(doc)), fmt


def test_exports_say_what_does_not_carry_over(spec):
    for fmt in EXPORT_FORMATS:
        text = export_spec(spec, fmt)
        assert "Not carried over" in text and "lab x60" in text
    assert "Events-side definitions" in export_spec(spec, "sloth")
    pyrra = _docs(export_spec(spec, "pyrra"))
    assert all("Events-side" in d["metadata"]["annotations"]["obslab.dev/not-carried"] for d in pyrra)
    variant = export_spec(_variant(), "sloth")
    assert "--slo-period-windows-path" in variant and "--default-slo-period" in variant


def test_exported_promql_parses(spec, tmp_path):
    """Every query the exports hold is PromQL promtool accepts (Sloth's with its {{.window}} filled in)."""
    rules = []
    for s in _docs(export_spec(spec, "sloth"))[0]["slos"]:
        for q in s["sli"]["events"].values():
            rules.append(q.replace("{{.window}}", "5m"))
    for d in _docs(export_spec(spec, "pyrra")):
        for part in d["spec"]["indicator"].values():
            rules += [part[k]["metric"] for k in part if isinstance(part[k], dict)]
    for d in _docs(export_spec(spec, "openslo"))[1:]:
        ratio = d["spec"]["indicator"]["spec"]["ratioMetric"]
        rules += [ratio[k]["metricSource"]["spec"]["query"] for k in ("good", "total")]
    f = tmp_path / "exported.rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "exported", "rules": [
        {"record": f"exported:q{i}", "expr": q} for i, q in enumerate(rules)]}]}))
    r = subprocess.run([PROMTOOL, "check", "rules", str(f)], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(rules) == 12


def test_pyrra_latency_reads_the_threshold_from_an_le_equality(spec):
    latency = _docs(export_spec(spec, "pyrra"))[1]["spec"]["indicator"]["latency"]
    assert latency["success"]["metric"] == 'obslab_publish_processing_seconds_bucket{le="1"}'
    assert latency["total"]["metric"] == "obslab_publish_processing_seconds_count"


@pytest.mark.parametrize("which", ["shipped", "variant"])
def test_openslo_round_trips_to_an_equal_spec(which, spec, tmp_path):
    original = spec if which == "shipped" else _variant()
    exported = tmp_path / "openslo.yaml"
    exported.write_text(export_spec(original, "openslo"))
    out = tmp_path / "slo.yaml"
    r = CliRunner().invoke(app, ["slo", "import", str(exported), "--format", "openslo", "-o", str(out)])
    assert r.exit_code == 0, r.output
    back = load_spec(out)
    assert dataclasses.replace(back, source=original.source) == original


def test_sloth_import_keeps_the_prometheus_side(spec):
    back = parse_spec(import_spec(export_spec(spec, "sloth"), "sloth", "sloth.yaml"))
    assert [(s.name, s.kind, s.objective, s.period_s, s.threshold_s) for s in back.slos] == \
        [(s.name, s.kind, s.objective, s.period_s, s.threshold_s) for s in spec.slos]
    assert back.slos[0].prometheus == spec.slos[0].prometheus
    assert back.slos[1].prometheus["histogram"] == spec.slos[1].prometheus["histogram"]
    # Sloth has no events side: the import assumes the Prometheus outcomes (docs/slo.md says so).
    assert back.slos[0].events_total == ("succeeded", "failed")
    assert back.windows == spec.windows  # Sloth's default 30d windows are the SRE Workbook's, as obslab's


def test_foreign_openslo_without_annotations_imports_with_defaults():
    text = """
apiVersion: openslo/v1
kind: SLO
metadata: {name: checkout-availability}
spec:
  service: checkout
  indicator:
    metadata: {name: checkout-errors}
    spec:
      ratioMetric:
        counter: true
        bad: {metricSource: {type: Prometheus, spec: {query: 'orders_total{outcome=~"failed|abandoned"}'}}}
        total: {metricSource: {type: Prometheus, spec: {query: 'orders_total{outcome=~"succeeded|failed|abandoned"}'}}}
  timeWindow: [{duration: 4w, isRolling: true}]
  budgetingMethod: Occurrences
  objectives: [{targetPercent: 99.5}]
"""
    back = parse_spec(import_spec(text, "openslo", "checkout.yaml"))
    s = back.slos[0]
    assert (back.service, s.objective, s.period_s) == ("checkout", 0.995, 28 * 86400)
    assert s.prometheus["good"] == ("succeeded",) and s.prometheus["counter"] == "orders_total"
    assert back.windows[0].burn_rate == pytest.approx(0.02 * 28 * 24)


@pytest.mark.parametrize("fmt, text, message", [
    ("sloth", "version: prometheus/v1\nservice: s\nslos:\n  - name: a\n    objective: 99\n"
              "    sli: {raw: {error_ratio_query: 'x[{{.window}}]'}}\n",
     "bad.yaml: slos[0].sli: only sli.events can be imported"),
    ("sloth", "version: prometheus/v1\nservice: s\nslos:\n  - name: a\n    objective: 99\n    sli:\n      events:\n"
              "        error_query: sum(rate(x{code=~\"5..\"}[{{.window}}]))\n"
              "        total_query: sum(rate(x[{{.window}}]))\n",
     "bad.yaml: slos[0].sli.events.total_query: cannot import: expected a counter selected by one outcome label"),
    ("sloth", "version: prometheus/v1\nservice: s\nslos:\n  - name: a\n    objective: 99\n    sli:\n      events:\n"
              "        error_query: sum(rate(x{outcome=\"failed\"}[{{.window}}]))\n"
              "        total_query: sum(rate(x{outcome=~\"ok|failed\"}[{{.window}}]))\n",
     "bad.yaml: slos[0].sli.events.total_query: outcome 'ok' is not one of"),
    ("sloth", "version: prometheus/v2\n", "bad.yaml: version: expected 'prometheus/v1'"),
    ("sloth", "version: [\n", "bad.yaml:2: not valid YAML"),
    ("openslo", "apiVersion: openslo/v1alpha\nkind: SLO\n", "bad.yaml: documents[0].apiVersion: expected 'openslo/v1'"),
    ("openslo", "apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: a}\nspec: {budgetingMethod: Timeslices}\n",
     "bad.yaml: documents[0].spec.budgetingMethod: only Occurrences"),
])
def test_bad_input_is_one_line_naming_file_and_field(tmp_path, fmt, text, message):
    src = tmp_path / "bad.yaml"
    src.write_text(text)
    r = CliRunner().invoke(app, ["slo", "import", str(src), "--format", fmt])
    assert r.exit_code == 2
    assert message in " ".join(r.output.split()) and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output


def test_import_validated_by_the_spec_loader(spec, tmp_path):
    """An import obslab could not run (objective 100 %) fails with the loader's field path."""
    src = tmp_path / "openslo.yaml"
    src.write_text(export_spec(spec, "openslo").replace("target: 0.99\n", "target: 1.0\n"))
    r = CliRunner().invoke(app, ["slo", "import", str(src), "--format", "openslo"])
    assert r.exit_code == 2 and "openslo.yaml (imported): slos[0].objective: must be in (0, 1)" in r.output


def test_cli_refuses_to_overwrite_and_unknown_formats(tmp_path):
    out = tmp_path / "slo.yaml"
    out.write_text("keep me\n")
    runner = CliRunner()
    r = runner.invoke(app, ["slo", "export", "--format", "openslo", "--slo", str(ROOT / "slo.yaml"), "-o", str(out)])
    assert r.exit_code == 2 and "already exists" in r.output and out.read_text() == "keep me\n"
    r = runner.invoke(app, ["slo", "export", "--format", "nobl9", "--slo", str(ROOT / "slo.yaml")])
    assert r.exit_code == 2 and "--format: expected one of sloth, pyrra, openslo, got 'nobl9'" in r.output
    r = runner.invoke(app, ["slo", "import", str(out), "--format", "pyrra"])
    assert r.exit_code == 2 and "expected one of openslo, sloth" in r.output


def test_openslo_export_refuses_a_period_it_cannot_write(spec):
    d = yaml.safe_load((ROOT / "slo.yaml").read_text())
    for s in d["slos"]:
        s["period"] = "90s"
    d["alerting"]["windows"] = [{"severity": "page", "long": "60s", "short": "30s", "budget_consumed": 0.5,
                                 "burn_rate": 0.75}]
    d["profiles"] = {"prod": {"time_compression": 1, "scrape_interval": "1s"}}
    with pytest.raises(PortableError, match="period: 1m30s is not expressible as an OpenSLO duration"):
        export_spec(parse_spec(d, source="short.yaml"), "openslo")


@pytest.mark.parametrize("fmt, field, name, rule", [
    ("openslo", "slos[0].name", "Publish_Success", "RFC 1123"),
    ("pyrra", "service", "publish api", "RFC 1123"),
    ("sloth", "slos[1].name", "latency!", "Sloth names"),
])
def test_export_refuses_names_the_format_cannot_hold(tmp_path, fmt, field, name, rule):
    d = yaml.safe_load((ROOT / "slo.yaml").read_text())
    if field == "service":
        d["service"] = name
    else:
        d["slos"][int(field[5])]["name"] = name
    spec_file = tmp_path / "named.yaml"
    spec_file.write_text(yaml.safe_dump(d))
    r = CliRunner().invoke(app, ["slo", "export", "--format", fmt, "--slo", str(spec_file)])
    assert r.exit_code == 2, r.output
    line = " ".join(r.output.split())
    assert f"named.yaml: {field}: {name!r} cannot be exported to {fmt}" in line and rule in line
