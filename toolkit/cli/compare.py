"""``obslab compare``: two cohorts side by side, with a canary verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from toolkit.cli._analysis import USER_ERRORS, check_format, emit_json, load, source_text
from toolkit.cli._events_common import LAST_HELP, SINCE_HELP, UNTIL_HELP, parse_synthetic, synthetic_option
from toolkit.cli._tables import fit_table
from toolkit.cli.base import app, console, err_console, user_errors
from contract.durations import format_duration, format_seconds, parse_duration


def _fmt_value(m: dict, side: str) -> str:
    c = m["comparison"]
    if m["kind"] == "proportion":
        s, n = c[f"{side}_successes"], c[f"{side}_total"]
        rate = c[f"{side}_rate"]
        return f"{rate * 100:.2f} % ({s}/{n})" if rate is not None else f"n/a (0/{n})"
    if m["kind"] == "quantile":
        v, n = c[f"{side}_value"], c[f"{side}_n"]
        return f"{v:,.0f} ms (n={n})" if v is not None else f"n/a (n={n})"
    v, n = c[f"{side}_median"], c[f"{side}_n"]
    return f"median {v:,.0f} ms (n={n})" if v is not None else f"n/a (n={n})"


def _fmt_change(m: dict) -> tuple[str, str]:
    if m["change"] is None:
        return "—", "—"
    if m["kind"] == "proportion":
        f = lambda x: f"{x * 100:+.2f} pp"  # noqa: E731
    else:
        f = lambda x: f"{x * 100:+.1f} %"  # noqa: E731
    lo, hi = m["change_ci"]
    ci = f"[{f(lo) if lo is not None else '-inf'}, {f(hi) if hi is not None else '+inf'}]"
    return f(m["change"]), ci


def print_compare(d: dict) -> None:
    w = d["window"]
    if w.get("kind") == "before/after":
        win = f"before/after: control {w['control']}, treatment {w['treatment']}"
    else:
        win = (f"outcome time in ({w.get('start')}, {w.get('end')}] ({format_seconds(w.get('seconds') or 0)}), "
               "same window for both")
    console.print(f"[bold]compare[/] {d['treatment']['selector']} (treatment) vs {d['control']['selector']} (control)",
                  highlight=False)
    console.print(f"window: {win}; synthetic traffic: {d['synthetic']}; source: {d['source']}", highlight=False)
    for side in ("control", "treatment"):
        s = d[side]
        console.print(f"{side}: {s['attempts']} attempts from {s['users']} users "
                      f"({s['synthetic_attempts']} synthetic)", highlight=False)
    table = Table(title="metrics (change = treatment − control: pp for rates, % of control for latencies; "
                        f"{(1 - d['config']['alpha']) * 100:g} % CI)", title_justify="left")
    table.add_column("metric", no_wrap=True)
    for col in ("control", "treatment", "change [CI]", "allowed", "class"):
        table.add_column(col)
    for m in d["metrics"]:
        change, ci = _fmt_change(m)
        allowed = (f"{'-' if m['direction'] == 'decrease' else '+' if m['direction'] == 'increase' else '±'}"
                   + (f"{m['allowed_change'] * 100:g} pp" if m["kind"] == "proportion"
                      else f"{m['allowed_change'] * 100:g} %"))
        cls = m["classification"] + (" ✗" if m["failed"] else "")
        table.add_row(f"{m['name']}\n({m['group']})", _fmt_value(m, "control"), _fmt_value(m, "treatment"),
                      f"{change}\n{ci}", allowed, cls)
    console.print(fit_table(table, console, droppable=("allowed",)))
    srm = d.get("srm")
    if srm:
        console.print(f"SRM: {srm.get('unit', 'users')} {srm['observed']} vs expected shares {[round(x, 4) for x in srm['expected_shares']]}: "
                      f"chi-square p={srm['p_value']:.3g} → {'MISMATCH' if srm['mismatch'] else 'ok'}"
                      + (f" ({srm['unit_reason']})" if srm.get("users_in_both") and srm.get("unit_reason") else ""),
                      highlight=False)
    else:
        console.print("SRM: not checked (pass --expected-split CONTROL:TREATMENT)", highlight=False)
    v = d["verdict"]
    if v.get("multiplicity"):
        console.print(f"multiplicity: {v['multiplicity']}", highlight=False)
    score = "n/a" if v["score"] is None else f"{v['score']:.0f}"
    console.print(f"[bold]verdict: {v['verdict']}[/] (rule {v['rule']}, score {score}): {v['explanation']}",
                  highlight=False)


@app.command()
def compare(
    events: list[Path] = typer.Argument(..., help="Event files, directories or globs (JSONL or Parquet)."),
    control: str = typer.Option(..., "--control", help="Control cohort: key=value[,key=value] or time=START/END."),
    treatment: str = typer.Option(..., "--treatment", help="Treatment cohort, same syntax (e.g. release=canary)."),
    since: Optional[str] = typer.Option(None, help=SINCE_HELP),
    until: Optional[str] = typer.Option(None, help=UNTIL_HELP),
    last: Optional[str] = typer.Option(None, help=LAST_HELP),
    expected_split: Optional[str] = typer.Option(None, help="Intended split CONTROL:TREATMENT (e.g. 95:5) for the SRM check."),
    synthetic: str = synthetic_option(),
    config: Optional[Path] = typer.Option(None, help="Judge config YAML (metrics, thresholds); defaults built in."),
    abandon_after: Optional[str] = typer.Option(
        None, help="No terminal event this long after the last event = abandoned (default: the spec's abandon_after)."),
    slo: Optional[str] = typer.Option(None, help="SLO spec: defines the success rate's good and total "
                                                 "(default ./slo.yaml)."),
    fmt: str = typer.Option("table", "--format", help="table or json (obslab.compare/v1, read by obslab story)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write JSON here instead of stdout."),
) -> None:
    """Compare two cohorts (flag variant, app/service version, time range) over the same window."""
    from toolkit.analysis.compare import compare_attempts, parse_selector, parse_split, parse_window
    from toolkit.cli._events_common import find_spec
    from toolkit.analysis.judge import load_judge_config, with_spec

    with user_errors(*USER_ERRORS):
        check_format(fmt)
        synthetic = parse_synthetic(synthetic).value
        spec = find_spec(slo)
        cfg = with_spec(load_judge_config(config), spec)
        c_sel = parse_selector(control, "--control")
        t_sel = parse_selector(treatment, "--treatment")
        window = parse_window(since, until, last)
        split = parse_split(expected_split)
        abandon = abandon_after or format_duration(spec.abandon_after_s)
        rel, _ = load(events, abandon, until=until)
        result = compare_attempts(rel, c_sel, t_sel, window=window, config=cfg, expected_split=split,
                                  synthetic=synthetic, source=source_text(events),
                                  abandon_after_s=parse_duration(abandon))
        data = result.to_dict()
    if fmt == "json":
        emit_json(data, output)
        if output:  # the JSON went to a file: say what it holds rather than exit in silence
            console.print(f"wrote {output}: control {control} {data['control']['attempts']} attempts, treatment "
                          f"{treatment} {data['treatment']['attempts']} attempts; verdict "
                          f"{data['verdict']['verdict']}", highlight=False, soft_wrap=True)
    else:
        print_compare(data)
    for side, selector in (("control", control), ("treatment", treatment)):
        if not data[side]["attempts"]:
            err_console.print(f"warning: the {side} cohort {selector} has no attempts in the window: nothing to "
                              "compare it with (for release=canary, roll the canary out first: README, "
                              "'The toolkit')", highlight=False, soft_wrap=True)
