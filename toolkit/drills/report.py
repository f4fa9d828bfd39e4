"""The drill report: markdown with PNG plots, measured impact, the grade and a STAR debrief.

Everything in it is measured from the run's events and metric samples over the
fault's actual window (from ``truth.json``); each figure states its statistic,
window, segment and count. Every time and duration is in the run's **scenario time** (its
clock: wall seconds since the start less the pauses, × the speed), labelled so, with the wall
time in brackets where it differs; the alert windows are the lab profile's at the run's speed
(``toolkit.measures.definitions.alert_timing``), named as the briefing names them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping

from toolkit.drills.causes import cause_label
from toolkit.drills.clock import ScenarioClock
from toolkit.drills.grader import HINT_COST, Answer, Grade, grade
from toolkit.drills.learner_path import compare_paths, expert_steps, learner_steps
from toolkit.drills.measure import (Attempt, DrillEvents, Impact, MetricSample, Window, drill_outcomes,
                                    measure_impact, percentile, read_drill_events, read_metric_samples)
from toolkit.drills.pages import PageVerdict, engine_first_page, page_verdict, prometheus_first_fire
from toolkit.drills.schema import Drill, find_drill
from toolkit.drills.state import RunDir, RunState
from contract.durations import format_duration
from toolkit.measures.definitions import (AlertTiming, BudgetFigures, Outcomes, alert_state, alert_timing,
                                         burn_rate_series, evaluation_times, format_percent, period_budget, sli_ratio,
                                         success_definition, window_counts)
from toolkit.slo.names import burn_alert_name
from toolkit.slo.scenario import at_speed
from toolkit.slo.spec import SloSpec, load_spec

__all__ = ["ReportData", "build_report_data", "render_markdown", "write_report", "default_spec", "SPEC_ENV"]

SPEC_ENV = "OBSLAB_SLO_SPEC"
_PLOT_BINS = 40


def default_spec(state: RunState | None = None) -> SloSpec:
    """The SLO spec: the one the run's lab ran with (``lab.json``), else $OBSLAB_SLO_SPEC, else
    ./slo.yaml, else the one next to the toolkit package — so the report measures what the
    lab's dashboard and Prometheus rules measure."""
    candidates = [state.slo_spec if state is not None else None, os.environ.get(SPEC_ENV), "slo.yaml",
                  str(Path(__file__).resolve().parents[2] / "slo.yaml")]
    for c in candidates:
        if c and Path(c).is_file():
            # The lab profile at the run's speed: the windows the drill's scenario time runs on.
            return at_speed(load_spec(c), state.speed if state is not None else 1.0)
    raise FileNotFoundError(f"no SLO spec found (set {SPEC_ENV} or run from the repository)")


@dataclass(frozen=True)
class ReportData:
    drill: Drill
    run_id: str
    seed: int
    speed: float
    start: float
    end: float
    fault: Window
    baseline: Window
    attempts: tuple[Attempt, ...]  # as of the drill's end
    samples: tuple[MetricSample, ...]
    impact: Impact  # fault window vs baseline, as of the fault's end
    sli_incident: tuple[int, int]  # good, total of attempts whose outcome fell in the fault window (SLI engine)
    sli_latency: Mapping[str, float | None]  # processing latency p50/p95/p99 over the fault window (SLI engine)
    sli_drill: tuple[int, int]
    first_page_at: float | None  # only a page the engine and (when running) Prometheus both fired
    first_page_alert: str | None
    grade: Grade
    answers: tuple[dict, ...]
    timeline: tuple[dict, ...]
    spec: SloSpec
    page: PageVerdict | None = None
    read_summary: str = ""  # what the engine's reader read (files, events, skipped lines)
    outcomes: Outcomes | None = None  # publish-success outcomes of every event read, as of the drill's end
    budget: BudgetFigures | None = None  # the lab period's budget as of the drill's end (obslab budget --at END)
    burn_at_end: Mapping[str, float | None] | None = None  # burn rate per alert window length at the drill's end
    alerts_at_end: tuple[dict, ...] = ()  # each lab alert at the drill's end: windows, burn rates, firing
    sli_drill_latency: Mapping[str, float | None] | None = None  # processing p50/p95/p99 over the whole drill
    expert: Mapping | None = None  # the unattended solver's diagnosis of this run (auto.diagnosis_json)
    learner: tuple = ()  # the learner's steps (learner_path.Step), scenario time
    path_stages: tuple = ()  # learner vs expert, stage by stage (learner_path.PathStage)
    clock: ScenarioClock | None = None  # the run's scenario clock (pauses, speed)
    timing: AlertTiming | None = None  # the lab profile's windows at the run's speed

    def scenario_s(self, t: float) -> float:
        """Scenario seconds since the drill started at wall time ``t``."""
        return self.clock.scenario_s(t) if self.clock is not None else (t - self.start) * (self.speed or 1.0)

    def duration(self, t0: float, t1: float) -> str:
        """``400.0 s of scenario time (60.0 s wall)`` from ``t0`` to ``t1``; the wall part only where it differs."""
        return _duration(self.scenario_s(t1) - self.scenario_s(t0), t1 - t0)

    def wall_after(self, t0: float, scenario_s: float) -> float:
        """Wall seconds from ``t0`` until ``scenario_s`` more of scenario time had run (pauses included)."""
        if self.clock is None:
            return scenario_s / (self.speed or 1.0)
        active = (self.scenario_s(t0) + scenario_s) / self.clock.speed
        return self.clock.wall_at(active, self.end) - t0


