"""Compare two cohorts of publish attempts: primary, secondary and guardrail metrics side by side.

Cohorts are chosen by a selector — flag variant (``release=canary``, ``transcode_mode=async``),
app version, service version, any cohort dimension, or a time range (``time=START/END``) —
and are read over the same window. Extraction (DuckDB over the attempts table) is apart from
the pure comparison (``compare_samples``: samples in, a frozen ``CompareResult`` out), which
runs each metric's statistic from ``toolkit.analysis.stats`` and the verdict rules from ``toolkit.analysis.judge``.

JSON shape (``schema: obslab.compare/v1``) is documented in docs/analysis.md; ``obslab story``
reads it.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

import numpy as np

from contract.events import TimeError, format_time, parse_time
from toolkit.events.attempts import filter_attempts, outcome_at_sql
from toolkit.measures.percentiles import PERCENTILE_METHOD
from toolkit.measures.sli import check_scope
from toolkit.analysis.judge import (DEFAULT_CONFIG, JudgeConfig, MetricResult, MetricSpec, Verdict, apply_holm,
                                    classify, judge)
from toolkit.analysis.stats import compare_proportions, compare_quantiles, compare_shift, sample_ratio_mismatch

__all__ = [
    "COMPARE_SCHEMA",
    "SELECTOR_KEYS",
    "CohortSelector",
    "Window",
    "CohortSample",
    "CompareResult",
    "UsersInBoth",
    "srm_units",
    "parse_selector",
    "parse_window",
    "parse_split",
    "extract_cohort",
    "compare_samples",
    "compare_attempts",
    "data_window",
    "scope_attempts",
    "SCOPE_TEXT",
]

COMPARE_SCHEMA = "obslab.compare/v1"
# Attempt columns a selector may name (bounded cohort sets, flags, build).
SELECTOR_KEYS = ("region", "app_version", "network_type", "media_size_bucket", "release", "transcode_mode",
                 "service_version", "error_class")
_VALUE = re.compile(r"^[A-Za-z0-9._:+-]{1,64}$")
SYNTHETIC_MODES = ("include", "exclude", "only")
# The one scope convention of every command (docs/metrics.md): an attempt is placed at its outcome time
# (terminal event, or when it became abandoned) and a scope from S to U holds outcome times in (S, U].
SCOPE_TEXT = "outcome time in (start, end]"
DEFAULT_ABANDON_AFTER_S = 600.0  # toolkit.events.attempts.attempts' default


def scope_attempts(attempts, start: datetime | None, end: datetime | None,
                   abandon_after_s: float = DEFAULT_ABANDON_AFTER_S):
    """The attempts whose outcome time is in (start, end]: ``toolkit.events.attempts.filter_attempts``,
    the same selection as ``obslab sli --since/--until`` and every SLO window."""
    return filter_attempts(attempts, abandon_after_s=abandon_after_s, since=start, until=end)


def _parse_ts(text: str, where: str) -> datetime:
    """Aware UTC datetime of an RFC 3339 time (``contract.events.parse_time``; naive means UTC)."""
    try:
        return parse_time(text, what=where).replace(tzinfo=timezone.utc)
    except TimeError as e:
        raise ValueError(str(e)) from None


def _sql_ts(ts: datetime) -> str:
    # The attempts table holds naive UTC timestamps.
    return "TIMESTAMP '" + ts.astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ") + "'"


@dataclass(frozen=True)
class CohortSelector:
    """``key=value`` conditions (AND) and an optional time range: outcome time in (start, end]."""

    text: str
    conditions: tuple[tuple[str, str], ...] = ()
    start: datetime | None = None
    end: datetime | None = None

    @property
    def has_time_range(self) -> bool:
        return self.start is not None

    def sql(self) -> str:
        """The ``key=value`` conditions; the time range is applied with ``scope_attempts``."""
        parts = [f"{k} = '{v}'" for k, v in self.conditions]
        return " AND ".join(parts) if parts else "TRUE"

    def time_sql(self, abandon_after_s: float = DEFAULT_ABANDON_AFTER_S) -> str:
        """The time range alone as a predicate (breakdown's ``--select time``): outcome time in (start, end]."""
        at = outcome_at_sql(abandon_after_s)
        return f"({at}) > {_sql_ts(self.start)} AND ({at}) <= {_sql_ts(self.end)}"


def parse_selector(text: str, where: str = "selector") -> CohortSelector:
    """``release=canary``, ``app_version=5.4.0,region=us-east``, ``time=START/END`` (ISO 8601)."""
    if not text or not text.strip():
        raise ValueError(f"{where}: empty; expected key=value, e.g. release=canary")
    conditions: list[tuple[str, str]] = []
    start = end = None
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise ValueError(f"{where}: {part!r} is not key=value (keys: {', '.join(SELECTOR_KEYS)}, time)")
        if key == "time":
            a, slash, b = value.partition("/")
            if not slash:
                raise ValueError(f"{where}: time range must be START/END, got {value!r}")
            start, end = _parse_ts(a, where), _parse_ts(b, where)
            if end <= start:
                raise ValueError(f"{where}: time range {value} is {'empty' if end == start else 'inverted'}: "
                                 f"it ends before it starts (a range is {SCOPE_TEXT})")
        elif key in SELECTOR_KEYS:
            if not _VALUE.match(value):
                raise ValueError(f"{where}: {key} value {value!r} has characters outside [A-Za-z0-9._:+-]")
            conditions.append((key, value))
        else:
            raise ValueError(f"{where}: unknown key {key!r}; use one of {', '.join(SELECTOR_KEYS)}, time")
    return CohortSelector(text.strip(), tuple(conditions), start, end)


@dataclass(frozen=True)
class Window:
    """The shared analysis window: attempts whose outcome time is in (start, end] (``scope_attempts``)."""

    start: datetime | None = None
    end: datetime | None = None
    last_s: float | None = None  # "the last N seconds of data", resolved against the data

    @property
    def seconds(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start).total_seconds()


def parse_window(since: str | None, until: str | None, last: str | None) -> Window:
    from contract.durations import parse_duration

    if last and (since or until):
        raise ValueError("--last cannot be combined with --since/--until")
    if last:
        last_s = parse_duration(last)
        if last_s <= 0:
            raise ValueError(f"--last {last!r}: the scope is empty; give a positive duration such as 30m")
        return Window(last_s=last_s)
    try:
        start, end = check_scope(since, until)  # the same checks and words as obslab sli
    except TimeError as e:
        raise ValueError(str(e)) from None
    utc = (lambda t: t.replace(tzinfo=timezone.utc) if t is not None else None)
    return Window(utc(start), utc(end))


def parse_split(text: str | None) -> tuple[float, float] | None:
    """``95:5`` (control:treatment) → shares normalised to 1."""
    if text is None:
        return None
    a, sep, b = text.partition(":")
    try:
        c, t = float(a), float(b)
    except ValueError:
        raise ValueError(f"--expected-split: expected CONTROL:TREATMENT such as 95:5, got {text!r}") from None
    if not sep or c <= 0 or t <= 0:
        raise ValueError(f"--expected-split: both parts must be positive, got {text!r}")
    return c / (c + t), t / (c + t)


@dataclass(frozen=True)
class CohortSample:
    """What the comparison needs from one cohort: counts for rates, values for latencies."""

    label: str
    selector: str
    attempts: int
    users: int
    synthetic_attempts: int
    first_started: str | None
    last_started: str | None
    proportions: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    values: Mapping[str, np.ndarray] = field(default_factory=dict)
    # Per user, for user-level variance: metric → (numerators, denominators) arrays, one entry per
    # user; metric → one user code per value (aligned with ``values``). Optional: without them
    # attempts are treated as independent.
    user_proportions: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    value_users: Mapping[str, np.ndarray] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"label": self.label, "selector": self.selector, "attempts": self.attempts, "users": self.users,
                "synthetic_attempts": self.synthetic_attempts, "first_started": self.first_started,
                "last_started": self.last_started,
                "counts": {k: {"numerator": s, "denominator": n} for k, (s, n) in self.proportions.items()},
                "value_counts": {k: int(v.size) for k, v in self.values.items()}}


