"""``promtool test rules`` files for the generated rules (the *generate* step for tests).

For every SLO and every alert window pair the generator builds a scenario —
healthy traffic long enough to fill the severity's longest window, then an outage
with a chosen error share, then recovery — and asks a small reference model
(exact rational arithmetic over the same counter samples, ``_Scenario``) on which
evaluation step the alert starts and stops firing. The test then asserts the
state one step either side of both boundaries. The model is independent of the
PromQL it checks: it computes windowed error ratios from the sample values
directly, as the SRE Workbook defines them.

Two more scenarios per pair hold the threshold itself: a steady error share 2%
above it fires once the long window is full of it, 2% below it does not.

The outage's error share is chosen, where possible, so that the pair under test is
the only one that fires at the boundary: between its threshold and the next higher
threshold of the same severity. Where two pairs of a severity always cross
together (equal budget share, e.g. 1d/2h×3 and 3d/6h×1 for a full outage), the
test name says so.

Float-valued recordings are tested only where the value is exact in binary
floating point (error share 1/2, zero traffic, no data), because promtool
compares sample values exactly; boundary steps whose ratio lies within 1e-9 of a
threshold are avoided.

Series are sampled on a grid that divides every window and start at 0, so
``rate()`` never extrapolates (Prometheus 2.x ranges include both ends, and a
counter is not extrapolated below zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from contract import events as contract
from toolkit.slo import names
from contract.durations import format_duration
from toolkit.slo.rules import burn_threshold, error_budget, generate_rules, no_data_for_s, recorded_windows
from toolkit.slo.spec import AlertWindow, Slo, SloSpec

__all__ = ["RuleTestFile", "TestGroup", "AlertCheck", "ValueCheck", "generate_rule_tests", "rule_tests_document",
           "PER_STEP_EVENTS"]

# Events per input step in alert scenarios; error shares are rounded to 1/PER_STEP_EVENTS.
PER_STEP_EVENTS = 10_000
# Steady error shares this far (relative) either side of a pair's threshold must fire / must not fire.
THRESHOLD_MARGIN = Fraction(2, 100)
# Boundary steps whose ratio is this close (relative) to a threshold are skipped: floats may fall either side.
_TIE_TOLERANCE = Fraction(1, 10**9)


@dataclass(frozen=True)
class AlertCheck:
    eval_s: float
    alertname: str
    firing: tuple[tuple[tuple[str, str], ...], ...]  # label sets expected firing (empty: none)
    annotations: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ValueCheck:
    eval_s: float
    expr: str
    samples: tuple[tuple[str, float], ...]  # (label text, value)


@dataclass(frozen=True)
class TestGroup:
    name: str
    interval_s: float
    series: tuple[tuple[str, str], ...]  # (series selector, promtool values notation)
    alerts: tuple[AlertCheck, ...]
    values: tuple[ValueCheck, ...]


@dataclass(frozen=True)
class RuleTestFile:
    """One promtool test file. Tests are split by evaluation grid: promtool evaluates every rule at every
    step up to the last eval_time, so day-long ticket scenarios get a coarse grid of their own."""

    suite: str  # "page", "ticket", ..., "values"
    profile: str
    evaluation_interval_s: float
    groups: tuple[TestGroup, ...]

    @property
    def filename(self) -> str:
        return names.rule_tests_file(self.suite)


# ---------------------------------------------------------------------------
# the reference model


@dataclass(frozen=True)
class _Phase:
    steps: int
    total: int  # events per step
    bad: int


class _Scenario:
    """Cumulative good/total counters on a step grid and the exact windowed error ratio."""

    def __init__(self, phases: list[_Phase]):
        self.phases = phases
        total, bad = [0], [0]
        for p in phases:
            for _ in range(p.steps):
                total.append(total[-1] + p.total)
                bad.append(bad[-1] + p.bad)
        self.total, self.bad = total, bad

    @property
    def steps(self) -> int:
        return len(self.total) - 1

    def ratio(self, window_steps: int, i: int) -> Fraction:
        # A window reaching before t=0 sees the counters from their first sample, 0: Prometheus does not
        # extrapolate a counter below zero, so rate() is then exactly (value - 0) / window as well.
        j = max(0, i - window_steps)
        dt = self.total[i] - self.total[j]
        return Fraction(0) if dt == 0 else Fraction(self.bad[i] - self.bad[j], dt)


def _pair_fires(sc: _Scenario, i: int, pair: "_Pair") -> bool:
    return sc.ratio(pair.long, i) > pair.threshold and sc.ratio(pair.short, i) > pair.threshold


def _near_tie(sc: _Scenario, i: int, pairs: list["_Pair"]) -> bool:
    for p in pairs:
        for w in (p.long, p.short):
            if abs(sc.ratio(w, i) - p.threshold) <= _TIE_TOLERANCE * p.threshold:
                return True
    return False


@dataclass(frozen=True)
class _Pair:
    window: AlertWindow
    long: int  # in steps
    short: int
    threshold: Fraction


# ---------------------------------------------------------------------------
# series and expected labels


def _first(values: tuple[str, ...]) -> str:
    return values[0]


def _counter_values(per_step: list[int]) -> str:
    """promtool expanding notation for a counter starting at 0 with the given per-step increments."""
    out, value, i = ["0"], 0, 0
    while i < len(per_step):
        j = i
        while j < len(per_step) and per_step[j] == per_step[i]:
            j += 1
        inc, n = per_step[i], j - i
        out.append(f"{value + inc}+{inc}x{n - 1}")
        value += inc * n
        i = j
    return " ".join(out)


def _series(slo: Slo, good_per_step: list[int], total_per_step: list[int], le: str | None = None,
            then: str = "") -> tuple[tuple[str, str], ...]:
    """Input series for an SLO whose good/total counters grow by the given amounts each step.

    ``le`` spells the threshold bucket's label (default: as prometheus_client writes it); ``then`` is
    appended to every series' values (e.g. " stale": the target stopped answering)."""
    bad_per_step = [t - g for g, t in zip(good_per_step, total_per_step)]
    if slo.kind == "ratio":
        # The SLO's outcome-only counter, as the service exports it (every outcome from 0).
        prom = slo.prometheus
        good_outcome = prom["good"][0]
        bad_outcomes = [o for o in prom["total"] if o not in prom["good"]]
        out = [(names.series_selector(prom["counter"], {prom["outcome_label"]: good_outcome}),
                _counter_values(good_per_step) + then)]
        if bad_outcomes:
            out.append((names.series_selector(prom["counter"], {prom["outcome_label"]: bad_outcomes[0]}),
                        _counter_values(bad_per_step) + then))
        return tuple(out)
    hist = slo.prometheus["histogram"]
    labels = {"release": _first(contract.FLAGS["release"]), "transcode_mode": _first(contract.FLAGS["transcode_mode"])}
    return (
        (names.series_selector(f"{hist}_bucket", {"le": le or names.le_label(slo.threshold_s), **labels}),
         _counter_values(good_per_step) + then),
        (names.series_selector(f"{hist}_bucket", {"le": "+Inf", **labels}), _counter_values(total_per_step) + then),
        (names.series_selector(f"{hist}_count", labels), _counter_values(total_per_step) + then),
    )


