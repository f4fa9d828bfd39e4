"""The report of an experiment drill: the naive comparison, the checks that decide whether it can be trusted,
the grade of the learner's verdict, and the debrief.

Every figure comes from ``toolkit.drills.experiment`` over the run's events and metric samples (the same
analysis the unattended solver runs); each states its statistic, scope and counts.
"""

from __future__ import annotations

import json
from pathlib import Path

from toolkit.drills.grader import HINT_COST, Grade, VerdictAnswer, grade_verdict
from toolkit.drills.schema import Drill, find_drill
from toolkit.drills.state import RunDir
from toolkit.drills.verdicts import evidence_label, verdict_label
from toolkit.slo.spec import SloSpec

__all__ = ["EXPERIMENT_RESULT_SCHEMA", "experiment_checks", "render_experiment_markdown", "write_experiment_report"]

EXPERIMENT_RESULT_SCHEMA = "obslab.experiment-result/v1"


def experiment_checks(run: RunDir, spec: SloSpec) -> dict:
    """The solver's checks of this run: ``auto.json`` of an ``--auto`` run, else run now over the same events
    (analysis only, never recorded as an answer)."""
    recorded = run.path / "auto.json"
    if recorded.is_file():
        data = json.loads(recorded.read_text())
        if data.get("kind") == "experiment":
            return data
    from toolkit.drills.auto import solve_experiment

    return solve_experiment(run, spec).to_json()


def _grade(run: RunDir, drill: Drill) -> Grade:
    clock = run.clock()
    state = run.read_state()
    answers = [VerdictAnswer(a["verdict"], a["evidence"], clock.scenario_s(state.started_at + a["at_s"]))
               for a in run.answers() if "verdict" in a]
    hints = sum(1 for e in run.timeline() if e["kind"] == "hint_shown")
    return grade_verdict(drill, answers, hints)


def _num(x, unit: str = "", digits: int = 1) -> str:
    if x is None:
        return "n/a"
    if unit == "%":
        return f"{100 * x:.{digits}f} %"
    return f"{x:,.{digits}f}{(' ' + unit) if unit else ''}"


def _effect_row(e: dict, label: str) -> str:
    pct = e["metric"] == "success_rate"
    unit = "%" if pct else "ms"
    diff = None if e["difference"] is None else (f"{100 * e['difference']:+.1f} pp" if pct
                                                 else f"{e['difference']:+.0f} ms")
    z = "n/a" if e["z"] is None else f"{e['z']:+.1f}"
    return (f"| {label} | {e['scope']} | {_num(e['control'], unit)} (n={e['n_control']}) | "
            f"{_num(e['treatment'], unit)} (n={e['n_treatment']}) | {diff or 'n/a'} | {z} |")


