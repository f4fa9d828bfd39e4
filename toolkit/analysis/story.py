"""Impact stories: a STAR-shaped markdown statement from a compare, rollout, breakdown or drill result.

Every number is defined where it appears: the statistic, the population it is taken over,
the window, whether synthetic traffic is in, the cohorts and the counts behind it, and the
interval with its method. Then the caveats (sample size, synthetic traffic, sample-ratio
mismatch, seasonality, multiple comparisons), the tradeoff and guardrails watched, and what to
check next. Input is the JSON the other commands write with ``--format json``.
"""

from __future__ import annotations

from typing import Any, Mapping

from contract.durations import format_seconds
from toolkit.measures.percentiles import PERCENTILE_METHOD

__all__ = ["StoryError", "write_story", "SUPPORTED_SCHEMAS"]

SUPPORTED_SCHEMAS = ("obslab.compare/v1", "obslab.rollout/v1", "obslab.breakdown/v1", "obslab.drill-result/v1")


class StoryError(ValueError):
    """The input is not a result ``obslab story`` can tell."""


# --------------------------------------------------------------------------- number formatting


def _method(compare: dict) -> str:
    """The percentile method the comparison used (named in its JSON), in words."""
    method = compare.get("percentile_method") or PERCENTILE_METHOD
    return method.split(" (")[0]


def _n(x: int | float | None) -> str:
    return "n/a" if x is None else f"{int(x):,}"


def _pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x * 100:.{digits}f} %"


def _pp(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.2f} pp"


def _rel(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.1f} %"


def _ms(x: float | None) -> str:
    if x is None:
        return "n/a"
    return f"{x:,.0f} ms" if abs(x) >= 10 else f"{x:.1f} ms"


def _duration(seconds: float | None) -> str:
    """A measured span, the one way every output prints it (``contract.durations.format_seconds``)."""
    if seconds is None:
        return "an unbounded window"
    return format_seconds(float(seconds))


def _traffic(synthetic: str) -> str:
    return {"include": "all traffic, synthetic (load-generator) included",
            "exclude": "real traffic only (synthetic excluded)",
            "only": "synthetic (load-generator) traffic only"}.get(synthetic, synthetic)


def _share_text(compare: Mapping[str, Any]) -> tuple[str, str]:
    split = compare.get("expected_split")
    if split:
        return f"{split['treatment'] * 100:g} % ", f"{split['control'] * 100:g} % "
    return "", ""


# --------------------------------------------------------------------------- compare