def _duration(scenario_s: float, wall_s: float) -> str:
    return f"{scenario_s:.1f} s of scenario time" + (f" ({wall_s:.1f} s wall)" if abs(scenario_s - wall_s) >= 0.05
                                                       else "")


def build_report_data(run: RunDir, spec: SloSpec | None = None) -> ReportData:
    """Every figure from the measurement engine over the run's events, read twice: as of the
    fault's end (the incident's figures, exactly ``obslab sli --since FAULT_START --until FAULT_END``)
    and as of the drill's end (the whole drill: plots, burn rates, the page)."""
    state = run.read_state()
    # The lab profile at the run's speed (a spec already paced to it stays as it is: never compressed twice).
    spec = at_speed(spec or default_spec(state), state.speed)
    timing = alert_timing(spec, "lab")
    truth = run.read_truth()
    drill = find_drill(state.drill_id)
    events_dir = Path(state.events_dir or Path(state.data_dir) / "events")
    start = state.started_at
    timeline = run.timeline()
    finished = [e["t"] for e in timeline if e["kind"] in ("drill_finished", "drill_stopped")]
    clock = run.clock()
    scheduled_end = clock.wall_at(state.duration_s, finished[0] if finished else start + state.duration_s)
    end = min(finished[0], scheduled_end) if finished else scheduled_end
    applied = truth.get("fault_applied_at") or (start + truth["fault_start_s"])
    removed = truth.get("fault_removed_at") or min(end, applied + truth["fault_duration_s"])
    fault = Window(applied, removed)
    baseline = Window(start, applied)
    samples = tuple(read_metric_samples(run.metrics_file))
    at_fault_end = read_drill_events(events_dir, Window(start, fault.end), spec.abandon_after_s, as_of=fault.end)
    impact = measure_impact(at_fault_end.attempts, samples, fault, baseline, spec)
    engine = _engine_totals(at_fault_end, spec, fault)
    success_rate = engine.figure("publish_success_rate")
    sli_incident = (int(success_rate.numerator or 0), int(success_rate.denominator or 0))
    sli_latency = {f.statistic: f.value for f in engine.latency if f.name.startswith("processing_latency_p")}
    at_end = read_drill_events(events_dir, Window(start, end), spec.abandon_after_s, as_of=end)
    whole = _engine_totals(at_end, spec, Window(start, end))
    whole_rate = whole.figure("publish_success_rate")
    whole_latency = {f.statistic: f.value for f in whole.latency if f.name.startswith("processing_latency_p")}
    sli_drill = (int(whole_rate.numerator or 0), int(whole_rate.denominator or 0))
    outcomes = drill_outcomes(at_end, spec)
    success = spec.slo("publish-success")
    budget = period_budget(outcomes, success.name, success.objective, timing.period_s(success), end)
    # Keyed by the window in scenario time (as the briefing names it); measured over its wall length.
    burn_at_end = {format_duration(scen): burn_rate_series(outcomes, success.objective, [end], length).values()[0]
                   for w, sw in zip(timing.windows, timing.scenario_windows)
                   for length, scen in ((w.long_s, sw.long_s), (w.short_s, sw.short_s))}
    alerts_at_end = []
    for w, sw in zip(timing.windows, timing.scenario_windows):
        long, short, firing = alert_state(outcomes, success.objective, w, end)
        alerts_at_end.append({"slo": success.name, "severity": w.severity, "long": sw.long, "short": sw.short,
                              "long_wall": w.long, "short_wall": w.short,
                              "factor": w.burn_rate, "long_burn": long.burn_rate, "short_burn": short.burn_rate,
                              "firing": firing})
    page = page_verdict(engine_first_page(outcomes, spec, start, end),
                        prometheus_first_fire(state.prometheus_url, burn_alert_name("publish-success", "page"),
                                              start, end))
    answers = tuple(run.answers())
    measured = impact.value(drill.questions.impact.metric)
    # Graded times are scenario seconds (the drill's own clock: pauses excluded, times the speed).
    g = grade(drill, [Answer(a["cause"], a["cohort"], float(a["impact"]), clock.scenario_s(start + a["at_s"]))
                      for a in answers],
              measured if measured is not None else 0.0, clock.scenario_s(fault.start),
              None if page.at is None else clock.scenario_s(page.at),
              hints_taken=sum(1 for e in timeline if e["kind"] == "hint_shown"))
    expert = _expert_diagnosis(run, spec)
    if drill.mitigations is not None:
        from toolkit.drills.mitigate import expert_mitigation

        expert = {**expert, "mitigation": expert_mitigation(run, drill, expert)}
    # An unattended run has no learner: its debrief shows the expert path alone.
    learner = () if state.auto else tuple(learner_steps(run))
    stages = () if state.auto else tuple(compare_paths(learner, expert, state, drill.questions.impact.tolerance,
                                                       clock.scenario_s))
    return ReportData(drill, state.run_id, state.seed, state.speed, start, end, fault, baseline, at_end.attempts,
                      samples, impact, sli_incident, sli_latency, sli_drill, page.at, page.alert, g, answers,
                      tuple(timeline), spec, page, at_end.events.summary(), outcomes, budget, burn_at_end,
                      tuple(alerts_at_end), whole_latency, expert, learner, stages, clock, timing)