def render_experiment_markdown(drill: Drill, run_id: str, speed: float, checks: dict, grade: Grade,
                               answers: list[dict]) -> str:
    from toolkit.drills.experiment import METRIC_TEXT

    c = checks.get("checks", {})
    exp = drill.experiment
    arms = " vs ".join(",".join(f"{k}={v}" for k, v in s.items()) for s in (exp.control, exp.treatment))
    lines = [f"# Experiment drill report: {drill.title}", "",
             f"Run `{run_id}`, speed ×{speed:g}. Arms: {arms} (control vs treatment). Metric: {METRIC_TEXT[exp.metric]}.",
             "", "## Briefing", "", drill.briefing.strip(), "",
             "## The comparison and the checks", "",
             "Attempts whose outcome time falls between the first and the last metric sample of the run "
             "(so the event log and the service's counters cover the same time). z = difference / standard error "
             "(two proportions with a pooled standard error; Welch for means).", "",
             "| view | scope | control | treatment | difference | z |", "|---|---|---:|---:|---:|---:|"]
    if c.get("naive"):
        lines.append(_effect_row(c["naive"], "naive: the arms overall"))
    counters = c.get("counters")
    if counters and counters.get("counted_effect"):
        lines.append(_effect_row(counters["counted_effect"], "the service's counters"))
    for dim, e in (c.get("stratified") or {}).items():
        lines.append(_effect_row(e, f"within each {dim}"))
    lines.append("")
    if counters:
        srm = counters.get("srm") or {}
        lines += [f"- **Sample ratio (log vs the service's counters).** The log holds {counters['logged'][0]} control "
                  f"and {counters['logged'][1]} treatment terminal attempts; the service counted "
                  f"{counters['counted'][0]} and {counters['counted'][1]} "
                  f"(`obslab_publish_outcomes_total`, of which {counters['counted_failed'][0]} and "
                  f"{counters['counted_failed'][1]} failed). Chi-square goodness of fit of the log's split against "
                  f"the counters': p = {srm.get('p_value', float('nan')):.3g} (mismatch below "
                  f"{srm.get('threshold', 0.001):g})."]
    cmp = c.get("compare")
    if cmp:
        srm_users = cmp.get("srm") or {}
        lines.append(f"- **`obslab compare`** over the same window says **{cmp['verdict']['verdict']}** "
                     f"({cmp['verdict']['rule']}); users per arm {cmp['users'][0]} / {cmp['users'][1]}"
                     + (f", its sample-ratio check on users p = {srm_users.get('p_value'):.3g}" if srm_users else "")
                     + ".")
    for m in c.get("mix_shifts") or []:
        shares = ", ".join(f"{v} {100 * m['control_shares'][v]:.0f} % vs {100 * m['treatment_shares'][v]:.0f} %"
                           for v in m["control_shares"])
        lines.append(f"- **Cohort mix, {m['dimension']}** (control vs treatment): {shares}; chi-square p = "
                     f"{m['p_value']:.3g}.")
    shares = c.get("outcome_shares")
    if shares:
        lines.append("- **Outcome categories** (share of terminal attempts, control vs treatment): " + "; ".join(
            f"{name.replace('_', ' ')} {_num(e['control'], '%')} vs {_num(e['treatment'], '%')} "
            f"(z = {e['z']:+.1f})" if e["z"] is not None else f"{name.replace('_', ' ')} n/a"
            for name, e in shares.items()) + ".")
    tail = c.get("tail")
    if tail:
        lo, hi = tail["ci"]
        lines.append(f"- **Mean and tail.** Mean {_num(tail['mean']['control'], 'ms', 0)} vs "
                     f"{_num(tail['mean']['treatment'], 'ms', 0)} (z = {tail['mean']['z']:+.1f}); "
                     f"p{100 * tail['quantile']:g} {_num(tail['control'], 'ms', 0)} vs "
                     f"{_num(tail['treatment'], 'ms', 0)} (difference 95 % bootstrap interval "
                     f"{_num(lo, 'ms', 0)} to {_num(hi, 'ms', 0)}).")
    overlap = c.get("time_overlap")
    if overlap and overlap["overlap_share"] < 0.2:
        lines.append(f"- **When the arms ran.** Control's attempts ended over {overlap['control'][1] - overlap['control'][0]:.0f} s "
                     f"and treatment's over {overlap['treatment'][1] - overlap['treatment'][0]:.0f} s (wall), sharing "
                     f"{100 * overlap['overlap_share']:.0f} % of the shorter span: a before / after comparison, "
                     "with no concurrent control.")
    looks = c.get("looks")
    if looks:
        first = looks.get("first_naive_hit")
        smallest = looks.get("smallest_p_always_valid") or {}
        lines.append(
            f"- **Repeated looks.** A peeker comparing the arms in each of {looks['looks']} equal windows "
            f"({', '.join(looks['metrics'])}; {looks['tests']} tests, each at p < {looks['naive_alpha']:g}, "
            f"uncorrected) sees {looks['naive_hits']} 'significant' result(s), about "
            f"{looks['expected_by_chance']:.1f} expected by chance if nothing differs"
            + (f"; one who stops at the first stops at look {first['look']} ({first['metric']}, p = "
               f"{first['p_value']:.2g})" if first else "")
            + f". The rollout's rule for repeated looks ({looks['rule']}) at the same looks: "
            f"{looks['corrected_hits']} look(s) cross"
            + (f" (smallest always-valid p = {smallest['p_value']:.2g}, look {smallest['look']}, "
               f"{smallest['metric']})" if smallest else "") + ".")
    lines += ["", "Reproduce with the lab's commands: `obslab compare --control "
              + ",".join(f"{k}={v}" for k, v in exp.control.items()) + " --treatment "
              + ",".join(f"{k}={v}" for k, v in exp.treatment.items())
              + " --expected-split CONTROL:TREATMENT` (the sample-ratio check), `obslab sli --by DIMENSION` and "
              "`obslab breakdown` (each cohort), `obslab sli` (the mean beside the percentiles), and the service's "
              "`/metrics` (its own outcome counters).", ""]
    lines += ["## Grade", "", f"Score: **{grade.total:g} / {grade.max_total:g}** ({grade.percent:.0f} %), graded on the "
              f"last of {grade.answers} answer(s).", "", "| part | points | of | note |", "|---|---:|---:|---|"]
    for p in grade.parts:
        lines.append(f"| {p.part} | {p.points:g} | {p.max_points:g} | {p.note} |")
    if grade.hints_taken:
        lines.append(f"| hints | −{grade.hint_penalty:g} | | {grade.hints_taken} hint(s) taken, {HINT_COST:g} points "
                     "each |")
    if answers:
        last = answers[-1]
        lines += ["", f"Last answer ({last.get('by', 'learner')}): {verdict_label(last['verdict'])}; evidence: "
                      f"{evidence_label(last['evidence'])}."]
    lines += ["", f"- The verdict: {verdict_label(drill.truth.verdict)}.",
              f"- The evidence: {evidence_label(drill.truth.evidence)}.",
              f"- The solver's reasoning: {checks.get('why', 'n/a')}.", "",
              "## Debrief", "", f"What happened: {' '.join(drill.debrief.what_happened.split())}", "",
              "Evidence path:", ""] + [f"- {step}" for step in drill.debrief.evidence_path] + [
              "", f"What good looks like: {' '.join(drill.debrief.good_looks_like.split())}"]
    return "\n".join(lines) + "\n"


