"""``obslab dashboards``: Grafana dashboards (grafana-foundation-sdk) from the SLO spec."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from toolkit.cli.base import app, console, user_errors
from toolkit.slo.files import write_dashboard_files
from toolkit.slo.default_spec import resolve_spec_path
from toolkit.slo.spec import SloSpecError, load_spec


@app.command()
def dashboards(
    slo: Optional[Path] = typer.Option(None, "--slo", help="SLO spec file (default ./slo.yaml, else the packaged one)."),
    out: Path = typer.Option(..., "-o", "--out", help="Directory to write the dashboard JSON files into."),
    profile: str = typer.Option("lab", "--profile", help="Profile of the rules the dashboards read (recorded "
                                                         "series are named after the profile's windows)."),
) -> None:
    """Generate the SLO overview, publish funnel/RED, guardrails and debugging dashboards."""
    with user_errors(SloSpecError, OSError):
        spec = load_spec(resolve_spec_path(slo)[0])
        written = write_dashboard_files(spec, out, profile)
    console.print(f"{len(written)} dashboards for {len(spec.slos)} SLOs, profile {profile}:")
    for path in written:
        console.print(f"wrote {path}")