@dataclass(frozen=True)
class CompareResult:
    control: CohortSample
    treatment: CohortSample
    window: dict[str, Any]
    synthetic: str
    expected_split: tuple[float, float] | None
    verdict: Verdict
    config: JudgeConfig
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        v = self.verdict
        return {
            "schema": COMPARE_SCHEMA,
            "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "source": self.source,
            "window": self.window,
            "synthetic": self.synthetic,
            "randomization_unit": "user_id",
            "percentile_method": PERCENTILE_METHOD,
            "control": self.control.summary(),
            "treatment": self.treatment.summary(),
            "expected_split": ({"control": self.expected_split[0], "treatment": self.expected_split[1]}
                               if self.expected_split else None),
            "srm": v.srm,
            "metrics": [_metric_dict(r, self.config.metric(r.name)) for r in v.metrics],
            "verdict": {"verdict": v.verdict, "rule": v.rule, "explanation": v.explanation, "score": v.score,
                        "pass_threshold": v.pass_threshold, "marginal_threshold": v.marginal_threshold,
                        "multiplicity": v.multiplicity, "decision_alpha": v.decision_alpha},
            "config": {"alpha": self.config.alpha, "bootstrap_resamples": self.config.bootstrap_resamples,
                       "seed": self.config.seed, "minimums": asdict(self.config.minimums)},
        }


