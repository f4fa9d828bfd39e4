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
from toolkit.measures.percentiles import PERCENTILE_METHOD
from toolkit.analysis.judge import DEFAULT_CONFIG, JudgeConfig, MetricResult, MetricSpec, Verdict, classify, judge
from toolkit.analysis.stats import compare_proportions, compare_quantiles, compare_shift, sample_ratio_mismatch

__all__ = [
    "COMPARE_SCHEMA",
    "SELECTOR_KEYS",
    "CohortSelector",
    "Window",
    "CohortSample",
    "CompareResult",
    "parse_selector",
    "parse_window",
    "parse_split",
    "extract_cohort",
    "compare_samples",
    "compare_attempts",
    "data_window",
]

COMPARE_SCHEMA = "obslab.compare/v1"
# Attempt columns a selector may name (bounded cohort sets, flags, build).
SELECTOR_KEYS = ("region", "app_version", "network_type", "media_size_bucket", "release", "transcode_mode",
                 "service_version", "error_class")
_VALUE = re.compile(r"^[A-Za-z0-9._:+-]{1,64}$")
SYNTHETIC_MODES = ("include", "exclude", "only")


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
    """``key=value`` conditions (AND) and an optional [start, end) time range on started_at."""

    text: str
    conditions: tuple[tuple[str, str], ...] = ()
    start: datetime | None = None
    end: datetime | None = None

    @property
    def has_time_range(self) -> bool:
        return self.start is not None

    def sql(self) -> str:
        parts = [f"{k} = '{v}'" for k, v in self.conditions]
        if self.start is not None:
            parts.append(f"started_at >= {_sql_ts(self.start)} AND started_at < {_sql_ts(self.end)}")
        return " AND ".join(parts) if parts else "TRUE"


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
                raise ValueError(f"{where}: time range ends before it starts ({value})")
        elif key in SELECTOR_KEYS:
            if not _VALUE.match(value):
                raise ValueError(f"{where}: {key} value {value!r} has characters outside [A-Za-z0-9._:+-]")
            conditions.append((key, value))
        else:
            raise ValueError(f"{where}: unknown key {key!r}; use one of {', '.join(SELECTOR_KEYS)}, time")
    return CohortSelector(text.strip(), tuple(conditions), start, end)


@dataclass(frozen=True)
class Window:
    """The shared analysis window on started_at: [start, end)."""

    start: datetime | None = None
    end: datetime | None = None
    last_s: float | None = None  # "the last N seconds of data", resolved against the data

    def sql(self) -> str:
        parts = []
        if self.start is not None:
            parts.append(f"started_at >= {_sql_ts(self.start)}")
        if self.end is not None:
            parts.append(f"started_at < {_sql_ts(self.end)}")
        return " AND ".join(parts) if parts else "TRUE"

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
        return Window(last_s=parse_duration(last))
    start = _parse_ts(since, "--since") if since else None
    end = _parse_ts(until, "--until") if until else None
    if start and end and end <= start:
        raise ValueError("--until must be after --since")
    return Window(start, end)


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
                        "pass_threshold": v.pass_threshold, "marginal_threshold": v.marginal_threshold},
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


def compare_samples(control: CohortSample, treatment: CohortSample, config: JudgeConfig = DEFAULT_CONFIG, *,
                    expected_split: tuple[float, float] | None = None, window: dict[str, Any] | None = None,
                    synthetic: str = "include", source: str = "", users_in_both: int = 0) -> CompareResult:
    """Run every configured metric's statistic, classify it, and judge. Pure."""
    results = []
    for spec in config.metrics:
        if spec.kind == "proportion":
            s_c, n_c = control.proportions.get(spec.name, (0, 0))
            s_t, n_t = treatment.proportions.get(spec.name, (0, 0))
            comp = compare_proportions(s_c, n_c, s_t, n_t, alpha=config.alpha, minimums=config.minimums)
        else:
            c = control.values.get(spec.name, np.empty(0))
            t = treatment.values.get(spec.name, np.empty(0))
            if spec.kind == "shift":
                comp = compare_shift(c, t, alpha=config.alpha, minimums=config.minimums)
            else:
                comp = compare_quantiles(c, t, spec.quantile, alpha=config.alpha, minimums=config.minimums,
                                         n_resamples=config.bootstrap_resamples, seed=config.seed)
        results.append(classify(spec, comp))
    srm = None
    srm_unit = "users"
    if expected_split is not None and control.attempts + treatment.attempts > 0:
        # Sticky assignment puts each user in one cohort, so users are the unit. If many users
        # sit in both cohorts, assignment is per attempt and attempts are the unit instead.
        if users_in_both > 0.01 * max(1, min(control.users, treatment.users)):
            srm_unit = "attempts"
            observed = [control.attempts, treatment.attempts]
        else:
            observed = [control.users, treatment.users]
        srm = sample_ratio_mismatch(observed, expected_split, threshold=config.srm_threshold)
    verdict = judge(results, config, srm)
    if verdict.srm is not None:
        verdict = replace(verdict, srm={**verdict.srm, "unit": srm_unit, "users_in_both": users_in_both})
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