def _expert_diagnosis(run: RunDir, spec: SloSpec) -> dict:
    """The expert path: the solver's diagnosis the run recorded (``auto.json``, ``--auto`` runs), else the
    solver run now over the same events — analysis only, never recorded as an answer."""
    recorded = run.path / "auto.json"
    if recorded.is_file():
        return json.loads(recorded.read_text())
    from toolkit.drills.auto import diagnosis_json, solve

    return diagnosis_json(solve(run, spec))


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _engine_totals(drill_events: DrillEvents, spec: SloSpec, window: Window):
    """The SLI engine's totals over ``window`` (outcome times in (start, end]), as of the read's as-of time."""
    from toolkit.measures.sli import SliQuery, compute_report

    report = compute_report(drill_events.events, spec,
                            SliQuery(since=_iso(window.start), until=_iso(window.end), window_s=None))
    return report.totals


# -- plots ---------------------------------------------------------------------------------------

def _bins(data: ReportData) -> list[Window]:
    width = (data.end - data.start) / _PLOT_BINS
    return [Window(data.start + i * width, data.start + (i + 1) * width) for i in range(_PLOT_BINS)]


def _mark_fault(ax, data: ReportData) -> None:
    ax.axvspan(data.scenario_s(data.fault.start), data.scenario_s(data.fault.end), color="tab:red", alpha=0.12,
               label="fault in force")


_X_LABEL = "scenario seconds since the drill started"