def _clean(x: Any) -> Any:
    """JSON-safe: infinities become None, tuples lists."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def _metric_dict(r: MetricResult, spec: MetricSpec) -> dict[str, Any]:
    d = asdict(r)
    d["unit"] = spec.unit
    d["quantile"] = spec.quantile
    d["selection"] = {k: getattr(spec, k) for k in ("numerator", "denominator", "value", "population")
                      if getattr(spec, k)}
    return _clean(d)


@dataclass(frozen=True)
class UsersInBoth:
    """Users with attempts in both cohorts over the window, and how each one's attempts are ordered by start time."""

    total: int = 0
    # Every treatment attempt started after every control attempt: a sticky per-user rollout's forward move
    # (the percent grew and the user's hash fell into the new share; the flag is read when an upload starts).
    moved: int = 0
    # Their latest attempt is in the treatment (every moved user, and any other whose last attempt was there).
    latest_in_treatment: int = 0
    # False when the cohorts are time ranges (before/after): the order of a user's attempts says nothing then.
    ordered: bool = True

    @property
    def flipping(self) -> int:
        """Users in both not explained by a forward move: a control attempt after a treatment attempt."""
        return self.total - self.moved if self.ordered else self.total


def srm_units(control: CohortSample, treatment: CohortSample, both: UsersInBoth
              ) -> tuple[str, list[int], dict[str, Any]]:
    """The sample-ratio check's unit, observed counts per cohort, and the fields saying which and why. Pure.

    The flag assigns by user hash, sticky, so users are the unit, each counted once, in the cohort of their
    latest attempt in the window (their current assignment): after a rollout step the users who just moved
    from control to the variant have attempts in both, and a sticky rollout only moves users forward. Only
    if more than 1 % of the smaller cohort's users are in both cohorts *without* a forward move (a control
    attempt after a treatment attempt: assignment per attempt) — or the cohorts are time ranges and overlap
    that much — are attempts the unit instead."""
    fields: dict[str, Any] = {"users_in_both": both.total, "users_moved": both.moved if both.ordered else 0,
                              "users_flipping": both.flipping}
    if both.flipping > 0.01 * max(1, min(control.users, treatment.users)):
        why = (f"{both.total} users appear in both cohorts, which are time ranges: attempts are the unit"
               if not both.ordered else
               f"{both.flipping} of the {both.total} users in both cohorts have a control attempt after a treatment "
               f"attempt: assignment is per attempt, so attempts are the unit")
        return "attempts", [control.attempts, treatment.attempts], {"unit": "attempts", **fields, "unit_reason": why}
    in_treatment = both.latest_in_treatment
    observed = [control.users - in_treatment, treatment.users - (both.total - in_treatment)]
    why = "sticky assignment by user hash: users are the unit"
    if both.total:
        why += (f"; the {both.total} users in both cohorts count once, in the cohort of their latest attempt"
                + (f" ({both.moved} moved from control to treatment in the window, as a rollout step moves them)"
                   if both.moved else ""))
    return "users", observed, {"unit": "users", **fields, "unit_reason": why}


