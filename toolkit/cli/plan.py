"""``obslab plan``: measurement plans for launch exercises (docs/plans.md).

- ``obslab plan template BRIEF``: a plan skeleton for a launch brief (its id or file), no answer filled in;
- ``obslab plan check PLAN``: every metric checked against the event contract, vague definitions
  flagged, each problem with its file and line; exit 1 when there is any;
- ``obslab plan run PLAN``: the plan's launch run against the running lab (foreground, bounded by the
  launch's duration), then its report: what the plan caught, what it missed, what a stronger plan watches.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from toolkit.cli._tables import fit_table
from toolkit.cli.base import UserError, app, console, user_errors

plan_app = typer.Typer(no_args_is_help=True,
                       help="Measurement plans for launches: `template` a plan for a launch brief, `check` it "
                            "against the event contract.")
app.add_typer(plan_app, name="plan")

_STYLE = {"error": "bold red", "vague": "yellow", "note": "dim"}


@plan_app.command("check")
def check(
    plan: Path = typer.Argument(..., help="The plan (YAML, as `obslab plan template` lays it out)."),
    fmt: str = typer.Option("text", "--format", help="text or json."),
) -> None:
    """Check a plan: is every metric computable from the events, and defined rather than only named?

    Exit 0 when the plan has no problem (notes do not count), 1 when it has any, 2 when it cannot be read."""
    from toolkit.analysis.measurement_plan import PlanFileError, check_plan_file
    from toolkit.drills.launch import load_launches
    from toolkit.drills.schema import DrillSpecError

    if fmt not in ("text", "json"):
        raise UserError(f"--format: expected text or json, got {fmt!r}")
    with user_errors(PlanFileError, DrillSpecError):
        launches = {launch.id: launch.change for launch in load_launches().values()}
        result = check_plan_file(plan, launches=launches)
    if fmt == "json":
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        for problem in result.problems:
            console.print(f"[{_STYLE[problem.kind]}]{escape(problem.render(result.source))}[/]", highlight=False,
                          soft_wrap=True)
        counts = result.counts()
        metrics = len(result.plan.metrics)
        if result.ok:
            console.print(f"[green]ok[/]: {metrics} metrics, each computable from the events and defined"
                          + (f" ({counts['note']} note{'s' if counts['note'] != 1 else ''})" if counts["note"] else ""), highlight=False)
        else:
            console.print(f"{counts['error']} errors, {counts['vague']} vague definitions, {counts['note']} notes "
                          f"in {escape(result.source)} ({metrics} metrics read; docs/plans.md)", highlight=False,
                          soft_wrap=True)
    if not result.ok:
        raise typer.Exit(1)


@plan_app.command("list")
def list_briefs() -> None:
    """The launch briefs to plan for (id, difficulty, title, the change)."""
    from rich.table import Table

    from toolkit.drills.launch import load_launches
    from toolkit.drills.schema import DIFFICULTIES, DrillSpecError

    with user_errors(DrillSpecError):
        launches = sorted(load_launches().values(), key=lambda b: (DIFFICULTIES.index(b.difficulty), b.id))
    table = Table(title="Launch briefs: `obslab plan template ID -o plan.yaml`", title_justify="left")
    table.add_column("id", no_wrap=True)  # typed back by the learner: never cut
    for col in ("difficulty", "title", "change"):
        table.add_column(col)
    for b in launches:
        table.add_row(b.id, b.difficulty, b.title,
                      f"{b.change['flag']}: {b.change['variant']} (control {b.change['control']})")
    console.print(fit_table(table, console))


@plan_app.command("template")
def template(
    brief: str = typer.Argument(..., help="The launch brief: its id in the catalogue, or its YAML file."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the skeleton here instead of stdout."),
) -> None:
    """A plan skeleton for a launch brief: its briefing and change, every field to fill, no answer."""
    from toolkit.analysis.measurement_plan import plan_template
    from toolkit.drills.launch import find_launch
    from toolkit.drills.schema import DrillSpecError

    with user_errors(DrillSpecError, OSError):
        launch = find_launch(brief)
        text = plan_template(launch.id, launch.change["flag"], launch.change["variant"], launch.change["control"],
                             launch.briefing)
        if output is None:
            sys.stdout.write(text)
            return
        if output.exists():
            raise UserError(f"{output} exists; not overwriting your plan (choose another -o)")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
    console.print(f"plan skeleton written to {escape(str(output))}; then `obslab plan check {escape(str(output))}`",
                  highlight=False, soft_wrap=True)


@plan_app.command("run")
def run(
    plan: Path = typer.Argument(..., help="Your plan: it must pass `obslab plan check` and name its launch."),
    data_dir: Path = typer.Option(Path(".obslab"), "--data-dir", help="The lab's data directory."),
    url: Optional[str] = typer.Option(None, "--url", help="The lab's API (default: <data-dir>/lab.json, else "
                                                          "http://127.0.0.1:8000)."),
    speed: float = typer.Option(1.0, "--speed", help="Compress the launch's time by this factor (at most 10)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the load (random if unset)."),
) -> None:
    """Run the launch your plan is for against the lab, then report what the plan caught and missed."""
    import random

    from toolkit.analysis.measurement_plan import PlanFileError, check_plan_file
    from toolkit.drills.lab import LabError, find_lab
    from toolkit.drills.launch import load_launches
    from toolkit.drills.launch_run import LaunchRunError, run_launch, write_launch_report
    from toolkit.drills.schema import DrillSpecError

    with user_errors(PlanFileError, DrillSpecError, LabError, LaunchRunError, OSError):
        launches = load_launches()
        result = check_plan_file(plan, launches={b.id: b.change for b in launches.values()})
        if not result.ok:
            for line in result.lines():
                console.print(escape(line), highlight=False, soft_wrap=True)
            raise UserError(f"{plan} does not pass `obslab plan check`: fix it before the launch", exit_code=1)
        if result.plan.launch is None:
            raise UserError(f"{plan}: name the launch it is for (launch: ID; `obslab plan list`)")
        launch = launches[result.plan.launch]
        lab = find_lab(data_dir, url)
        console.print(f"launch [bold]{launch.id}[/]: {escape(launch.title)} (speed ×{speed:g})", highlight=False)
        done = run_launch(launch, plan.read_text(), lab, seed=random.randrange(1 << 31) if seed is None else seed,
                          speed=speed, say=lambda m: console.print(escape(m), highlight=False), plan=result.plan)
        md = write_launch_report(done, launch, result.plan)
    sys.stdout.write(md)
    console.print(f"report: {escape(str(done.report_dir / 'report.md'))}", highlight=False, soft_wrap=True)