def _metric_line(m: Mapping[str, Any], compare: Mapping[str, Any]) -> str:
    c = m["comparison"]
    alpha = c.get("alpha", 0.05)
    level = f"{(1 - alpha) * 100:g} % CI"
    t_name, c_name = compare["treatment"]["selector"], compare["control"]["selector"]
    head = f"**{m['name']}** — {m['description']}"
    if m.get("fallback"):  # too thin to compare, judged against an absolute limit instead
        return f"{head}: {m['reason']}. Classified **{m['classification']}**" + (" — a failure." if m.get("failed") else ".")
    if m["classification"] == "NoData":
        return f"{head}: {c.get('reason') or m['reason']}; no claim either way."
    if m["kind"] == "proportion":
        test = ("Fisher's exact test (small expected counts)" if c.get("test") == "fisher"
                else "two-proportion z-test")
        deff = max(c.get("design_effect_control", 1.0) or 1.0, c.get("design_effect_treatment", 1.0) or 1.0)
        body = (f"{_pct(c['control_rate'])} ({_n(c['control_successes'])}/{_n(c['control_total'])}, {c_name}) → "
                f"{_pct(c['treatment_rate'])} ({_n(c['treatment_successes'])}/{_n(c['treatment_total'])}, {t_name}): "
                f"{_pp(c['difference'])}, {level} [{_pp(c['ci_low'])}, {_pp(c['ci_high'])}] (Newcombe"
                + (f", widened for users' repeated attempts: design effect up to {deff:.2f}" if deff > 1 else "")
                + f"), {test} p = {c['p_value']:.2g}")
    elif m["kind"] == "quantile":
        q = f"p{c['quantile'] * 100:g}"
        body = (f"{q} {_ms(c['control_value'])} ({c_name}, n = {_n(c['control_n'])}) → {_ms(c['treatment_value'])} "
                f"({t_name}, n = {_n(c['treatment_n'])}): {_ms(c['difference'])} ({_rel(c['relative_difference'])}), "
                f"{level} [{_ms(c['ci_low'])}, {_ms(c['ci_high'])}] "
                f"(percentile bootstrap, {_n(c['n_resamples'])} resamples, seed {c['seed']}; {q} by "
                f"{_method(compare)})"
                + (f", bootstrap-SE p = {c['p_value']:.2g}" if c.get("p_value") is not None else ""))
    else:
        body = (f"medians ({_method(compare)}) {_ms(c['control_median'])} ({c_name}, n = {_n(c['control_n'])}) and "
                f"{_ms(c['treatment_median'])} ({t_name}, n = {_n(c['treatment_n'])}); Hodges–Lehmann shift "
                f"{_ms(c['shift'])} ({_rel(c['relative_shift'])}), {level} [{_ms(c['ci_low'])}, {_ms(c['ci_high'])}], "
                f"Mann-Whitney U p = {c['p_value']:.2g}")
    allowed = (_pp(m["allowed_change"]).lstrip("+") if m["kind"] == "proportion"
               else _rel(m["allowed_change"]).lstrip("+"))
    bad = {"increase": "a rise", "decrease": "a fall", "either": "a change"}[m["direction"]]
    verdict = m["classification"] + (" — a failure" if m.get("failed") else "")
    if m.get("p_adjusted") is not None and m.get("p_adjusted") != m.get("p_value"):
        body += f" (Holm-adjusted p = {m['p_adjusted']:.2g})"
    shown = ""
    if m.get("non_inferior") is not None and m.get("harm_bound") is not None and not m.get("failed"):
        harm = _pp(m["harm_bound"]) if m["kind"] == "proportion" else _rel(m["harm_bound"])
        shown = (f" Harm bound {harm}: " + ("inside the allowance, shown non-inferior." if m["non_inferior"] else
                 "beyond the allowance, so not shown to be safe"
                 + (f" (power to show it at this sample: {m['power']:.2f})." if m.get("power") is not None else ".")))
    return f"{head}: {body}. Allowed: {bad} of up to {allowed}. Classified **{verdict}**.{shown}"


def _window_text(compare: Mapping[str, Any]) -> str:
    w = compare.get("window") or {}
    if w.get("kind") == "before/after":
        return (f"before/after: control over {w.get('control')}, treatment over {w.get('treatment')}")
    if w.get("seconds") is None:
        return (f"the same open-ended window, from {w.get('start') or 'the start of the log'} to "
                f"{w.get('end') or 'the end of the log'}, for both cohorts")
    return f"the same window of {_duration(w.get('seconds'))} ({w.get('start')} to {w.get('end')}) for both cohorts"


