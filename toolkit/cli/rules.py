"""``obslab rules``: Prometheus recording/alert rules and their promtool tests from the SLO spec."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from toolkit.cli.base import app, console, user_errors
from toolkit.slo.files import write_rule_files
from toolkit.slo.default_spec import resolve_spec_path
from toolkit.slo.spec import SloSpecError, load_spec


@app.command()
def rules(
    slo: Optional[Path] = typer.Option(None, "--slo", help="SLO spec file (default ./slo.yaml, else the packaged one)."),
    profile: str = typer.Option("prod", "--profile", help="Time profile from the spec: prod (real windows) or lab "
                                                          "(compressed by its time_compression)."),
    out: Path = typer.Option(..., "-o", "--out", help="Directory to write slo.rules.yml and slo.*.test.yml into."),
) -> None:
    """Generate Prometheus rules (SLI error ratios, budget, burn rates, burn-rate and no-data alerts) and
    `promtool test rules` files for one profile."""
    with user_errors(SloSpecError, OSError):
        spec = load_spec(resolve_spec_path(slo)[0])
        prof = spec.profile(profile)
        written = write_rule_files(spec, profile, out)
    windows = ", ".join(f"{w.severity} {w.long}/{w.short} x{w.burn_rate:g}" for w in spec.windows_for(profile))
    console.print(f"{len(spec.slos)} SLOs, profile {profile} (time compression x{prof.time_compression:g}): "
                  f"{windows}")
    for path in written:
        console.print(f"wrote {path}")