def compare_samples(control: CohortSample, treatment: CohortSample, config: JudgeConfig = DEFAULT_CONFIG, *,
                    expected_split: tuple[float, float] | None = None, window: dict[str, Any] | None = None,
                    synthetic: str = "include", source: str = "", users_in_both: UsersInBoth | None = None,
                    decision_alpha: float | None = None, look: str = "") -> CompareResult:
    """Run every configured metric's statistic, classify it, correct for multiplicity (Holm at
    ``decision_alpha``, default the config's alpha; a rollout passes its rollback level, described by
    ``look``, then re-judges with always-valid intervals), and judge; the sample-ratio check (``expected_split``) counts as ``srm_units``
    says, from ``users_in_both`` (none when omitted). Pure."""
    alpha_d = config.alpha if decision_alpha is None else decision_alpha
    results = []
    for spec in config.metrics:
        if spec.kind == "proportion":
            s_c, n_c = control.proportions.get(spec.name, (0, 0))
            s_t, n_t = treatment.proportions.get(spec.name, (0, 0))
            comp = compare_proportions(s_c, n_c, s_t, n_t, alpha=config.alpha, minimums=config.minimums,
                                       control_users=control.user_proportions.get(spec.name),
                                       treatment_users=treatment.user_proportions.get(spec.name))
            t_data = (s_t, n_t)
        else:
            c = control.values.get(spec.name, np.empty(0))
            t = treatment.values.get(spec.name, np.empty(0))
            users = dict(control_users=control.value_users.get(spec.name),
                         treatment_users=treatment.value_users.get(spec.name))
            if spec.kind == "shift":
                comp = compare_shift(c, t, alpha=config.alpha, minimums=config.minimums, **users)
            else:
                comp = compare_quantiles(c, t, spec.quantile, alpha=config.alpha, minimums=config.minimums,
                                         n_resamples=config.bootstrap_resamples, seed=config.seed, **users)
            t_data = t
        results.append(classify(spec, comp, alpha_d, t_data))
    results = apply_holm(results, {m.name: m for m in config.metrics}, alpha_d)
    tested = sum(r.p_value is not None for r in results)
    multiplicity = (f"Holm step-down over the {tested} metric test(s) with a p-value, family-wise α = {alpha_d:.3g}"
                    + (f" ({look})" if look else ""))
    srm = None
    srm_fields: dict[str, Any] = {}
    if expected_split is not None and control.attempts + treatment.attempts > 0:
        _unit, observed, srm_fields = srm_units(control, treatment, users_in_both or UsersInBoth())
        srm = sample_ratio_mismatch(observed, expected_split, threshold=config.srm_threshold)
    verdict = judge(results, config, srm, multiplicity)
    if verdict.srm is not None:
        verdict = replace(verdict, srm={**verdict.srm, **srm_fields})
    return CompareResult(control, treatment, window or {}, synthetic, expected_split, verdict, config, source)


# --------------------------------------------------------------------------- extraction (DuckDB)


def _synthetic_sql(mode: str) -> str:
    if mode not in SYNTHETIC_MODES:
        raise ValueError(f"--synthetic must be one of {', '.join(SYNTHETIC_MODES)}, got {mode!r}")
    return {"include": "TRUE", "exclude": "NOT synthetic", "only": "synthetic"}[mode]