def _caveats_compare(compare: Mapping[str, Any]) -> list[str]:
    out = []
    t, c = compare["treatment"], compare["control"]
    smaller = min(t["attempts"], c["attempts"])
    nodata = [m["name"] for m in compare["metrics"] if m["classification"] == "NoData"]
    out.append(f"**Sample size**: {_n(t['attempts'])} attempts from {_n(t['users'])} users in the treatment, "
               f"{_n(c['attempts'])} from {_n(c['users'])} users in the control (the smaller cohort: {_n(smaller)})."
               + (f" Not enough data for {', '.join(nodata)}: those metrics make no claim." if nodata else ""))
    syn_t, syn_c = t.get("synthetic_attempts", 0), c.get("synthetic_attempts", 0)
    share = (syn_t + syn_c) / max(1, t["attempts"] + c["attempts"])
    out.append(f"**Synthetic traffic**: {_traffic(compare.get('synthetic', 'include'))}; "
               f"{share * 100:.0f} % of the compared attempts came from the load generator."
               + (" Load-generator behaviour (fixed think times, uniform media) is not real creators': "
                  "confirm on real traffic before quoting this as user impact." if share > 0 else ""))
    srm = compare.get("srm")
    if srm:
        unit = srm.get("unit", "users")
        note = f" ({srm['unit_reason']})" if srm.get("users_in_both") and srm.get("unit_reason") else (
            f" ({srm.get('users_in_both')} users appear in both cohorts, so assignment is per attempt and "
            f"attempts are the unit)" if unit == "attempts" else "")
        out.append(f"**Sample-ratio mismatch**: {unit} per cohort {srm['observed']}{note} against expected shares "
                   f"{[round(s, 4) for s in srm['expected_shares']]}: chi-square p = {srm['p_value']:.2g} "
                   + ("— **mismatch**: assignment or logging is broken; do not trust the deltas."
                      if srm["mismatch"] else f"(no mismatch at the {srm['threshold']:g} threshold)."))
    else:
        out.append("**Sample-ratio mismatch**: not checked (no expected split was given).")
    if (compare.get("window") or {}).get("kind") == "before/after":
        out.append("**Seasonality**: the cohorts cover different times, so time-of-day, traffic mix and any "
                   "concurrent change are confounded with the treatment; prefer a concurrent split.")
    else:
        out.append("**Seasonality**: both cohorts ran concurrently over the same window, so time-of-day and "
                   "traffic-mix effects hit both alike; the result still only speaks for this window.")
    k = len(compare["metrics"]) - len(nodata)
    alpha = compare.get("config", {}).get("alpha", 0.05)
    multiplicity = (compare.get("verdict") or {}).get("multiplicity")
    if multiplicity:
        out.append(f"**Multiple comparisons**: {multiplicity}: a metric counts as significantly changed only "
                   f"if its Holm-adjusted p-value is below that α. Intervals are each at {(1 - alpha) * 100:g} %; a "
                   f"promote needs every primary and critical metric's harm bound inside its allowance, which "
                   f"needs no correction (all must hold).")
    else:
        out.append(f"**Multiple comparisons**: {k} metrics were tested at α = {alpha:g} each; a single marginal "
                   f"result among them is weak evidence on its own.")
    return out


def _unit_text(d: Mapping[str, Any]) -> str:
    srm = d.get("srm") or {}
    if srm.get("unit") == "attempts":
        if srm.get("unit_reason"):
            return srm["unit_reason"][0].upper() + srm["unit_reason"][1:] + "."
        return (f"{_n(srm.get('users_in_both'))} users appear in both cohorts, so assignment was per attempt and "
                f"attempts are the unit of the split.")
    if srm.get("users_moved"):
        return (f"Users are the randomization unit (sticky assignment by user hash); the {_n(srm['users_moved'])} "
                f"who moved to the treatment in the window count once, in the treatment.")
    return "Users are the randomization unit (sticky assignment by user hash)."


def _selector_sql(selector: str) -> str:
    parts = []
    for cond in selector.split(","):
        k, _, v = cond.partition("=")
        parts.append(f"{k.strip()} = '{v.strip()}'" if k.strip() != "time" else f"<outcome time in ({v.strip().replace('/', ', ')}]>")
    return " AND ".join(parts)


