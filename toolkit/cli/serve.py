"""``obslab serve``: the publish API (gunicorn, N workers) and the transcoder, until Ctrl-C."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from contract.env import ENV_ADMIN_ALLOW_REMOTE, ENV_ADMIN_TOKEN
from contract.exposure import bind_warning
from contract.layout import make_data_dir
from toolkit.cli.base import app, console, err_console, fail, user_errors
from toolkit.lab.processes import (DEFAULT_API_WORKERS, ServiceProcesses, ServiceStartError, ensure_admin_token,
                               run_until_stopped)

DEFAULT_DATA_DIR = Path(".obslab") / "data"


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (loopback by default)."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port of the publish API."),
    transcoder_port: int = typer.Option(0, min=0, max=65535,
                                        help="Port of the transcoder (0 = the API port + 1)."),
    workers: int = typer.Option(DEFAULT_API_WORKERS, min=1, max=32, help="gunicorn workers of the publish API."),
    data_dir: Path = typer.Option(DEFAULT_DATA_DIR, help="State, events, traces, logs and the admin token."),
    only: str = typer.Option("", help="Run one component only: api or transcoder (one per container)."),
    transcoder_url: str = typer.Option("", help="With --only api: where the transcoder listens."),
) -> None:
    """Start the publish API and the transcoder; stop both on Ctrl-C or SIGTERM."""
    with user_errors(OSError, ValueError):
        data_dir = data_dir.resolve()
        make_data_dir(data_dir)
        token_note = f"admin token from ${ENV_ADMIN_TOKEN}"
        token = os.environ.get(ENV_ADMIN_TOKEN)
        if not token:
            token, token_path = ensure_admin_token(data_dir)
            token_note = f"admin token in {token_path}"
        if only not in ("", "api", "transcoder"):
            raise fail(f"--only: expected api or transcoder, got {only!r}")
        warning = bind_warning([f"{host}:{port}"], os.environ.get(ENV_ADMIN_ALLOW_REMOTE, "").strip().lower()
                               in ("1", "true", "yes"))
        if warning:
            err_console.print(f"[bold yellow]{warning}[/]", soft_wrap=True, highlight=False)
        svc = ServiceProcesses(data_dir, host=host, port=port, transcoder_port=transcoder_port or port + 1,
                               workers=workers, admin_token=token, only=only or None,
                               transcoder_url=transcoder_url or None)
        try:
            svc.start()
        except ServiceStartError as e:
            raise fail(str(e).splitlines()[0]) from None
        try:
            if only == "transcoder":
                lines = [f"transcoder    {svc.transcoder_url}   (metrics at {svc.transcoder_url}/metrics)"]
            else:
                lines = [f"publish API   {svc.base_url}   ({workers} workers; OpenAPI at {svc.base_url}/openapi.json)",
                         f"transcoder    {svc.transcoder_url}",
                         f"metrics       {svc.base_url}/metrics" + ("" if only else f"   {svc.transcoder_url}/metrics"),
                         f"events        {svc.events_dir}/events.jsonl",
                         f"control plane {svc.base_url}/admin/faults, /admin/flags ({token_note})"]
            for line in lines + [f"logs          {svc.logs_dir}"]:
                console.print(line, soft_wrap=True, highlight=False)
            console.print("press Ctrl-C to stop", soft_wrap=True)
            why = run_until_stopped(svc, say=lambda line: err_console.print(line, soft_wrap=True, highlight=False))
        finally:
            svc.stop()
        if "exited" in why:
            raise fail(why, 1)
        err_console.print(f"stopped ({why})", soft_wrap=True)