def data_window(attempts) -> tuple[datetime | None, datetime | None]:
    """First and last started_at in the attempts relation (UTC)."""
    row = attempts.query("a", "SELECT min(started_at), max(started_at) FROM a").fetchall()[0]
    conv = (lambda t: t.replace(tzinfo=timezone.utc) if t is not None else None)
    return conv(row[0]), conv(row[1])


def resolve_window(attempts, window: Window) -> Window:
    """Turn ``--last`` into absolute bounds ending just after the last attempt started."""
    if window.last_s is None:
        return window
    _, last = data_window(attempts)
    if last is None:
        return Window()
    end = last + timedelta(milliseconds=1)
    return Window(end - timedelta(seconds=window.last_s), end)


def extract_cohort(attempts, label: str, selector: CohortSelector, window: Window, config: JudgeConfig,
                   synthetic: str = "include") -> CohortSample:
    """Counts and values of one cohort from the attempts relation (a DuckDB relation)."""
    where = _cohort_where(selector, window, synthetic)
    props = [m for m in config.metrics if m.kind == "proportion"]
    agg = ["count(*)", "count(DISTINCT user_id)", "count(*) FILTER (WHERE synthetic)",
           "min(started_at)", "max(started_at)"]
    for m in props:
        agg.append(f"count(*) FILTER (WHERE ({m.denominator}) AND ({m.numerator}))")
        agg.append(f"count(*) FILTER (WHERE ({m.denominator}))")
    row = run_query(attempts, f"SELECT {', '.join(agg)} FROM a WHERE {where}",
                    "judge config (a proportion metric's numerator/denominator)").fetchall()[0]
    proportions = {m.name: (int(row[5 + 2 * i]), int(row[6 + 2 * i])) for i, m in enumerate(props)}
    values: dict[str, np.ndarray] = {}
    for m in config.metrics:
        if m.kind == "proportion":
            continue
        col = m.value
        res = run_query(attempts, f"SELECT {col}::DOUBLE AS v FROM a WHERE {where} AND ({m.population}) "
                                  f"AND {col} IS NOT NULL", f"judge config metric {m.name}").fetchnumpy()
        values[m.name] = np.asarray(res["v"], dtype=float)
    return CohortSample(label, selector.text, int(row[0]), int(row[1]), int(row[2]), _iso(row[3]), _iso(row[4]),
                        proportions, values)


def compare_attempts(attempts, control: CohortSelector, treatment: CohortSelector, *,
                     window: Window = Window(), config: JudgeConfig = DEFAULT_CONFIG,
                     expected_split: tuple[float, float] | None = None, synthetic: str = "include",
                     source: str = "") -> CompareResult:
    """Extract both cohorts over the same window and compare them."""
    window = resolve_window(attempts, window)
    c = extract_cohort(attempts, "control", control, window, config, synthetic)
    t = extract_cohort(attempts, "treatment", treatment, window, config, synthetic)
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
                           source=source, users_in_both=_users_in_both(attempts, control, treatment, window, synthetic))


def _cohort_where(selector: CohortSelector, window: Window, synthetic: str) -> str:
    scope = [selector.sql(), _synthetic_sql(synthetic)]
    if not selector.has_time_range:
        scope.append(window.sql())
    return " AND ".join(f"({p})" for p in scope)


def _users_in_both(attempts, control: CohortSelector, treatment: CohortSelector, window: Window,
                   synthetic: str) -> int:
    sql = (f"SELECT count(*) FROM (SELECT user_id FROM a WHERE {_cohort_where(control, window, synthetic)} "
           f"INTERSECT SELECT user_id FROM a WHERE {_cohort_where(treatment, window, synthetic)})")
    return int(attempts.query("a", sql).fetchall()[0][0])


def load_attempts(paths, *, abandon_after_s: float = 600.0, until: str | None = None):
    """(attempts relation, EventSet) from event files, through toolkit.events and its attempts."""
    from toolkit.events.attempts import attempts as build_attempts
    from toolkit.events import load_events

    events = load_events([str(p) for p in paths], until=until)
    return build_attempts(events, abandon_after_s=abandon_after_s), events