def _scenario_series(slo: Slo, sc: _Scenario) -> tuple[tuple[str, str], ...]:
    good, total = [], []
    for p in sc.phases:
        good += [p.total - p.bad] * p.steps
        total += [p.total] * p.steps
    return _series(slo, good, total)


def _alert_labels(spec: SloSpec, slo: Slo, alertname: str, severity: str) -> tuple[tuple[str, str], ...]:
    return (("alertname", alertname), (names.SLO_LABEL, slo.name), (names.SERVICE_LABEL, spec.service),
            (names.SEVERITY_LABEL, severity))


# ---------------------------------------------------------------------------
# scenario construction


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _grid_step_s(windows_s: list[float], min_steps: int = 2) -> float:
    """The largest step that divides every window and fits ``min_steps`` steps in the shortest."""
    g = 0
    for w in windows_s:
        g = math.gcd(g, _ms(w))
    k = math.ceil(min_steps * g / _ms(min(windows_s)))
    if g % k:
        k = next(d for d in range(k, g + 1) if g % d == 0)
    return g / k / 1000


def _pairs(spec: SloSpec, slo: Slo, profile: str, severity: str, step_s: float) -> list[_Pair]:
    out = []
    for w in spec.windows_for(profile):
        if w.severity == severity:
            thr = Fraction(burn_threshold(slo, w))
            out.append(_Pair(w, round(w.long_s / step_s), round(w.short_s / step_s), thr))
    return out