def _iso(ts: Any) -> str | None:
    return format_time(ts)


def run_query(attempts, sql: str, what: str):
    """Run SQL over the attempts relation (as ``a``); a DuckDB error becomes one ValueError line naming ``what``."""
    import duckdb

    try:
        return attempts.query("a", sql)
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{what}: {first}") from None


def data_window(attempts, abandon_after_s: float = DEFAULT_ABANDON_AFTER_S
                ) -> tuple[datetime | None, datetime | None]:
    """First and last outcome time in the attempts relation (UTC), the times scopes select on."""
    at = outcome_at_sql(abandon_after_s)
    row = attempts.query("a", f"SELECT min({at}), max({at}) FROM a").fetchall()[0]
    conv = (lambda t: t.replace(tzinfo=timezone.utc) if t is not None else None)
    return conv(row[0]), conv(row[1])


def resolve_window(attempts, window: Window, abandon_after_s: float = DEFAULT_ABANDON_AFTER_S) -> Window:
    """Turn ``--last`` into absolute bounds (last outcome − DURATION, last outcome]."""
    if window.last_s is None:
        return window
    _, last = data_window(attempts, abandon_after_s)
    if last is None:
        return Window()
    return Window(last - timedelta(seconds=window.last_s), last)


def extract_cohort(attempts, label: str, selector: CohortSelector, window: Window, config: JudgeConfig,
                   synthetic: str = "include", abandon_after_s: float = DEFAULT_ABANDON_AFTER_S) -> CohortSample:
    """Counts and values of one cohort from the attempts relation (a DuckDB relation)."""
    attempts = _cohort_scope(attempts, selector, window, abandon_after_s)
    where = _cohort_where(selector, synthetic)
    props = [m for m in config.metrics if m.kind == "proportion"]
    agg = ["count(*)", "count(DISTINCT user_id)", "count(*) FILTER (WHERE synthetic)",
           "min(started_at)", "max(started_at)"]
    for m in props:
        agg.append(f"count(*) FILTER (WHERE ({m.denominator}) AND ({m.numerator}))")
        agg.append(f"count(*) FILTER (WHERE ({m.denominator}))")
    row = run_query(attempts, f"SELECT {', '.join(agg)} FROM a WHERE {where}",
                    "judge config (a proportion metric's numerator/denominator)").fetchall()[0]
    proportions = {m.name: (int(row[5 + 2 * i]), int(row[6 + 2 * i])) for i, m in enumerate(props)}
    user_proportions: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if props:  # per-user sums: the user-level variance of each rate (stats.design_effect)
        per_user = run_query(attempts, f"SELECT {', '.join(agg[5:])} FROM a WHERE {where} GROUP BY user_id",
                             "judge config (a proportion metric's numerator/denominator)").fetchall()
        arr = np.asarray(per_user, dtype=float).reshape(len(per_user), 2 * len(props))
        user_proportions = {m.name: (arr[:, 2 * i], arr[:, 2 * i + 1]) for i, m in enumerate(props)}
    values: dict[str, np.ndarray] = {}
    value_users: dict[str, np.ndarray] = {}
    for m in config.metrics:
        if m.kind == "proportion":
            continue
        col = m.value
        res = run_query(attempts, f"SELECT {col}::DOUBLE AS v, user_id AS u FROM a WHERE {where} AND ({m.population}) "
                                  f"AND {col} IS NOT NULL", f"judge config metric {m.name}").fetchnumpy()
        values[m.name] = np.asarray(res["v"], dtype=float)
        users = np.asarray(res["u"], dtype=object)
        value_users[m.name] = (np.unique(users.astype(str), return_inverse=True)[1] if users.size
                               else np.empty(0, dtype=np.int64))
    return CohortSample(label, selector.text, int(row[0]), int(row[1]), int(row[2]), _iso(row[3]), _iso(row[4]),
                        proportions, values, user_proportions, value_users)