def _story_compare(d: Mapping[str, Any]) -> str:
    t, c, v = d["treatment"], d["control"], d["verdict"]
    t_share, c_share = _share_text(d)
    metrics = d["metrics"]
    primary = [m for m in metrics if m["group"] == "primary"]
    secondary = [m for m in metrics if m["group"] == "secondary"]
    guard = [m for m in metrics if m["group"] == "guardrail"]
    lines = [f"# Impact: {t['selector']} vs {c['selector']}", ""]
    lines += ["## Situation", "",
              f"Publish attempts of the video-publish service, {_traffic(d.get('synthetic', 'include'))}, over "
              f"{_window_text(d)}. Treatment: {t_share}{t['selector']} ({_n(t['attempts'])} attempts, "
              f"{_n(t['users'])} users); control: {c_share}{c['selector']} ({_n(c['attempts'])} attempts, "
              f"{_n(c['users'])} users). " + _unit_text(d), ""]
    allowed = "; ".join(f"{m['name']} (bad: {m['direction']}, allowed {(_pp if m['kind'] == 'proportion' else _rel)(m['allowed_change']).lstrip('+')})"
                        for m in primary)
    lines += ["## Task", "",
              f"Decide whether {t['selector']} is safe to promote, on the primary metrics: {allowed}; with "
              f"secondary metrics to explain the mechanism and guardrails that must not regress.", ""]
    lines += ["## Action", "",
              "Compared the cohorts metric by metric: rates with a two-proportion z-test (Fisher's exact test "
              "when counts are small) and a Newcombe interval on the difference, each widened by the users' "
              "design effect where a user made many attempts; latency distributions with Mann-Whitney U and the Hodges–Lehmann shift (the "
              "approach of Kayenta's judge); tail percentiles with a percentile bootstrap; every percentile and "
              f"median {_method(d)}. Each metric was "
              "classified Pass / High / Low / NoData against its allowed change and direction, the weighted "
              f"score compared with the pass ({v['pass_threshold']:g}) and marginal ({v['marginal_threshold']:g}) "
              "thresholds, and the verdict taken by the first rule that applies.", ""]
    score = "n/a" if v["score"] is None else f"{v['score']:.0f}"
    lines += ["## Result", "",
              f"Verdict **{v['verdict']}** (rule `{v['rule']}`, score {score}/100): {v['explanation']}.", ""]
    if v["rule"] == "not-non-inferior":
        lines += ["Nothing was shown to be worse, and nothing was shown to be safe: absence of evidence is not a "
                  "promote. More traffic (or a wider, justified allowance) is what would decide it.", ""]
    for group, ms in (("Primary", primary), ("Secondary", secondary), ("Guardrails", guard)):
        if ms:
            lines.append(f"{group}:")
            lines += [f"- {_metric_line(m, d)}" for m in ms]
            lines.append("")
    better = [m["name"] for m in metrics if m["classification"] in ("High", "Low") and not m["failed"]]
    worse = [m["name"] for m in metrics if m["failed"]]
    lines += ["## Tradeoff and guardrails", ""]
    if better and worse:
        lines.append(f"Tradeoff: improved {', '.join(better)} while {', '.join(worse)} regressed.")
    elif worse:
        lines.append(f"Regressed beyond allowance: {', '.join(worse)}; nothing improved to offset it.")
    elif better:
        lines.append(f"Improved beyond the allowance: {', '.join(better)}, with no metric regressing.")
    else:
        lines.append("No metric moved beyond its allowance in either direction.")
    for m in guard:
        lines.append(f"- Guardrail {m['name']}: {m['classification']}"
                     + (" (breached)" if m["failed"] else " (held)" if m["classification"] != "NoData" else
                        " (too little data to compare; held against its absolute limit)" if m.get("fallback") else
                        " (not enough data to watch it)"))
    lines += ["", "## Caveats", ""] + [f"- {x}" for x in _caveats_compare(d)]
    lines += ["", "## What to check next", ""] + [f"- {x}" for x in _next_compare(d)]
    return "\n".join(lines) + "\n"


