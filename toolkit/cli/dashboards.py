"""``obslab dashboards``: Grafana dashboards (grafana-foundation-sdk) from the SLO spec."""

from __future__ import annotations

from pathlib import Path

import typer

from toolkit.cli.base import app, console, user_errors
from toolkit.slo.files import write_dashboard_files
from toolkit.slo.spec import SloSpecError, load_spec


@app.command()
def dashboards(
    slo: Path = typer.Option(Path("slo.yaml"), "--slo", help="SLO spec file."),
    out: Path = typer.Option(..., "-o", "--out", help="Directory to write the dashboard JSON files into."),
    profile: str = typer.Option("lab", "--profile", help="Profile of the rules the dashboards read (recorded "
                                                         "series are named after the profile's windows)."),
) -> None:
    """Generate the SLO overview, publish funnel/RED, guardrails and debugging dashboards."""
    with user_errors(SloSpecError, OSError):
        spec = load_spec(slo)
        written = write_dashboard_files(spec, out, profile)
    console.print(f"{len(written)} dashboards for {len(spec.slos)} SLOs, profile {profile}:")
    for path in written:
        console.print(f"wrote {path}")