def compare_attempts(attempts, control: CohortSelector, treatment: CohortSelector, *,
                     window: Window = Window(), config: JudgeConfig = DEFAULT_CONFIG,
                     expected_split: tuple[float, float] | None = None, synthetic: str = "include",
                     source: str = "", abandon_after_s: float = DEFAULT_ABANDON_AFTER_S,
                     decision_alpha: float | None = None, look: str = "") -> CompareResult:
    """Extract both cohorts over the same window (outcome time in (start, end]) and compare them."""
    window = resolve_window(attempts, window, abandon_after_s)
    c = extract_cohort(attempts, "control", control, window, config, synthetic, abandon_after_s)
    t = extract_cohort(attempts, "treatment", treatment, window, config, synthetic, abandon_after_s)
    if control.has_time_range or treatment.has_time_range:
        win = {"kind": "before/after",
               "control": [_iso(control.start), _iso(control.end)] if control.has_time_range else None,
               "treatment": [_iso(treatment.start), _iso(treatment.end)] if treatment.has_time_range else None}
    else:
        win = {"kind": "concurrent", "start": _iso(window.start), "end": _iso(window.end),
               "seconds": window.seconds}
        if window.start is None or window.end is None:
            first = min((x for x in (c.first_started, t.first_started) if x), default=None)
            last = max((x for x in (c.last_started, t.last_started) if x), default=None)
            win.update({"start": win["start"] or first, "end": win["end"] or last})
            if first and last and win["seconds"] is None:
                win["seconds"] = (_parse_ts(win["end"], "end") - _parse_ts(win["start"], "start")).total_seconds()
    return compare_samples(c, t, config, expected_split=expected_split, window=win, synthetic=synthetic,
                           source=source, decision_alpha=decision_alpha, look=look,
                           users_in_both=_users_in_both(attempts, control, treatment, window, synthetic, abandon_after_s))


def _cohort_scope(attempts, selector: CohortSelector, window: Window, abandon_after_s: float):
    """A cohort's attempts in time: its own range (before/after) or the shared window."""
    if selector.has_time_range:
        return scope_attempts(attempts, selector.start, selector.end, abandon_after_s)
    return scope_attempts(attempts, window.start, window.end, abandon_after_s)


def _cohort_where(selector: CohortSelector, synthetic: str) -> str:
    return " AND ".join(f"({p})" for p in (selector.sql(), _synthetic_sql(synthetic)))


def _users_in_both(attempts, control: CohortSelector, treatment: CohortSelector, window: Window,
                   synthetic: str, abandon_after_s: float = DEFAULT_ABANDON_AFTER_S) -> UsersInBoth:
    """Users in both cohorts, and whether each moved forward (every treatment attempt started after every
    control attempt; an attempt without its start event is placed at its last event)."""
    at = "coalesce(started_at, last_event_at)"
    arms = [_cohort_scope(attempts, sel, window, abandon_after_s).filter(_cohort_where(sel, synthetic))
            .aggregate(f"user_id AS {p}_user, min({at}) AS {p}_first, max({at}) AS {p}_last", "user_id")
            .set_alias(f"{p}_arm") for sel, p in ((control, "c"), (treatment, "t"))]
    total, moved, latest_t = arms[0].join(arms[1], "c_user = t_user").aggregate(
        "count(*), count(*) FILTER (WHERE t_first > c_last), count(*) FILTER (WHERE t_last > c_last)").fetchall()[0]
    return UsersInBoth(int(total), int(moved or 0), int(latest_t or 0),
                       ordered=not (control.has_time_range or treatment.has_time_range))


def load_attempts(paths, *, abandon_after_s: float = 600.0, until: str | None = None):
    """(attempts relation, EventSet) from event files, through toolkit.events and its attempts."""
    from toolkit.events.attempts import attempts as build_attempts
    from toolkit.events import load_events

    events = load_events([str(p) for p in paths], until=until)
    return build_attempts(events, abandon_after_s=abandon_after_s), events