def _first_step(sc: _Scenario, start: int, pairs: list[_Pair], firing: bool) -> int | None:
    for i in range(start, sc.steps + 1):
        if any(_pair_fires(sc, i, p) for p in pairs) == firing:
            return i
    return None


def _burn_scenario(pairs: list[_Pair], pair: _Pair, share: Fraction):
    """Healthy warm-up, outage at ``share`` until the alert fires (+2 steps), then healthy until it resolves.

    The grid gives the shortest window two steps (three samples: Prometheus 2.x ranges include both ends);
    promtool evaluates every rule at every step, so a finer grid only costs time."""
    # Healthy traffic for the severity's longest window, so every window of the alert starts full of good
    # events (a shorter history would let a longer pair cross at the same step as the pair under test).
    warm = max(p.long for p in pairs)
    bad = round(share * PER_STEP_EVENTS)
    horizon = 20 * max(p.long for p in pairs)
    probe = _Scenario([_Phase(warm, PER_STEP_EVENTS, 0), _Phase(horizon, PER_STEP_EVENTS, bad)])
    fire = _first_step(probe, warm, pairs, True)
    if fire is None:
        return None
    outage = fire - warm + 2
    recovery = 2 * max(p.long for p in pairs)
    sc = _Scenario([_Phase(warm, PER_STEP_EVENTS, 0), _Phase(outage, PER_STEP_EVENTS, bad),
                    _Phase(recovery, PER_STEP_EVENTS, 0)])
    resolve = _first_step(sc, warm + outage, pairs, False)
    if resolve is None:
        return None
    firing_at_fire = [p for p in pairs if _pair_fires(sc, fire, p)]
    return sc, warm, fire, resolve, firing_at_fire


def _pick_share(pairs: list[_Pair], pair: _Pair):
    """An error share that makes ``pair`` fire first and alone where one exists; else a full outage."""
    higher = sorted(p.threshold for p in pairs if p.threshold > pair.threshold)
    candidates = []
    if higher:
        candidates.append((pair.threshold + higher[0]) / 2)
    candidates.append(Fraction(1))
    results = []
    for share in candidates:
        if share <= pair.threshold:
            continue
        share = Fraction(round(share * PER_STEP_EVENTS), PER_STEP_EVENTS)
        r = _burn_scenario(pairs, pair, share)
        if r is None:
            continue
        if r[4] == [pair]:
            return share, r
        results.append((share, r))
    return results[0] if results else (None, None)


def _burn_group(spec: SloSpec, slo: Slo, profile: str, severity: str, pair: _Pair, pairs: list[_Pair],
                step_s: float, annotations: dict[str, tuple]) -> TestGroup | None:
    share, r = _pick_share(pairs, pair)
    if r is None:
        return None  # the threshold is 1 or more: this pair can never fire
    sc, warm, fire, resolve, firing_at_fire = r
    alertname = names.burn_alert_name(slo.name, severity)
    labels = _alert_labels(spec, slo, alertname, severity)
    ann = annotations[alertname]

    before_fire = fire - 1
    while _near_tie(sc, before_fire, pairs):
        before_fire -= 1
    last_firing = resolve - 1
    after_resolve = resolve
    while _near_tie(sc, after_resolve, pairs):
        after_resolve += 1
    checks = [
        AlertCheck(warm * step_s, alertname, ()),
        AlertCheck(before_fire * step_s, alertname, ()),
        AlertCheck(fire * step_s, alertname, (labels,), ann),
        AlertCheck(last_firing * step_s, alertname, (labels,), ann),
        AlertCheck(after_resolve * step_s, alertname, ()),
    ]
    w = pair.window
    others = [p for p in firing_at_fire if p is not pair]
    together = (" (crosses together with " + ", ".join(f"{p.window.long}/{p.window.short}" for p in others) + ")"
                if others else "")
    name = (f"{slo.name} {severity} {w.long}/{w.short} x{_num(w.burn_rate)}: outage at error share "
            f"{float(share):g} from {format_duration(warm * step_s)} fires at "
            f"{format_duration(fire * step_s)} (ratio > {_num(float(pair.threshold))}), not at "
            f"{format_duration(before_fire * step_s)}; recovery from "
            f"{format_duration((warm + sc.phases[1].steps) * step_s)} resolves at "
            f"{format_duration(after_resolve * step_s)}{together}")
    return TestGroup(name, step_s, _scenario_series(slo, sc), tuple(checks), ())