def _next_compare(d: Mapping[str, Any]) -> list[str]:
    v = d["verdict"]["verdict"]
    t = d["treatment"]["selector"]
    out = []
    failed = [m for m in d["metrics"] if m["failed"]]
    if failed:
        m = failed[0]
        sel = "failed" if m["kind"] == "proportion" else "slow"
        how = ("--select failed" if sel == "failed" else "--select slow")
        out.append(f"Find who is affected within the treatment: `obslab breakdown EVENTS --select where --where "
                   f"\"({_selector_sql(t)}) AND {'outcome IN (' + chr(39) + 'failed' + chr(39) + ', ' + chr(39) + 'abandoned' + chr(39) + ')' if sel == 'failed' else 'processing_ms > 1000'}\"` "
                   f"(or `{how}` over everything), then compare the cohort it points to.")
    if v == "not_enough_data" or any(m["classification"] == "NoData" for m in d["metrics"]):
        out.append("Collect more traffic: `obslab rollout plan --rate R` shows how many attempts each stage gets, "
                   "the power to see a 1-point success drop and the power to show the rate non-inferior "
                   "(which a promote needs).")
    if v == "promote":
        out.append("Move to the next stage and keep watching the guardrails window by window (`obslab rollout evaluate`).")
    if (d.get("srm") or {}).get("mismatch"):
        out.append("Fix the sample-ratio mismatch first: check the flag's rollout percentage, the user hashing "
                   "and whether one cohort's events are lost (`obslab events validate`, event loss counters).")
    if d.get("synthetic") != "exclude":
        out.append("Repeat with `--synthetic exclude` once real traffic exists, and check the error budget "
                   "(`obslab budget`) for the period.")
    return out


# --------------------------------------------------------------------------- rollout


