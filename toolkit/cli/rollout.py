"""``obslab rollout plan|evaluate|run``: staged rollout of a flag variant with guardrails."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from toolkit.cli._analysis import USER_ERRORS, check_format, emit_json, load, source_text
from toolkit.cli._events_common import parse_synthetic, synthetic_option
from toolkit.cli.base import UserError, app, console, user_errors
from contract.durations import parse_duration

rollout_app = typer.Typer(help="Staged rollout of a flag variant: plan, evaluate from events, run against a lab.",
                          no_args_is_help=True)
app.add_typer(rollout_app, name="rollout")

TOKEN_ENV = "OBSLAB_ADMIN_TOKEN"


def print_plan(d: dict) -> None:
    plan = d["plan"]
    console.print(f"[bold]rollout plan[/] {plan['flag']}: {plan['control']} → {plan['variant']}", highlight=False)
    table = Table(title_justify="left")
    cols = ["percent", "min duration", "window"]
    extra = "expected_variant_attempts_per_window" in (d["stages"][0] if d["stages"] else {})
    if extra:
        cols += ["variant attempts/window", "variant attempts/stage", "power: roll back −1 pp success",
                 "power: show non-inferior"]
    for c in cols:
        table.add_column(c)
    for s in d["stages"]:
        row = [f"{s['percent']:g} %", s["duration"], s["window"]]
        if extra:
            row += [f"{s.get('expected_variant_attempts_per_window', '—')}", f"{s.get('expected_variant_attempts_per_stage', '—')}",
                    f"{s['power_to_roll_back_success_drop']:.2f}" if "power_to_roll_back_success_drop" in s else "—",
                    f"{s['power_to_show_non_inferiority']:.2f}" if "power_to_show_non_inferiority" in s else "—"]
        table.add_row(*row)
    console.print(table)
    for g in plan["guardrails"]:
        console.print(f"guardrail: {g['rule']}", highlight=False)
    if "always_valid" in d:
        console.print(f"looks: {d['always_valid']['rule']}", highlight=False)
    if "assumptions" in d:
        a = d["assumptions"]
        console.print(f"assuming {a['rate_per_s']:g} attempts/s, baseline success {a['baseline_success'] * 100:g} %; "
                      f"power of the stage's last look to show a {a['detect_drop'] * 100:g} pp drop beyond the "
                      f"{a['non_inferiority_margin'] * 100:g} pp margin (always-valid, α={a['rollback_alpha']:.3g}); "
                      f"power to show the success rate within {a['non_inferiority_margin'] * 100:g} pp (non-inferior, "
                      f"what a promote needs, α={a['non_inferiority_alpha']:.3g}) if nothing changed", highlight=False)


def print_result(d: dict) -> None:
    for s in d["stages"]:
        console.print(f"stage {s['percent']:g} % ({s['start']}, {s['end']}]: {len(s['windows'])} window(s) → "
                      f"[bold]{s['decision']}[/] {('(' + s['rule'] + ')') if s['rule'] else ''} {s['explanation']}",
                      highlight=False)
    console.print(f"[bold]outcome: {d['outcome']}[/] at {d['final_percent']:g} %"
                  + (f" (rule {d['rule']})" if d["rule"] else "") + f": {d['explanation']}", highlight=False)


@rollout_app.command("plan")
def plan_cmd(
    plan: Optional[Path] = typer.Option(None, help="Rollout plan YAML (defaults: 1→5→25→100 %, p99 and success guardrails)."),
    rate: Optional[float] = typer.Option(None, help="Expected publish attempts per second, to size the stages."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
    output: Optional[Path] = typer.Option(None, "--output", "-o"),
) -> None:
    """Show the stages, guardrails and (with --rate) the data each stage will have."""
    from toolkit.analysis.rollout import load_plan, plan_summary

    with user_errors(*USER_ERRORS):
        check_format(fmt)
        if rate is not None and rate <= 0:
            raise UserError(f"--rate must be positive, got {rate}")
        data = plan_summary(load_plan(plan), rate_per_s=rate)
    emit_json(data, output) if fmt == "json" else print_plan(data)


def _parse_stage(text: str) -> tuple[float, datetime, datetime | None]:
    from toolkit.analysis.compare import _parse_ts

    pct, at, span = text.partition("@")
    start, slash, end = span.partition("/")
    if not at or not slash:
        raise ValueError(f"--stage: expected PERCENT@START/END, got {text!r}")
    try:
        percent = float(pct)
    except ValueError:
        raise ValueError(f"--stage: {pct!r} is not a percentage") from None
    start_t, end_t = _parse_ts(start, "--stage"), (_parse_ts(end, "--stage") if end else None)
    if end_t is not None and end_t <= start_t:
        raise ValueError(f"--stage {text!r}: the stage is {'empty' if end_t == start_t else 'inverted'}: "
                         "END must be after START (a stage holds outcome times in (START, END])")
    return percent, start_t, end_t


def _with_spec(plan, slo: str | None, abandon_after: str | None):
    """The plan judged with the spec's success definition, and the abandon-after to read attempts with."""
    from dataclasses import replace

    from toolkit.cli._events_common import find_spec
    from contract.durations import format_duration
    from toolkit.analysis.judge import with_spec

    spec = find_spec(slo)
    return replace(plan, judge=with_spec(plan.judge, spec)), abandon_after or format_duration(spec.abandon_after_s)