def _threshold_groups(spec: SloSpec, slo: Slo, severity: str, pair: _Pair, pairs: list[_Pair], step_s: float,
                      annotations: dict[str, tuple]) -> list[TestGroup]:
    """The threshold itself: a steady error share 2% above it fires once the pair's long window is full of
    it; 2% below it does not (and no other pair of the severity fires yet)."""
    if pair.threshold * (1 + THRESHOLD_MARGIN) > 1:
        return []
    alertname = names.burn_alert_name(slo.name, severity)
    labels = _alert_labels(spec, slo, alertname, severity)
    longest = max(p.long for p in pairs)
    groups = []
    for direction, factor in (("above", 1 + THRESHOLD_MARGIN), ("below", 1 - THRESHOLD_MARGIN)):
        bad = round(pair.threshold * factor * PER_STEP_EVENTS)
        expect_fire = direction == "above"
        # The shortest healthy warm-up that keeps the other pairs quiet (promtool time grows with it); busier
        # healthy traffic before the outage dilutes the longer windows when equal budget shares tie the pairs.
        candidates = [(warm, busy) for busy in (1, 2, 4) for warm in sorted({*range(0, longest, pair.long), longest})
                      if warm or busy == 1]
        for warm, busy in candidates:
            sc = _Scenario([_Phase(warm, busy * PER_STEP_EVENTS, 0), _Phase(pair.long, PER_STEP_EVENTS, bad)])
            at = warm + pair.long
            fires = {p.window: _pair_fires(sc, at, p) for p in pairs}
            others = any(f for w, f in fires.items() if w != pair.window)
            if fires[pair.window] == expect_fire and not others and not _near_tie(sc, at, pairs):
                break
        else:
            continue  # this spec's windows do not isolate the threshold; the boundary scenarios still hold
        w = pair.window
        share = Fraction(bad, PER_STEP_EVENTS)
        groups.append(TestGroup(
            f"{slo.name} {severity} {w.long}/{w.short} x{_num(w.burn_rate)}: steady error share {float(share):g} "
            f"({direction} the threshold {_num(float(pair.threshold))}) for {w.long} "
            + (f"after {format_duration(warm * step_s)} of {'' if busy == 1 else f'{busy}x '}healthy traffic "
               if warm else "")
            + f"{'fires' if expect_fire else 'does not fire'}",
            step_s, _scenario_series(slo, sc),
            (AlertCheck(at * step_s, alertname, (labels,) if expect_fire else (),
                        annotations[alertname] if expect_fire else ()),), ()))
    return groups


def _num(x: float) -> str:
    return format(Decimal(repr(float(x))).normalize(), "f")


def _recorded_value_labels(spec: SloSpec, slo: Slo, metric: str) -> str:
    return f'{{__name__="{metric}", {names.SERVICE_LABEL}="{spec.service}", {names.SLO_LABEL}="{slo.name}"}}'


