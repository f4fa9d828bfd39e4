"""Generated Prometheus rules and their promtool tests: shape, golden files, promtool check + test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from toolkit.slo import names
from toolkit.cli import app
from toolkit.slo.rule_tests import generate_rule_tests
from toolkit.slo.rules import RecordingRule, error_budget, burn_threshold, generate_rules, recorded_windows
from toolkit.slo.files import write_rule_files
from toolkit.slo.spec import SloSpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "dashboards" / "prometheus" / "rules"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROFILES = ("prod", "lab")


@pytest.fixture(scope="module")
def spec():
    return load_spec(ROOT / "slo.yaml")


def _rules(spec, profile):
    return {r.record if isinstance(r, RecordingRule) else r.alert: r
            for g in generate_rules(spec, profile).groups for r in g.rules if g.name == "slo-publish-success"}


def _all_rules(spec, profile, slo_name):
    group = next(g for g in generate_rules(spec, profile).groups if g.name == names.rule_group_name(slo_name))
    return list(group.rules)


def test_error_ratio_recorded_for_every_window_and_the_period(spec):
    for profile in PROFILES:
        for slo in spec.slos:
            records = {r.record for r in _all_rules(spec, profile, slo.name) if isinstance(r, RecordingRule)}
            windows = {w for aw in spec.windows_for(profile) for w in (aw.long_s, aw.short_s)}
            windows.add(spec.period_for(slo, profile))
            assert {names.error_ratio_metric(w) for w in windows} <= records
            assert {names.BUDGET_REMAINING_METRIC, names.CURRENT_BURN_RATE_METRIC} <= records
    # lab: every window divided by 60 (1h/5m -> 1m/5s), the 30d period becomes 12h
    lab = {r.record for r in _all_rules(spec, "lab", "publish-success") if isinstance(r, RecordingRule)}
    assert {"slo:sli_error:ratio_rate5s", "slo:sli_error:ratio_rate1m", "slo:sli_error:ratio_rate1h12m",
            "slo:sli_error:ratio_rate12h"} <= lab
    assert recorded_windows(spec, spec.slo("publish-success"), "prod")[-1] == 30 * 86400


def test_thresholds_are_exact_decimals(spec):
    slo = spec.slo("publish-success")
    assert str(error_budget(slo)) == "0.01"
    assert [str(burn_threshold(slo, w).normalize()) for w in spec.windows] == ["0.144", "0.06", "0.03", "0.01"]
    page = _rules(spec, "prod")["PublishSuccessErrorBudgetBurnPage"]
    assert "slo:sli_error:ratio_rate1h{slo=\"publish-success\"} > 0.144" in page.expr
    assert "slo:sli_error:ratio_rate5m{slo=\"publish-success\"} > 0.144" in page.expr
    assert "slo:sli_error:ratio_rate6h{slo=\"publish-success\"} > 0.06" in page.expr
    ticket = _rules(spec, "lab")["PublishSuccessErrorBudgetBurnTicket"]
    assert "ratio_rate24m" in ticket.expr and "ratio_rate1h12m" in ticket.expr and " > 0.01" in ticket.expr
    assert dict(page.labels)["severity"] == "page" and dict(ticket.labels)["severity"] == "ticket"


def test_no_traffic_guard_and_absent_alert(spec):
    rules = _rules(spec, "prod")
    expr = rules["slo:sli_error:ratio_rate5m"].expr
    assert "> 0)" in expr and expr.rstrip().endswith("or vector(0)")
    no_data = rules[names.no_data_alert_name("publish-success")]
    # The SLO's outcome-only counter, which the service creates at 0: absent only when nothing is scraped.
    assert no_data.expr == 'absent(obslab_slo_publish_outcomes_total{outcome=~"succeeded|failed"})'
    assert no_data.for_s == 600  # twice the 5m page short window
    lab_no_data = _rules(spec, "lab")[names.no_data_alert_name("publish-success")]
    assert lab_no_data.for_s == 10


def test_latency_slo_counts_the_threshold_bucket_never_quantiles(spec):
    rules = _all_rules(spec, "prod", "publish-latency")
    text = "\n".join(r.expr for r in rules)
    # Prometheus 2 keeps the bucket label as written ("1.0"), Prometheus 3 normalises it to "1": match both.
    assert 'obslab_publish_processing_seconds_bucket{le=~"1(\\\\.0)?"}' in text
    assert 'le="1.0"' not in text
    assert "obslab_publish_processing_seconds_count" in text
    assert "histogram_quantile" not in text


def test_bucket_label_spellings():
    assert names.le_spellings(1.0) == ("1.0", "1") and names.le_matcher(1.0) == 'le=~"1(\\\\.0)?"'
    assert names.le_spellings(10.0) == ("10.0", "10")
    assert names.le_spellings(0.25) == ("0.25",) and names.le_matcher(0.25) == 'le="0.25"'


def test_latency_threshold_must_be_a_bucket_bound():
    d = yaml.safe_load((ROOT / "slo.yaml").read_text())
    d["slos"][1]["threshold"] = "750ms"
    with pytest.raises(SloSpecError, match=r"x.yaml: slos\[1\].threshold: '750ms' \(0.75s\) is not a bucket boundary"):
        parse_spec(d, source="x.yaml")
    d["slos"][1]["threshold"] = "2500ms"
    assert parse_spec(d).slos[1].threshold_s == 2.5
    d["slos"][1]["prometheus"]["buckets"] = [1.0, 0.5]
    with pytest.raises(SloSpecError, match="strictly increasing"):
        parse_spec(d)


def test_generated_files_are_committed_and_current(spec, tmp_path):
    """Golden: regenerating for the repo's slo.yaml gives the committed files byte for byte."""
    for profile in PROFILES:
        out = tmp_path / profile
        result = CliRunner().invoke(app, ["rules", "--slo", str(ROOT / "slo.yaml"), "--profile", profile,
                                          "-o", str(out)])
        assert result.exit_code == 0, result.output
        fresh = {p.name: p.read_text() for p in out.iterdir()}
        committed = {p.name: p.read_text() for p in (COMMITTED / profile).iterdir()}
        assert sorted(fresh) == sorted(committed), f"files differ for {profile}: run `obslab rules --profile " \
                                                   f"{profile} -o dashboards/prometheus/rules/{profile}`"
        for name in fresh:
            assert fresh[name] == committed[name], (
                f"dashboards/prometheus/rules/{profile}/{name} drifted from the generator; regenerate with "
                f"`obslab rules --profile {profile} -o dashboards/prometheus/rules/{profile}`")