@rollout_app.command("evaluate")
def evaluate_cmd(
    events: list[Path] = typer.Argument(..., help="Event files, directories or globs."),
    log: Optional[Path] = typer.Option(None, help="Decision log of a run (stage times come from it)."),
    stage: Optional[list[str]] = typer.Option(None, help="PERCENT@START/END, repeatable (instead of --log); a stage "
                                                         "and its windows hold the attempts whose outcome time is "
                                                         "after START and at or before END (as --since/--until)."),
    plan: Optional[Path] = typer.Option(None, help="Rollout plan YAML."),
    synthetic: str = synthetic_option(),
    abandon_after: Optional[str] = typer.Option(
        None, help="No terminal event this long after the last event = abandoned (default: the spec's abandon_after)."),
    slo: Optional[str] = typer.Option(None, help="SLO spec: defines the success rate's good and total "
                                                 "(default ./slo.yaml)."),
    fmt: str = typer.Option("table", "--format", help="table or json (obslab.rollout/v1)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o"),
) -> None:
    """Judge each stage of a rollout from its events: windows, guardrails, stage verdicts."""
    from toolkit.analysis.rollout import evaluate_timeline, load_plan, timeline_from_log

    with user_errors(*USER_ERRORS):
        check_format(fmt)
        if bool(log) == bool(stage):
            raise UserError("give the stage times either with --log DECISIONS.jsonl or with --stage (not both)")
        timeline = timeline_from_log(log) if log else [_parse_stage(s) for s in stage]
        the_plan, abandon_after = _with_spec(load_plan(plan), slo, abandon_after)
        rel, _ = load(events, abandon_after)
        result = evaluate_timeline(rel, the_plan, timeline, synthetic=parse_synthetic(synthetic).value,
                                   source=source_text(events), abandon_after_s=parse_duration(abandon_after))
        data = result.to_dict()
    emit_json(data, output) if fmt == "json" else print_result(data)


@rollout_app.command("run")
def run_cmd(
    events: Path = typer.Option(..., help="The lab's events directory (DATA_DIR/events)."),
    log: Path = typer.Option(..., help="Decision log to append to (JSONL)."),
    plan: Optional[Path] = typer.Option(None, help="Rollout plan YAML."),
    url: str = typer.Option("http://127.0.0.1:8000", help="The service's base URL."),
    token: Optional[str] = typer.Option(None, help=f"Admin token (default: ${TOKEN_ENV})."),
    synthetic: str = synthetic_option(),
    abandon_after: Optional[str] = typer.Option(
        None, help="No terminal event this long after the last event = abandoned (default: the spec's abandon_after)."),
    slo: Optional[str] = typer.Option(None, help="SLO spec: defines the success rate's good and total "
                                                 "(default ./slo.yaml)."),
    fmt: str = typer.Option("table", "--format", help="table or json (obslab.rollout/v1)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o"),
) -> None:
    """Drive the flag stage by stage in a running lab; roll back on a breach, a rollback verdict or an error."""
    from toolkit.analysis.rollout import DecisionLog, FlagControl, load_plan, run_rollout

    with user_errors(*USER_ERRORS):
        check_format(fmt)
        the_plan, abandon_after = _with_spec(load_plan(plan), slo, abandon_after)
        token = token or os.environ.get(TOKEN_ENV)
        if not token:
            raise UserError(f"no admin token: pass --token or set {TOKEN_ENV}")
        if not events.is_dir():
            raise UserError(f"{events}: not a directory (the lab's events directory)")
        control = FlagControl(url, token, the_plan)
        decision_log = DecisionLog(log)

        def show(entry: dict) -> None:
            if fmt == "table" and entry["action"] != "plan":
                detail = {k: entry[k] for k in ("percent", "decision", "rule", "explanation", "verdict", "index")
                          if k in entry and entry[k] not in (None, "")}
                console.print(f"{entry['at']} {entry['action']} {detail}", highlight=False)

        try:
            result = run_rollout(the_plan, set_percent=control.set_percent,
                                 load_attempts=lambda: load([events], abandon_after)[0], log=decision_log,
                                 synthetic=parse_synthetic(synthetic).value, on_event=show,
                                 abandon_after_s=parse_duration(abandon_after))
        finally:
            decision_log.close()
        data = result.to_dict()
        data["source"] = str(events)
        data["decision_log"] = str(log)
    emit_json(data, output) if fmt == "json" else print_result(data)