def _story_rollout(d: Mapping[str, Any]) -> str:
    plan = d["plan"]
    stages = d["stages"]
    flag = f"{plan['flag']}={plan['variant']}"
    ladder = " → ".join(f"{s['percent']:g} %" for s in plan["stages"])
    lines = [f"# Rollout of {flag}: {d['outcome'].replace('_', ' ')}", ""]
    lines += ["## Situation", "",
              f"A staged rollout of {flag} against {plan['flag']}={plan['control']} on the planned ladder {ladder}, "
              f"each stage judged on its own events (variant vs control over the same stage window).", ""]
    lines += ["## Task", "", "Promote only once the variant is shown no worse than control (every primary and "
              "critical metric's harm bound inside its allowance), and roll back automatically on a guardrail "
              "breach, each look tested at its share of α so that repeated looks do not inflate false rollbacks:",
              ""] + [f"- {g['rule']}" for g in plan["guardrails"]] + [""]
    lines += ["## Action", ""]
    watched = {g["metric"] for g in plan["guardrails"]}
    proportions = {g["metric"] for g in plan["guardrails"] if "percentage points" in g["rule"]}
    for s in stages:
        cmp = s.get("compare") or {}
        counts = ""
        if cmp:
            counts = (f" — {_n(cmp['treatment']['attempts'])} variant vs {_n(cmp['control']['attempts'])} control "
                      f"attempts")
        lines.append(f"- {s['percent']:g} % from {s['start']} to {s['end'] or 'now'}: {len(s['windows'])} "
                     f"evaluation window(s){counts}; decision **{s['decision']}**"
                     + (f" (rule `{s['rule']}`)" if s["rule"] else "") + f": {s['explanation']}")
        for w in s["windows"]:
            moved = ", ".join(f"{k} {(_pp if k in proportions else _rel)(v)}" for k, v in w["changes"].items()
                              if v is not None and k in watched)
            lines.append(f"  - window ({w['start']}, {w['end']}]: {_n(w['variant_attempts'])} variant vs "
                         f"{_n(w['control_attempts'])} control attempts that finished in it"
                         + (f"; change {moved}" if moved else "; guardrail metrics without enough data"))
    lines += ["", "## Result", "",
              f"Outcome **{d['outcome'].replace('_', ' ')}** at {d['final_percent']:g} %"
              + (f" (rule `{d['rule']}`)" if d["rule"] else "") + f": {d['explanation']}.", ""]
    judged = [s for s in stages if s.get("compare")]
    if judged:
        last = judged[-1]["compare"]
        lines.append(f"Metrics of the last judged stage ({judged[-1]['percent']:g} %):")
        lines += [f"- {_metric_line(m, last)}" for m in last["metrics"] if m["group"] in ("primary", "guardrail")]
        lines.append("")
    lines += ["## Tradeoff and guardrails", ""]
    breached = [s for s in stages if s["rule"].startswith("guardrail:")]
    lines.append("Guardrail breached: " + ", ".join(s["rule"].split(":", 1)[1] for s in breached) if breached
                 else "No guardrail breached during the stages that ran.")
    lines += ["", "## Caveats", ""]
    if judged:
        lines += [f"- {x}" for x in _caveats_compare(judged[-1]["compare"])]
    else:
        lines.append(f"- **Traffic**: {_traffic(d.get('synthetic', 'include'))}; the counts per window above are "
                     "the sample behind each change.")
    lines.append("- **Windows**: changes are variant vs control over the attempts that finished in each window (latency "
                 "changes relative to control, rates in percentage points); a guardrail needs consecutive windows "
                 "with enough data, and at small percentages windows are often NoData, so only the stage-level "
                 "verdict speaks.")
    lines += ["", "## What to check next", ""]
    if d["outcome"] == "rolled_back":
        lines.append("- Break the regression down within the variant (`obslab breakdown --select failed|slow "
                     f"--where \"{plan['flag']} = '{plan['variant']}'\"`) and confirm the variant is at 0 % "
                     "(`GET /admin/flags`).")
    elif d["outcome"] == "held":
        lines.append("- A human decides: extend the stage for more data (see `obslab rollout plan --rate`) or roll back.")
    else:
        lines.append("- Keep the guardrail panels on the dashboard after 100 %, and compare the week before with the week after.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- breakdown


def _story_breakdown(d: Mapping[str, Any]) -> str:
    sel = d["selection"]
    top = d["top_values"][:3]
    w = d.get("window") or {}
    span = f"attempts started between {w.get('first_started') or w.get('start')} and {w.get('last_started') or w.get('end')}"
    lines = [f"# What sets {sel['description']} apart", ""]
    lines += ["## Situation", "", f"Finished publish attempts ({span}; {_traffic(d.get('synthetic', 'include'))}): "
              f"{_n(d['selection_total'])} in the selection ({sel['description']}) and {_n(d['baseline_total'])} "
              f"in the baseline ({'the rest' if d['baseline'] == 'rest' else 'all attempts'}).", ""]
    lines += ["## Task", "", "Find the cohort that explains the selection, from broad to narrow.", ""]
    lines += ["## Action", "", "Broke every dimension down (cohort dimensions, flags, service version; numeric "
              "fields in quantile bins) and ranked values by share in the selection minus share in the baseline; "
              "a chi-square test per dimension says whether its difference could be chance.", ""]
    lines += ["## Result", ""]
    dims = {x["dimension"]: x for x in d["dimensions"]}
    for v in top:
        p = dims.get(v["dimension"], {}).get("p_value")
        lift = f", {v['lift']:.1f}× as common" if v.get("lift") else ""
        lines.append(f"- **{v['dimension']} = {v['value']}**: {_pct(v['selection_share'], 1)} of the selection "
                     f"({_n(v['selection_count'])}) vs {_pct(v['baseline_share'], 1)} of the baseline "
                     f"({_n(v['baseline_count'])}): {v['difference'] * 100:+.1f} pp{lift}"
                     + (f"; chi-square p = {p:.2g} for {v['dimension']}" if p is not None else ""))
    if top and (dims.get(top[0]["dimension"], {}).get("p_value") or 0) >= 0.05:
        lines.append("")
        lines.append("No dimension differs significantly (every chi-square p ≥ 0.05 among the top values): the "
                     "selection looks like the baseline, so the cause is not a cohort these dimensions describe.")
    lines += ["", "## Caveats", "",
              "- **Association, not cause**: dimensions overlap (a region may run mostly one app version); "
              "confirm by comparing the cohort against the rest.",
              f"- **Sample size**: {_n(d['selection_total'])} attempts in the selection; small values have noisy shares.",
              f"- **Synthetic traffic**: {_traffic(d.get('synthetic', 'include'))}."]
    if top:
        v = top[0]
        numeric = dims.get(v["dimension"], {}).get("numeric")
        how = (f"`obslab breakdown EVENTS --select where --where \"<{v['dimension']} in {v['value']}>\"` to see what else "
               f"that bin shares" if numeric else
               f"`obslab compare EVENTS --control \"{v['dimension']}=<another value>\" --treatment "
               f"\"{v['dimension']}={v['value']}\"` for the effect with intervals")
        lines += ["", "## What to check next", "", f"- {how}, and the traces of a few attempts in that cohort."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- drill


def _story_drill(d: Mapping[str, Any]) -> str:
    drill = d.get("drill") or {}
    grade = d.get("grade") or {}
    truth = drill.get("truth") or d.get("truth") or {}
    lines = [f"# Incident drill: {drill.get('title') or drill.get('id') or 'drill'}", ""]
    lines += ["## Situation", "", (drill.get("briefing") or "").strip() or "(no briefing recorded)", ""]
    lines += ["## Task", "", "Detect, find the cause and the affected cohort, and estimate the impact.", ""]
    lines += ["## Action", ""]
    ttd, ttdiag = grade.get("time_to_detect_s"), grade.get("time_to_diagnose_s")
    lines.append(f"- Detected after {_duration(ttd) if ttd is not None else 'n/a'}"
                 + (f" (by {grade['detected_by']})" if grade.get("detected_by") else "")
                 + f"; diagnosed after {_duration(ttdiag) if ttdiag is not None else 'n/a'}.")
    lines += ["", "## Result", ""]
    if truth:
        cohort = ", ".join(f"{k}={v}" for k, v in (truth.get("cohort") or {}).items()) or "everyone"
        lines.append(f"- Ground truth: cause `{truth.get('cause')}`, cohort {cohort}, "
                     f"{truth.get('metric', 'metric')} went {truth.get('direction', '?')}.")
    if "measured_impact" in d:
        lines.append(f"- Measured impact: {d['measured_impact']:g} ({d.get('impact_definition', 'as defined by the drill')}).")
    for p in grade.get("parts", []):
        lines.append(f"- {p['part']}: {p['points']:g}/{p['max_points']:g} — {p['note']}")
    if "total" in grade:
        lines.append(f"- Score {grade['total']:g}/{grade.get('max_total', 100):g}.")
    lines += ["", "## Caveats", "", "- A drill injects a known fault into synthetic traffic: the numbers show the "
              "method, not production impact."]
    lines += ["", "## What to check next", "", "- Re-run the evidence path with `obslab compare` and `obslab breakdown` "
              "on the drill's events, and turn the debrief into an alert or a guardrail."]
    return "\n".join(lines) + "\n"


def write_story(result: Mapping[str, Any]) -> str:
    """Markdown for a result dict (its ``schema`` key picks the story)."""
    if not isinstance(result, Mapping):
        raise StoryError("expected a JSON object written by obslab compare/rollout/breakdown --format json")
    schema = result.get("schema")
    tellers = {"obslab.compare/v1": _story_compare, "obslab.rollout/v1": _story_rollout,
               "obslab.breakdown/v1": _story_breakdown, "obslab.drill-result/v1": _story_drill}
    if schema not in tellers:
        raise StoryError(f"unsupported schema {schema!r}; expected one of {', '.join(SUPPORTED_SCHEMAS)}")
    try:
        return tellers[schema](result)
    except (KeyError, TypeError) as e:
        raise StoryError(f"{schema} result is missing or has a malformed field: {e}") from None