def test_every_alert_has_fire_and_no_fire_checks(spec):
    for profile in PROFILES:
        files = generate_rule_tests(spec, profile)
        checked = {}
        for f in files:
            for g in f.groups:
                for a in g.alerts:
                    checked.setdefault(a.alertname, set()).add(bool(a.firing))
        alerts = {r.alert for g in generate_rules(spec, profile).groups for r in g.rules if hasattr(r, "alert")}
        assert set(checked) == alerts
        assert all(v == {True, False} for v in checked.values()), checked
        # every window pair has a boundary scenario of its own
        names_ = [g.name for f in files for g in f.groups]
        for slo in spec.slos:
            for w in spec.windows_for(profile):
                prefix = f"{slo.name} {w.severity} {w.long}/{w.short} "
                assert any(n.startswith(prefix) and "outage" in n for n in names_)
                assert any(n.startswith(prefix) and "above the threshold" in n for n in names_)
                assert any(n.startswith(prefix) and "below the threshold" in n for n in names_)


@pytest.mark.parametrize("profile", PROFILES)
def test_promtool_check_rules(profile):
    r = subprocess.run([PROMTOOL, "check", "rules", str(COMMITTED / profile / names.RULES_FILE)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 34 rules found" in r.stdout


@pytest.mark.parametrize("profile, suite", [(p, s) for p in PROFILES for s in ("page", "ticket", "values")])
def test_promtool_test_rules(profile, suite):
    path = COMMITTED / profile / names.rule_tests_file(suite)
    r = subprocess.run([PROMTOOL, "test", "rules", path.name], cwd=path.parent, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_promtool_tests_fail_on_a_wrong_threshold(spec, tmp_path):
    """The generated tests can fail: a page threshold off by a little is caught at the boundary."""
    write_rule_files(spec, "lab", tmp_path)
    rules = tmp_path / names.RULES_FILE
    text = rules.read_text()
    # only the expressions (annotations quote the threshold too, and must stay as expected)
    assert text.count('"} > 0.144') == 2
    rules.write_text(text.replace('"} > 0.144', '"} > 0.16'))
    r = subprocess.run([PROMTOOL, "test", "rules", names.rule_tests_file("page")], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "publish-success page 1m/5s x14.4" in r.stdout + r.stderr


def test_promtool_tests_fail_when_rules_match_only_one_bucket_spelling(spec, tmp_path):
    """Rules matching le="1.0" alone (Prometheus 2's spelling) fail the Prometheus 3 spelling's test, and
    only that one."""
    write_rule_files(spec, "lab", tmp_path)
    rules = tmp_path / names.RULES_FILE
    text = rules.read_text()
    matcher = names.le_matcher(spec.slo("publish-latency").threshold_s)
    assert matcher in text
    rules.write_text(text.replace(matcher, 'le="1.0"'))
    values = yaml.safe_load((tmp_path / names.rule_tests_file("values")).read_text())
    normalised = [t for t in values["tests"] if 'spelt le="1" (Prometheus 3 normalised)' in t["name"]]
    assert len(normalised) == 1
    for name, tests, fails in (("normalised", normalised, True),
                               ("rest", [t for t in values["tests"] if t not in normalised], False)):
        (tmp_path / f"{name}.test.yml").write_text(yaml.safe_dump({**values, "tests": tests}))
        r = subprocess.run([PROMTOOL, "test", "rules", f"{name}.test.yml"], cwd=tmp_path, capture_output=True,
                           text=True)
        assert (r.returncode != 0) == fails, (name, r.stdout + r.stderr)


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["rules", "--slo", str(tmp_path / "missing.yaml"), "-o", str(tmp_path)])
    assert r.exit_code == 2 and "missing.yaml: cannot read" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["rules", "--slo", str(ROOT / "slo.yaml"), "--profile", "staging", "-o", str(tmp_path)])
    assert r.exit_code == 2 and "no profile 'staging'" in r.output


@pytest.mark.parametrize("profile", PROFILES)
def test_recorded_budget_is_the_engines_spent_and_remaining(spec, profile):
    """The promtool expectations for budget spent/remaining are the engine's budget_figures on the same
    counts (so the rules that pass them record the engine's definition, not 1 − ratio/budget)."""
    from toolkit.measures.definitions import budget_figures
    from toolkit.slo.rule_tests import _value_checks

    for slo in spec.slos:
        period = spec.period_for(slo, profile)
        eval_s, since_s, ratio = 25.0, 2.5, 0.5
        checks = {v.expr.split("{")[0]: v.samples for v in _value_checks(spec, slo, profile, eval_s, ratio, since_s)}
        engine = budget_figures(slo.name, slo.objective, period, 500, 1000, eval_s - since_s)
        (_, spent), = checks[names.BUDGET_SPENT_METRIC]
        (_, remaining), = checks[names.BUDGET_REMAINING_METRIC]
        assert spent == pytest.approx(engine.spent, rel=1e-12) and remaining == pytest.approx(engine.remaining, rel=1e-12)
        classic = 1 - ratio / float(error_budget(slo))
        assert remaining != pytest.approx(classic)  # before a full period the two differ
        # after a full period of data the engine's remaining is the classic formula
        (_, full), = {v.expr.split("{")[0]: v.samples for v in _value_checks(
            spec, slo, profile, period + 10.0, ratio, 10.0)}[names.BUDGET_REMAINING_METRIC]
        assert full == pytest.approx(classic, rel=1e-12)
        # and the rule says it in PromQL: spent from the period ratio and the covered share, remaining = 1 − spent
        rules = {r.record: r.expr for r in _all_rules(spec, profile, slo.name) if isinstance(r, RecordingRule)}
        assert names.DATA_SINCE_METRIC in rules[names.BUDGET_SPENT_METRIC]
        assert "clamp_max((time() - " in rules[names.BUDGET_SPENT_METRIC]
        assert rules[names.BUDGET_REMAINING_METRIC] == f'1 - {names.BUDGET_SPENT_METRIC}{{slo="{slo.name}"}}'
