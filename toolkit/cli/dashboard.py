"""``obslab dashboard``: the lab's web dashboard alone, against a service that runs elsewhere."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Optional

import typer

from toolkit.cli.base import app, console, user_errors
from toolkit.lab.runtime import LabError
from toolkit.lab.web.standalone import StandaloneConfig, StandaloneDashboard, parse_link


@app.command()
def dashboard(
    api_url: str = typer.Option("http://127.0.0.1:8000", "--api-url",
                                help="The publish API (its /admin/* control API drives faults, flags and drills)."),
    prometheus_url: Optional[str] = typer.Option(None, "--prometheus-url",
                                                 help="Prometheus with the lab rules (alert state); "
                                                      "default: burn rates evaluated over the events."),
    data_dir: Path = typer.Option(Path(".obslab"), "--data-dir",
                                  help="The service's data directory (events, traces); drill runs are kept here."),
    spec: Path = typer.Option(Path("slo.yaml"), "--spec", help="SLO spec."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (loopback by default)."),
    port: int = typer.Option(8050, "--port", min=1, max=65535, help="Dashboard port."),
    link: list[str] = typer.Option([], "--link", help="NAME=URL shown in the page header (repeatable)."),
) -> None:
    """Serve the live dashboard (tiles, request explorer, faults and flags, drills) until Ctrl-C or SIGTERM."""
    with user_errors(LabError, ValueError, OSError):
        config = StandaloneConfig(data_dir=data_dir, spec_path=spec, api_url=api_url, prometheus_url=prometheus_url,
                                  host=host, port=port, links=tuple(parse_link(x) for x in link))
        served = StandaloneDashboard(config)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda *_: served.request_stop())
        url = served.start()
        try:
            console.print(f"dashboard {url}  (API {config.api_url}, "
                          f"Prometheus {config.prometheus_url or 'none: alerts from the events'}, "
                          f"data {served.data_dir}); Ctrl-C stops it", highlight=False, soft_wrap=True)
            served.wait()
        finally:
            served.stop()