@rollout_app.command("simulate")
def simulate_cmd(
    plan: Optional[Path] = typer.Option(None, help="Rollout plan YAML (default: the default ladder)."),
    runs: int = typer.Option(200, help="Simulated rollouts per scenario."),
    seed: int = typer.Option(0, help="Seed of the first scenario (scenario i uses seed + i)."),
    rate: float = typer.Option(15.0, help="Attempts per second (15 ≈ the lab under load)."),
    standard: bool = typer.Option(False, "--standard", help="Run the scenarios published in docs/analysis.md."),
    success_drop: float = typer.Option(0.0, help="Absolute fall of the variant's success probability (0.01 = 1 pp)."),
    latency_factor: float = typer.Option(1.0, help="Variant latencies × this (1.2 = p95 +20 %)."),
    heavy_users: bool = typer.Option(False, "--heavy-users", help="Sticky heavy-tailed users (Pareto 1.5 activity, "
                                                                  "per-user success and latency) instead of a new "
                                                                  "user per attempt."),
    continue_on_hold: bool = typer.Option(False, "--continue-on-hold",
                                          help="A held stage goes on to the next (every look is taken)."),
    looks_per_window: int = typer.Option(1, "--looks-per-window",
                                         help="Looks per planned window (2: twice as often as planned)."),
    fmt: str = typer.Option("table", "--format", help="table (markdown) or json."),
    output: Optional[Path] = typer.Option(None, "--output", "-o"),
) -> None:
    """Simulate rollouts of an unchanged (A/A) or regressed variant under the plan's rules, in-process:
    the false-rollback rate over repeated looks and the power to catch regressions."""
    from toolkit.analysis import simulate as sim
    from toolkit.analysis.rollout import load_plan

    with user_errors(*USER_ERRORS):
        check_format(fmt)
        if runs < 1 or rate <= 0:
            raise UserError(f"--runs must be ≥ 1 and --rate positive, got {runs} and {rate}")
        if looks_per_window < 1:
            raise UserError(f"--looks-per-window must be ≥ 1, got {looks_per_window}")
        if standard and looks_per_window != 1:
            raise UserError("--looks-per-window applies to one scenario; --standard sets its own")
        if not 0 <= success_drop < 1 or latency_factor <= 0:
            raise UserError("--success-drop must be in [0, 1) and --latency-factor positive")
        the_plan = sim.simulation_plan(load_plan(plan))
        if standard:
            summaries = sim.standard_scenarios(runs, seed, rate, the_plan, continue_on_hold)
        else:
            traffic = sim.Traffic(rate_per_s=rate, **(sim.HEAVY_USERS if heavy_users else {}))
            summaries = [sim.simulate_rollouts(the_plan, traffic, sim.Regression(success_drop, latency_factor), runs,
                                               seed, "custom", continue_on_hold, looks_per_window)]
        data = {"schema": "obslab.rollout-simulation/v1", "metrics": list(sim.SIMULATION_METRICS),
                "continue_on_hold": continue_on_hold, "scenarios": [s.to_dict() for s in summaries]}
    if fmt == "json":
        emit_json(data, output)
        return
    first = summaries[0]
    text = (f"always-valid intervals: α {first.stage_alpha:.4g} a stage (promote), {first.rollback_alpha:.4g} "
            f"a metric (rollback), however many looks; {rate:g} attempts/s, "
            f"{'held stages continue' if continue_on_hold else 'a hold stops the rollout'}\n\n"
            + sim.summary_table(summaries) + "\n")
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
    typer.echo(text)  # markdown as is: no rich wrapping of the table rows