def plot_sli_and_burn(data: ReportData, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    slo = data.spec.slo("publish-success")
    bins = _bins(data)
    width = bins[0].length_s
    ends = [w.end for w in bins]
    # Per bin (t − width, t], the engine's window convention and its good/total from the spec.
    good, total = window_counts(data.outcomes, ends, width)
    xs = [data.scenario_s((w.start + w.end) / 2) for w in bins]
    rates = [100 * g / t if t else float("nan") for g, t in zip(good, total)]
    timing = data.timing or alert_timing(data.spec, "lab")
    window, scenario_window = timing.windows[0], timing.scenario_windows[0]
    grid = evaluation_times(data.start, data.end, timing.step_s)
    grid_x = [data.scenario_s(t) for t in grid]
    long = burn_rate_series(data.outcomes, slo.objective, grid, window.long_s)
    short = burn_rate_series(data.outcomes, slo.objective, grid, window.short_s)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    ax1.plot(xs, rates, marker=".", label="publish success rate (per bin, by outcome time)")
    ax1.axhline(100 * slo.objective, color="grey", linestyle="--", label=f"objective {slo.objective:.0%}")
    _mark_fault(ax1, data)
    ax1.set_ylabel("success rate, %")
    ax1.set_title(f"{data.drill.title}: publish success and burn rate (synthetic traffic included)")
    ax1.legend(loc="lower left", fontsize=8)
    ax2.plot(grid_x, long.burn, label=f"burn rate, long window {scenario_window.long} (lab profile, scenario time)")
    ax2.plot(grid_x, short.burn, alpha=0.6, label=f"burn rate, short window {scenario_window.short}")
    ax2.axhline(window.burn_rate, color="tab:red", linestyle="--", label=f"page at {window.burn_rate:g}×")
    if data.first_page_at is not None:
        ax2.axvline(data.scenario_s(data.first_page_at), color="tab:red", label="first page")
    _mark_fault(ax2, data)
    ax2.set_ylabel("burn rate (× budget)")
    ax2.set_xlabel(_X_LABEL)
    ax2.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_latency(data: ReportData, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = _bins(data)
    xs, p50, p99 = [], [], []
    for w in bins:
        vals = [a.processing_ms for a in data.attempts if a.ended is not None and a.ended in w
                and a.processing_ms is not None]
        xs.append(data.scenario_s((w.start + w.end) / 2))
        p50.append(percentile(vals, 0.5) if vals else float("nan"))
        p99.append(percentile(vals, 0.99) if vals else float("nan"))
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot(xs, p50, label="p50 processing latency")
    ax.plot(xs, p99, label="p99 processing latency")
    threshold = data.spec.slo("publish-latency").threshold_s
    if threshold:
        ax.axhline(threshold * 1000, color="grey", linestyle="--", label=f"latency SLI threshold {threshold:g}s")
    _mark_fault(ax, data)
    ax.set_ylabel("ms (publishes by bin)")
    ax.set_xlabel(_X_LABEL)
    ax.set_title("processing latency (upload_completed → publish_succeeded)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _hurt(data: ReportData) -> tuple[str, Callable[[Attempt], bool]]:
    cause = data.drill.truth.cause
    base = [a.processing_ms for a in data.attempts if a.ended is not None and a.ended in data.baseline
            and a.processing_ms is not None]
    if cause in ("chunk_upload_failures", "retry_amplification"):
        return "share of attempts with a chunk retry", lambda a: a.chunk_retries > 0
    if cause == "client_auto_cancel":
        return "share of attempts cancelled", lambda a: a.outcome == "cancelled"
    if cause in ("transcoder_slow", "queue_backlog", "database_slow"):
        limit = max(percentile(base, 0.99) or 0.0, 100.0)
        return f"share of publishes slower than {limit:.0f} ms (baseline p99)", \
            lambda a: a.processing_ms is not None and a.processing_ms > limit
    return "share of attempts failed", lambda a: a.outcome == "failed"


def cohort_breakdown(data: ReportData) -> tuple[str, str, list[tuple[str, float, int, float, int]]]:
    """(dimension, what, rows of (value, rate in fault window, n, rate before, n before))."""
    dims = list(data.drill.truth.cohort) or ["region"]
    dim = dims[-1] if len(dims) > 1 and "release" in dims else dims[0]
    what, hurt = _hurt(data)
    scope = {k: v for k, v in data.drill.truth.cohort.items() if k != dim}
    rows = []
    from toolkit.drills.schema import ANSWER_VALUES

    for value in ANSWER_VALUES[dim]:
        def member(a: Attempt) -> bool:
            return a.cohort.get(dim) == value and all(a.cohort.get(k) == v for k, v in scope.items())
        now = [a for a in data.attempts if a.ended is not None and a.ended in data.fault and member(a)]
        then = [a for a in data.attempts if a.ended is not None and a.ended in data.baseline and member(a)]
        rows.append((value, sum(map(hurt, now)) / len(now) if now else 0.0, len(now),
                     sum(map(hurt, then)) / len(then) if then else 0.0, len(then)))
    scope_text = "".join(f", within {k}={v}" for k, v in scope.items())
    return dim, what + scope_text, rows


def plot_cohorts(data: ReportData, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dim, what, rows = cohort_breakdown(data)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels = [f"{r[0]}\n(n={r[2]})" for r in rows]
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [100 * r[3] for r in rows], width=0.4, label="before the fault")
    ax.bar([i + 0.2 for i in x], [100 * r[1] for r in rows], width=0.4, label="while the fault was in force")
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_ylabel("%")
    ax.set_title(f"{what}, by {dim}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# -- markdown ------------------------------------------------------------------------------------

def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
    return f"{text} {unit}".strip()


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%H:%M:%S")


def _timeline_rows(data: ReportData) -> list[tuple[float, str]]:
    rows = []
    for e in data.timeline:
        kind = e["kind"]
        if kind == "answer":
            text = (f"answer ({e.get('by', 'learner')}): cause {e['cause']}, cohort "
                    f"{', '.join(f'{k}={v}' for k, v in e['cohort'].items()) or 'everyone'}, impact {e['impact']:g}")
        elif kind == "hint_shown":
            text = f"hint {e['number']} shown"
        elif kind == "flag_set":
            text = f"flag {e['flag']} → {e['variant']} for {e['percent']:g} % of users"
        elif kind == "mitigation":
            text = f"mitigation ({e.get('by', 'learner')}): {e['action']}"
        else:
            text = kind.replace("_", " ")
        rows.append((e["t"], text))
    if data.first_page_at is not None:
        rows.append((data.first_page_at, f"first page: publish-success {data.first_page_alert}"))
    elif data.page is not None and data.page.engine.at is not None:
        rows.append((data.page.engine.at, "page condition met in the engine's replay, not counted as fired: "
                                          + data.page.sentence(data.fault.start, data.scenario_s)))
    return sorted(rows, key=lambda r: r[0])


def render_markdown(data: ReportData, images: dict[str, str]) -> str:
    d, g, imp = data.drill, data.grade, data.impact
    good_i, total_i = data.sli_incident
    good_d, total_d = data.sli_drill
    fault_len = data.duration(data.fault.start, data.fault.end)
    timing = data.timing or alert_timing(data.spec, "lab")
    lines = [
        f"# Drill report: {d.title}",
        "",
        f"Drill `{d.id}` ({d.difficulty}), run `{data.run_id}`, seed {data.seed}, speed ×{data.speed:g} "
        f"(drill time {d.setup.duration_s / 60:g} min of scenario time ran in {(data.end - data.start):.0f} s wall, "
        "pauses included). Traffic: the lab's load generator (synthetic traffic, included in every figure).",
        "",
        "Times are **scenario time**: seconds of drill time since the start (wall seconds less the pauses, "
        f"× {data.speed:g}), wall time in brackets where it differs. Alert windows are named in scenario time, "
        f"as the briefing names them: the {timing.describe()}.",
        "",
        "## Briefing",
        "",
        d.briefing.strip(),
        "",
        "## Timeline",
        "",
        "| t (scenario s) | t (wall s) | UTC | what |",
        "|---:|---:|---|---|",
    ]
    for t, text in _timeline_rows(data):
        lines.append(f"| {data.scenario_s(t):.1f} | {t - data.start:.1f} | {_clock(t)} | {text} |")
    lines += [
        "",
        f"The fault ({d.fault.kind} on {d.fault.target}"
        f"{', ' + ', '.join(f'{k}={v}' for k, v in d.fault.selector.items()) if d.fault.selector else ''}) "
        f"was in force from t={data.scenario_s(data.fault.start):.1f} s to t={data.scenario_s(data.fault.end):.1f} s "
        f"of scenario time since the start ({fault_len}).",
        "",
        "## Evidence",
        "",
        f"![publish success and burn rate]({images['sli']})",
        "",
        f"![processing latency]({images['latency']})",
        "",
        f"![cohort breakdown]({images['cohorts']})",
        "",
    ]
    dim, what, rows = cohort_breakdown(data)
    lines += [f"Cohort breakdown — {what}, by {dim} (attempts by outcome time):", "",
              f"| {dim} | before the fault | n | during the fault | n |", "|---|---:|---:|---:|---:|"]
    for value, now, n_now, then, n_then in rows:
        lines.append(f"| {value} | {then:.1%} | {n_then} | {now:.1%} | {n_now} |")
    lines += [
        "",
        "## Measured impact",
        "",
        f"Window: the fault window, {fault_len}; attempts attributed by their outcome time (as `obslab sli` "
        f"counts them), as of the fault's end; "
        f"baseline: the {data.duration(data.baseline.start, data.baseline.end)} before the fault. Whole-drill "
        f"figures are as of the drill's end. Read: {data.read_summary or 'n/a'}.",
        "",
        f"- **Publish success (publish-success SLI)** during the fault: {good_i}/{total_i} = "
        f"{format_percent(sli_ratio(good_i, total_i))} ({success_definition(data.spec).ratio_text()}, from the "
        f"spec); whole drill: {good_d}/{total_d} = {format_percent(sli_ratio(good_d, total_d))}.",
        f"- **Processing latency** of publishes during the fault (exact nearest-rank, synthetic traffic "
        f"included): p50 {_fmt(data.sli_latency.get('p50'), 'ms')}, p95 {_fmt(data.sli_latency.get('p95'), 'ms')}, "
        f"p99 {_fmt(data.sli_latency.get('p99'), 'ms')} — as `obslab sli --since {_iso(data.fault.start)} "
        f"--until {_iso(data.fault.end)}` reports them.",
        f"- **Error budget** (publish-success, lab profile, as of the drill's end, as `obslab budget --profile lab "
        + (f"--speed {data.speed:g} " if timing.speed != 1 else "")
        + f"--at {_iso(data.end)}` reports it): {data.budget.describe() if data.budget else 'n/a'}"
        + (f" (the lab profile's {format_duration(timing.scenario_period_s(data.spec.slo('publish-success')))} "
           f"period of scenario time, {data.budget.period} wall at ×{timing.speed:g})"
           if data.budget and timing.speed != 1 else "") + ". "
        f"Burn rates then: " + ", ".join(f"{k}{_wall_window(timing, k)} {_fmt(v)}×"
                                         for k, v in (data.burn_at_end or {}).items()) + ".",
        "",
        "| figure | value | count behind it | definition |",
        "|---|---:|---:|---|",
    ]
    asked = d.questions.impact.metric
    names = ["failed_publishes", "budget_spent_percent", "p99_processing_shift_ms", "p95_e2e_shift_ms"]
    names += [asked] if asked not in names else []
    for name in names:
        f = imp.figures[name]
        label = f"**{name}** (asked)" if name == asked else name
        lines.append(f"| {label} | {_fmt(f.value, f.unit)} | {f.count if f.count is not None else '—'} | {f.definition} |")
    lines += [
        "",
        "## Grade",
        "",
        f"Score: **{g.total:g} / {g.max_total:g}** ({g.percent:.0f} %), graded on the last of {g.answers} answer(s).",
        "",
        "| part | points | of | note |",
        "|---|---:|---:|---|",
    ]
    for p in g.parts:
        lines.append(f"| {p.part} | {p.points:g} | {p.max_points:g} | {p.note} |")
    if g.hints_taken:
        lines.append(f"| hints | −{g.hint_penalty:g} | | {g.hints_taken} hint(s) taken, {HINT_COST:g} points each |")
    ttd = "not detected" if g.time_to_detect_s is None else _after_fault(data, g.time_to_detect_s,
                                                                          f"by the first {g.detected_by}")
    ttdiag = "not diagnosed" if g.time_to_diagnose_s is None else _after_fault(data, g.time_to_diagnose_s)
    lines += [
        "",
        f"- Time to detect (fault start → first alert or first answer): {ttd}.",
        f"- Time to diagnose (fault start → first answer with the right cause and cohort): {ttdiag}.",
        f"- True cause: {cause_label(d.truth.cause)}; cohort: "
        f"{', '.join(f'{k}={v}' for k, v in d.truth.cohort.items()) or 'everyone'}; "
        f"it moves {d.truth.metric} {d.truth.direction}.",
        "",
    ]
    lines += _path_section(data)
    lines += ["## Debrief (STAR): a model answer", ""]
    lines += _star(data)
    return "\n".join(lines) + "\n"


def _after_fault(data: ReportData, scenario_s: float, note: str = "") -> str:
    """A time after the fault's start: scenario seconds, the wall seconds in brackets where they differ."""
    wall = data.wall_after(data.fault.start, scenario_s)
    inner = [f"{wall:.1f} s wall"] if abs(wall - scenario_s) >= 0.05 else []
    inner += [note] if note else []
    return f"{scenario_s:.1f} s of scenario time" + (f" ({'; '.join(inner)})" if inner else "")


def _wall_window(timing: AlertTiming, scenario_label: str) -> str:
    """`` (6s wall)`` beside a window named in scenario time, at a speed; nothing at speed 1."""
    if timing.speed == 1:
        return ""
    for w, sw in zip(timing.windows, timing.scenario_windows):
        for wall, scen in ((w.long, sw.long), (w.short, sw.short)):
            if scen == scenario_label:
                return f" ({wall} wall)"
    return ""


# What I would do about each cause, and what it costs: the model answer's tradeoff.
_MITIGATION: dict[str, tuple[str, str]] = {
    "transcoder_slow": ("route the affected media to a spare transcoder pool",
                        "the pool costs capacity held idle the rest of the time"),
    "transcoder_errors": ("roll the transcoder back", "the fix it carried waits for the next release"),
    "chunk_upload_failures": ("have clients retry with capped, jittered backoff",
                              "uploads in that cohort take longer, but they finish"),
    "retry_amplification": ("cap client retries with exponential backoff and jitter",
                            "a few uploads that a fast retry would have saved now fail outright"),
    "canary_regression": ("roll the canary back to 0 %", "the release's improvements wait for a fixed build"),
    "storage_outage": ("fail the region's uploads over to another region's storage",
                       "cross-region latency and transfer cost for that region's creators until storage is back"),
    "cache_regression": ("turn the feed cache back on", "the change that turned it off is reverted with it"),
    "database_slow": ("shed non-critical reads from the database", "some pages show staler data"),
    "instrumentation_loss": ("fix the event sink and page on the service's own counters meanwhile",
                             "alerts on counters lack the per-attempt detail the events carry"),
    "client_auto_cancel": ("count client cancellations in a guardrail and fix the client's timeout",
                           "the success SLI's definition stays as it is, so the guardrail must be watched"),
    "queue_backlog": ("add transcode workers for the queue-backed path", "more capacity to pay for"),
    "memory_leak": ("restart the API workers on a memory limit until the leak is fixed",
                    "each restart drops the requests in flight"),
    "cpu_saturation": ("scale the API out", "more capacity to pay for"),
    "traffic_spike": ("scale out for the spike", "capacity that sits idle once it passes"),
}

_STAGE_ADVICE = {"when": "start broad — the SLI and the burn rate — before narrowing",
                 "who": "break the hurt attempts down by every dimension before settling on a cohort",
                 "what": "test my hypothesis against the mechanism signals (error class, retries, phases)",
                 "how much": "read the impact figure off the measured window with its definition",
                 "mitigate": "take the action that removes the diagnosed cause, then show the recovery with the SLI"}


def _star(data: ReportData) -> list[str]:
    """A model answer: first person, every figure one this report states, with a tradeoff and a reflection."""
    d, imp, g = data.drill, data.impact, data.grade
    good_i, total_i = data.sli_incident
    speed = data.speed or 1.0
    timing = data.timing or alert_timing(data.spec, "lab")
    asked = imp.figures.get(d.questions.impact.metric)
    expert = data.expert or {}
    top = (expert.get("causes") or [{}])[0]
    cohorts = expert.get("cohorts") or []
    cohort = ", ".join(f"{k}={v}" for k, v in (cohorts[0]["cohort"] if cohorts else {}).items()) or "everyone"
    page = data.page.sentence(data.fault.start, data.scenario_s) if data.page is not None else \
        "no burn-rate page fired"
    rate = format_percent(sli_ratio(good_i, total_i))
    lines = [
        "A model answer, written from the expert path (the solver's diagnosis) and the figures above; compare it "
        "with your own story (`obslab story template`, `obslab story check`, docs/story-rubric.md).",
        "",
        f"- **Situation.** I was on call for the publish flow. Measured: {page}. The incident lasted "
        f"{data.duration(data.fault.start, data.fault.end)}" + (f" at ×{speed:g}" if speed != 1 else "")
        + f"; during it, {good_i} of {total_i} publish attempts succeeded ({rate}, publish-success SLI, outcomes "
        f"in the fault window, synthetic traffic included).",
        f"- **Task.** I had to find the cause and who was affected, and answer: {d.questions.impact.prompt}",
    ]
    if data.expert:
        steps = {s.stage: s.text for s in expert_steps(data.expert, data.start, speed, data.scenario_s)}
        lines.append("- **Action.** I " + "; then I ".join(steps[k] for k in ("when", "what", "who") if k in steps)
                     + (f"; then I read {asked.name} off the fault window (below)." if asked is not None else "."))
    if asked is not None:
        lines.append(f"- **Result.** Primary metric — {asked.name}: {_fmt(asked.value, asked.unit)} ({asked.definition}"
                     f"; count behind it: {asked.count if asked.count is not None else 'n/a'}). Affected: {cohort}.")
    period = format_duration(timing.scenario_period_s(data.spec.slo("publish-success")))
    lines.append(f"  Over the fault window: {_fmt(imp.value('failed_publishes'))} failed publishes; the incident "
                 f"spent {_fmt(imp.value('budget_spent_percent'))} % of the {period} lab-profile period's error "
                 "budget" + (" (scenario time)." if timing.speed != 1 else "."))
    guard = "p99_processing_shift_ms" if d.questions.impact.metric in ("failed_publishes", "budget_spent_percent") \
        else "failed_publishes"
    gf = imp.figures.get(guard)
    if gf is not None:
        lines.append(f"  Guardrail — {gf.name}: {_fmt(gf.value, gf.unit)} ({gf.definition}).")
    if top.get("cause") == "instrumentation_loss":
        lost = imp.value("lost_failure_events")
        lines.append(f"  Caveat: the SLI over the log ({rate}) is not to be trusted here: the service counted "
                     f"{_fmt(lost)} failures the log lacks (lost_failure_events).")
    mitigation, cost = _MITIGATION.get(top.get("cause") or d.truth.cause, ("remove the cause", "the change it reverts"))
    lines.append(f"- **Tradeoff.** I would {mitigation}; the price: {cost}.")
    diverged = [s for s in data.path_stages if s.diverged]
    if not data.path_stages:
        reflection = "this run was unattended, so there is no learner path to compare; "
    elif not data.learner:
        reflection = ("no steps of mine were recorded for this run (commands run against another data directory?); ")
    elif diverged:
        reflection = (f"my path left the expert's at “{diverged[0].stage}”: next time I would "
                      f"{_STAGE_ADVICE.get(diverged[0].stage, 'follow the evidence broad to narrow')}; ")
    else:
        reflection = "my path followed the expert's at every stage; "
    ttd = g.time_to_detect_s
    reflection += ("detection took " + (f"{_after_fault(data, ttd)} after the fault began, by the first "
                                       f"{g.detected_by}." if ttd is not None else
                                       "longer than the drill: nothing detected it."))
    lines.append(f"- **Reflection.** {reflection[0].upper()}{reflection[1:]}")
    lines += ["", f"What good looks like: {d.debrief.good_looks_like}"]
    return lines


def _path_section(data: ReportData) -> list[str]:
    """The learner's path beside the expert's, stage by stage, then every recorded step."""
    lines = ["## Your path and the expert's", "",
             "The expert path is the unattended solver's diagnosis of this run (`toolkit/drills/auto.py`, the same "
             "events and metric samples you had); times are scenario time (seconds of drill time since the start).",
             ""]
    if not data.path_stages:
        steps = expert_steps(data.expert, data.start, data.speed or 1.0, data.scenario_s) if data.expert else []
        return lines + ["An unattended run (`--auto`): the expert path alone.", ""] + \
            [f"- t={st.scenario_s:.0f} s, {st.stage}: {st.text}" for st in steps] + [""]
    lines += ["| stage | expert | you | |", "|---|---|---|---|"]
    for s in data.path_stages:
        mark = "**diverged**" + (f" — {s.note}" if s.note else "") if s.diverged else "same"
        lines.append(f"| {s.stage} | {_cell(s.expert)} | {_cell(s.learner)} | {mark} |")
    lines += ["", "Your steps (obslab commands run and dashboard views opened while the drill was active, notes, "
                  "hints and answers):", ""]
    if data.learner:
        lines += ["| t (scenario s) | source | stage | what |", "|---:|---|---|---|"]
        for st in data.learner:
            lines.append(f"| {st.scenario_s:.0f} | {st.source} | {st.stage} | {_cell(st.text)} |")
    else:
        lines.append("None recorded.")
    return lines + [""]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_report(run: RunDir, spec: SloSpec | None = None) -> Path:
    """Write report.md and its PNGs into the run's report directory; return the markdown's path."""
    state = run.read_state()
    kind = find_drill(state.drill_id).kind
    if kind == "experiment":
        from toolkit.drills.experiment_report import write_experiment_report

        return write_experiment_report(run, spec or default_spec(state))
    if kind == "rollout":
        from toolkit.drills.rollout_report import write_rollout_report

        return write_rollout_report(run, spec or default_spec(state))
    data = build_report_data(run, spec)
    out = run.report_dir
    out.mkdir(exist_ok=True)
    images = {"sli": "sli-burn.png", "latency": "latency.png", "cohorts": "cohorts.png"}
    plot_sli_and_burn(data, out / images["sli"])
    plot_latency(data, out / images["latency"])
    plot_cohorts(data, out / images["cohorts"])
    md = out / "report.md"
    text, summary = render_markdown(data, images), report_json(data)
    if data.drill.mitigations is not None:
        from toolkit.drills.mitigate import mitigation_json, mitigation_result, render_mitigation_markdown

        mitigation = mitigation_result(run, data.spec, data.fault, data.end, data.scenario_s)
        text += render_mitigation_markdown(mitigation, data.scenario_s)
        summary["mitigation"] = mitigation_json(mitigation, data.scenario_s)
    md.write_text(text)
    (out / "report.json").write_text(json.dumps(summary, indent=2))
    return md


def _breakdown_json(data: ReportData) -> dict:
    dim, what, rows = cohort_breakdown(data)
    return {"dimension": dim, "what": what,
            "rows": [{"value": v, "during": now, "n_during": n_now, "before": then, "n_before": n_then}
                     for v, now, n_now, then, n_then in rows]}


def report_json(data: ReportData) -> dict:
    """The report's numbers; the ``obslab.drill-result/v1`` shape ``obslab story`` reads."""
    d = data.drill
    asked = data.impact.figures.get(d.questions.impact.metric)
    return {
        "schema": "obslab.drill-result/v1",
        "drill": {"id": d.id, "title": d.title, "briefing": d.briefing,
                  "truth": {"cause": d.truth.cause, "cohort": dict(d.truth.cohort), "metric": d.truth.metric,
                            "direction": d.truth.direction}},
        "measured_impact": asked.value if asked is not None else None,
        "impact_definition": f"{d.questions.impact.metric}: {asked.definition}" if asked is not None else None,
        "run_id": data.run_id,
        "fault_window": [data.fault.start, data.fault.end],
        "fault_window_scenario_s": [data.scenario_s(data.fault.start), data.scenario_s(data.fault.end)],
        "baseline_window": [data.baseline.start, data.baseline.end],
        "speed": data.speed,
        "sli_fault_window": {"good": data.sli_incident[0], "total": data.sli_incident[1],
                             "rate": sli_ratio(*data.sli_incident),
                             "processing_latency_ms": dict(data.sli_latency)},
        "sli_drill": {"good": data.sli_drill[0], "total": data.sli_drill[1], "rate": sli_ratio(*data.sli_drill),
                      "processing_latency_ms": dict(data.sli_drill_latency or {})},
        "cohort_breakdown": _breakdown_json(data),
        "figures": {k: {"value": f.value, "unit": f.unit, "count": f.count, "definition": f.definition}
                    for k, f in data.impact.figures.items()},
        "first_page_at": data.first_page_at,
        # Every time in scenario seconds (the run's clock: pauses excluded, × the speed); wall seconds apart.
        "scenario": {"speed": data.speed, "times_in": "scenario seconds",
                     "fault_s": data.scenario_s(data.fault.end) - data.scenario_s(data.fault.start),
                     "baseline_s": data.scenario_s(data.baseline.end) - data.scenario_s(data.baseline.start),
                     "drill_s": data.scenario_s(data.end),
                     "first_page_s": None if data.first_page_at is None else data.scenario_s(data.first_page_at),
                     "time_to_detect_s": data.grade.time_to_detect_s,
                     "time_to_diagnose_s": data.grade.time_to_diagnose_s,
                     "wall": {"fault_s": data.fault.length_s, "baseline_s": data.baseline.length_s,
                              "drill_s": data.end - data.start,
                              "time_to_detect_s": None if data.grade.time_to_detect_s is None
                              else data.wall_after(data.fault.start, data.grade.time_to_detect_s),
                              "time_to_diagnose_s": None if data.grade.time_to_diagnose_s is None
                              else data.wall_after(data.fault.start, data.grade.time_to_diagnose_s)}},
        "learner_path": [{"scenario_s": st.scenario_s, "source": st.source, "stage": st.stage, "what": st.text}
                         for st in data.learner],
        "expert": data.expert,
        "paths": [{"stage": p.stage, "expert": p.expert, "learner": p.learner, "diverged": p.diverged,
                   "note": p.note} for p in data.path_stages],
        "as_of": {"fault_window": data.fault.end, "drill": data.end},
        "budget": None if data.budget is None else {
            "slo": data.budget.slo, "period": data.budget.period, "at": data.end, "spent": data.budget.spent,
            "remaining": data.budget.remaining, "text": data.budget.describe()},
        "burn_rates": dict(data.burn_at_end or {}),
        "alerts": list(data.alerts_at_end),
        "page": None if data.page is None else {
            "fired": data.page.fired, "at": data.page.at, "alert": data.page.alert,
            "engine_at": data.page.engine.at, "engine_alert": data.page.engine.alert,
            "prometheus": data.page.prometheus.state, "prometheus_at": data.page.prometheus.at,
            "prometheus_detail": data.page.prometheus.detail},
        "grade": {"total": data.grade.total, "max": data.grade.max_total, "max_total": data.grade.max_total,
                  "points": {p.part: p.points for p in data.grade.parts},
                  "parts": [{"part": p.part, "points": p.points, "max_points": p.max_points, "credit": p.credit,
                             "note": p.note} for p in data.grade.parts],
                  "time_to_detect_s": data.grade.time_to_detect_s, "detected_by": data.grade.detected_by,
                  "time_to_diagnose_s": data.grade.time_to_diagnose_s, "times_in": "scenario seconds",
                  "hints_taken": data.grade.hints_taken, "hint_penalty": data.grade.hint_penalty},
    }