def _value_checks(spec: SloSpec, slo: Slo, profile: str, eval_s: float, error_ratio: float,
                  data_since_s: float | None = None) -> list[ValueCheck]:
    """Every recording of one SLO at one instant when every window's error ratio is ``error_ratio``;
    ``data_since_s`` is when its counters first counted an event (None: never, so no budget figures)."""
    sel = f'{{{names.SLO_LABEL}="{slo.name}"}}'
    budget = float(error_budget(slo))
    period_s = spec.period_for(slo, profile)
    out = []
    for w in recorded_windows(spec, slo, profile):
        metric = names.error_ratio_metric(w)
        out.append(ValueCheck(eval_s, metric + sel, ((_recorded_value_labels(spec, slo, metric), error_ratio),)))
    # The same float operations PromQL performs on exact inputs (IEEE 754 is deterministic); time() is the
    # evaluation's millisecond timestamp / 1000.
    budget_values: tuple = ()
    if data_since_s is not None:
        now_s, since_s = _ms(eval_s) / 1000, _ms(data_since_s) / 1000
        spent = (error_ratio / budget) * min((now_s - since_s) / float(period_s), 1.0)
        budget_values = ((names.DATA_SINCE_METRIC, since_s), (names.BUDGET_SPENT_METRIC, spent),
                         (names.BUDGET_REMAINING_METRIC, 1 - spent))
    else:
        for metric in (names.DATA_SINCE_METRIC, names.BUDGET_SPENT_METRIC, names.BUDGET_REMAINING_METRIC):
            out.append(ValueCheck(eval_s, metric + sel, ()))
    for metric, value in (
        *budget_values,
        (names.CURRENT_BURN_RATE_METRIC, error_ratio / budget),
        (names.OBJECTIVE_METRIC, float(Decimal(repr(slo.objective)))),
        (names.ERROR_BUDGET_METRIC, budget),
    ):
        out.append(ValueCheck(eval_s, metric + sel, ((_recorded_value_labels(spec, slo, metric), value),)))
    return out