def write_experiment_report(run: RunDir, spec: SloSpec) -> Path:
    """Write report.md and report.json of an experiment drill; return the markdown's path."""
    state = run.read_state()
    drill = find_drill(state.drill_id)
    checks = experiment_checks(run, spec)
    grade = _grade(run, drill)
    answers = [a for a in run.answers() if "verdict" in a]
    out = run.report_dir
    out.mkdir(exist_ok=True)
    md = out / "report.md"
    md.write_text(render_experiment_markdown(drill, state.run_id, state.speed, checks, grade, answers))
    (out / "report.json").write_text(json.dumps({
        "schema": EXPERIMENT_RESULT_SCHEMA,
        "drill": {"id": drill.id, "kind": "experiment", "title": drill.title, "briefing": drill.briefing,
                  "truth": {"verdict": drill.truth.verdict, "evidence": drill.truth.evidence}},
        "run_id": state.run_id, "speed": state.speed,
        "checks": checks.get("checks"), "expert": {k: checks.get(k) for k in ("verdict", "evidence", "why")},
        "answers": answers,
        "grade": {"total": grade.total, "max": grade.max_total, "max_total": grade.max_total,
                  "points": {p.part: p.points for p in grade.parts},
                  "parts": [{"part": p.part, "points": p.points, "max_points": p.max_points, "credit": p.credit,
                             "note": p.note} for p in grade.parts],
                  "time_to_diagnose_s": grade.time_to_diagnose_s, "times_in": "scenario seconds",
                  "hints_taken": grade.hints_taken, "hint_penalty": grade.hint_penalty},
    }, indent=2, default=str))
    return md