def _value_groups(spec: SloSpec, slo: Slo, profile: str, severities: list[str],
                  annotations: dict[str, tuple]) -> list[TestGroup]:
    windows = recorded_windows(spec, slo, profile)
    step_s = _values_eval_interval(spec, profile)
    n = 10
    groups = []
    # Error share exactly 1/2 from t=0 (counters start at 0, so no window extrapolates even before it
    # is full): every ratio is exactly 0.5 in binary floating point.
    half = [PER_STEP_EVENTS // 2] * n
    groups.append(TestGroup(
        f"{slo.name}: error share 1/2 records error ratio 0.5 in every window "
        f"({', '.join(format_duration(w) for w in windows)}), current burn rate, and budget spent and remaining "
        f"over the {format_duration(n * step_s - step_s)} since the first counted event",
        step_s, _series(slo, half, [PER_STEP_EVENTS] * n), (),
        tuple(_value_checks(spec, slo, profile, n * step_s, 0.5, data_since_s=step_s))))
    if slo.kind == "latency":
        # The same on Prometheus 3, which normalises bucket labels on ingestion ("1.0" becomes "1").
        for le in names.le_spellings(slo.threshold_s)[1:]:
            groups.append(TestGroup(
                f'{slo.name}: threshold bucket spelt le="{le}" (Prometheus 3 normalised) records error ratio 0.5 '
                f"in every window too", step_s, _series(slo, half, [PER_STEP_EVENTS] * n, le=le), (),
                tuple(_value_checks(spec, slo, profile, n * step_s, 0.5, data_since_s=step_s))))
    # Series present, no increments: 0/0 must record 0, not NaN, and nothing fires.
    flat = [0] * n
    quiet_alerts = tuple(AlertCheck(n * step_s, names.burn_alert_name(slo.name, s), ()) for s in severities)
    groups.append(TestGroup(
        f"{slo.name}: no traffic records error ratio 0 (not NaN), no budget figures (no data), and fires nothing",
        step_s, _series(slo, flat, flat),
        quiet_alerts + (AlertCheck(n * step_s, names.no_data_alert_name(slo.name), ()),),
        tuple(_value_checks(spec, slo, profile, n * step_s, 0.0))))
    # No series at all: the no-data alert pends for its `for:` and then fires; ratios still record 0.
    for_s = no_data_for_s(spec, profile)
    alertname = names.no_data_alert_name(slo.name)
    eval_step = _values_eval_interval(spec, profile)
    labels = _alert_labels(spec, slo, alertname, "page")
    # An idle service (series at 0) that then stops answering: its series go stale at the first failed scrape,
    # and the no-data alert fires `for:` later, not before.
    stale_s = (n + 1) * step_s
    groups.append(TestGroup(
        f"{slo.name}: idle series that go stale at {format_duration(stale_s)} (target down) fire {alertname} "
        f"{format_duration(for_s)} later, not before",
        step_s, _series(slo, flat, flat, then=" stale"),
        (AlertCheck(stale_s - step_s, alertname, ()),
         AlertCheck(stale_s + for_s - eval_step, alertname, ()),
         AlertCheck(stale_s + for_s, alertname, (labels,), annotations[alertname])), ()))
    groups.append(TestGroup(
        f"{slo.name}: absent source series fire {alertname} after {format_duration(for_s)}, not before",
        eval_step, (('up{job="unrelated"}', "1+0x10"),),
        (AlertCheck(for_s - eval_step, alertname, ()),
         AlertCheck(for_s, alertname, (labels,), annotations[alertname])),
        tuple(_value_checks(spec, slo, profile, for_s, 0.0)[:1])))
    return groups


def _values_eval_interval(spec: SloSpec, profile: str) -> float:
    return _grid_step_s([x for w in spec.windows_for(profile) for x in (w.long_s, w.short_s)])


def generate_rule_tests(spec: SloSpec, profile: str) -> tuple[RuleTestFile, ...]:
    """promtool tests: per severity every alert window pair fires / does not fire at both boundaries;
    plus exact recordings, no traffic and no data (suite "values")."""
    ruleset = generate_rules(spec, profile)
    annotations = {r.alert: r.annotations for g in ruleset.groups for r in g.rules if hasattr(r, "alert")}
    severities = list(dict.fromkeys(w.severity for w in spec.windows))
    files = []
    for severity in severities:
        ws = [x for w in spec.windows_for(profile) if w.severity == severity for x in (w.long_s, w.short_s)]
        step_s = _grid_step_s(ws)
        groups: list[TestGroup] = []
        for slo in spec.slos:
            pairs = _pairs(spec, slo, profile, severity, step_s)
            for pair in pairs:
                g = _burn_group(spec, slo, profile, severity, pair, pairs, step_s, annotations)
                if g is not None:
                    groups.append(g)
                groups.extend(_threshold_groups(spec, slo, severity, pair, pairs, step_s, annotations))
        files.append(RuleTestFile(severity, profile, step_s, tuple(groups)))
    values = [g for slo in spec.slos for g in _value_groups(spec, slo, profile, severities, annotations)]
    files.append(RuleTestFile("values", profile, _values_eval_interval(spec, profile), tuple(values)))
    return tuple(files)


def rule_tests_document(tests: RuleTestFile, rules_file: str = names.RULES_FILE) -> dict:
    """The file ``promtool test rules`` reads."""
    groups = []
    for g in tests.groups:
        alert_tests = [
            {
                "eval_time": format_duration(a.eval_s),
                "alertname": a.alertname,
                "exp_alerts": [
                    {"exp_labels": {k: v for k, v in labels if k != "alertname"},
                     "exp_annotations": dict(a.annotations)}
                    for labels in a.firing
                ],
            }
            for a in g.alerts
        ]
        value_tests = [
            {
                "expr": v.expr,
                "eval_time": format_duration(v.eval_s),
                "exp_samples": [{"labels": labels, "value": value} for labels, value in v.samples],
            }
            for v in g.values
        ]
        group: dict = {"name": g.name, "interval": format_duration(g.interval_s),
                       "input_series": [{"series": s, "values": values} for s, values in g.series]}
        if alert_tests:
            group["alert_rule_test"] = alert_tests
        if value_tests:
            group["promql_expr_test"] = value_tests
        groups.append(group)
    return {
        "rule_files": [rules_file],
        "evaluation_interval": format_duration(tests.evaluation_interval_s),
        "tests": groups,
    }
