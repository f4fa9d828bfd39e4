"""``obslab lab``: the whole lab on this machine, until Ctrl-C."""

from __future__ import annotations

import signal
from pathlib import Path

import typer

from toolkit.cli.base import app, bench_app, console, err_console, user_errors
from toolkit.lab.runtime import Lab, LabConfig, LabError, reset_data_dir
from toolkit.slo.default_spec import resolve_spec_path
from toolkit.slo.spec import SloSpecError


@app.command()
def lab(
    port_web: int = typer.Option(8050, "--port-web", help="Dashboard port on 127.0.0.1."),
    port: int = typer.Option(8000, "--port", help="Publish API port."),
    port_transcoder: int = typer.Option(8001, "--port-transcoder", help="Transcoder port."),
    port_prometheus: int = typer.Option(9090, "--port-prometheus", help="Prometheus port (when it runs)."),
    port_locust: int = typer.Option(8089, "--port-locust", help="Locust web UI port (with --locust-ui)."),
    users: int = typer.Option(6, "--users", min=1, max=500, help="Simulated users (creators + viewers)."),
    locust_ui: bool = typer.Option(False, "--locust-ui", help="Run Locust with its web UI instead of headless."),
    data_dir: Path = typer.Option(Path(".obslab"), "--data-dir", help="Events, traces, state and logs; kept after stop."),
    spec: Path = typer.Option(None, "--spec", help="SLO spec (default: ./slo.yaml, else the spec the package ships)."),
    fresh: bool = typer.Option(False, "--fresh", help="Start over: move the previous run's data (events, drills, "
                               "Prometheus data, load records) to <data-dir>/archive/<time>/ first."),
    no_prometheus: bool = typer.Option(False, "--no-prometheus",
                                       help="Do not start Prometheus; alerts come from the toolkit's burn-rate evaluation."),
) -> None:
    """Run the service, transcoder, steady load, Prometheus (if installed) and the live dashboard until Ctrl-C."""
    config = LabConfig(data_dir=data_dir, spec_path=spec, port_api=port, port_transcoder=port_transcoder,
                       port_web=port_web, port_prometheus=port_prometheus, port_locust_ui=port_locust, users=users,
                       locust_ui=locust_ui, prometheus=False if no_prometheus else None, fresh=fresh)
    the_lab = Lab(config, say=lambda line: console.print(line, highlight=False))
    # SIGTERM (e.g. from a supervisor) and SIGHUP (the terminal closed) stop the lab like Ctrl-C does:
    # its processes run in their own sessions, so nothing else would stop them.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: the_lab.request_stop())
    with user_errors(LabError, SloSpecError, OSError):
        console.print(f"starting the lab in {the_lab.data_dir} …", highlight=False)
        urls = the_lab.start()
        console.print(
            "\n[bold]obslab lab is running[/]  (Ctrl-C stops everything; the data stays in "
            f"{urls.data_dir})\n"
            f"  dashboard      {urls.dashboard}\n"
            f"  publish API    {urls.api}   (control API: {urls.api}/admin/faults, /admin/flags)\n"
            f"  transcoder     {urls.transcoder}\n"
            + (f"  Prometheus     {urls.prometheus}   (lab rules + alerts)\n" if urls.prometheus
               else "  Prometheus     not running: alerts come from the toolkit's burn-rate evaluation over events\n")
            + (f"  Locust web UI  {urls.locust_ui}\n" if urls.locust_ui else
               f"  load           Locust headless, {users} users, until the lab stops (--locust-ui for its web UI)\n")
            + f"  admin token    in {urls.admin_token_file}\n"
            f"  SLO spec       {urls.spec}   ({urls.spec_source})\n"
            + (f"  fresh start    the previous data moved to {urls.archived_to}\n" if urls.archived_to else "")
            + f"  terminal view  obslab top --data-dir {data_dir}\n",
            highlight=False, soft_wrap=True)
        try:
            ended_by = the_lab.wait()
        finally:
            console.print("stopping the lab …", highlight=False)
            the_lab.stop()
        if ended_by:
            err_console.print(f"[bold red]error:[/] {ended_by}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)
        console.print(f"lab stopped; data kept in {urls.data_dir}", highlight=False)


@app.command()
def reset(
    data_dir: Path = typer.Option(Path(".obslab"), "--data-dir", help="The lab's data directory."),
) -> None:
    """Start over: move a stopped lab's data to <data-dir>/archive/<time>/ (nothing is deleted; the venv stays)."""
    with user_errors(LabError, OSError):
        moved = reset_data_dir(data_dir)
    if moved is None:
        console.print(f"nothing to reset in {data_dir}", highlight=False, soft_wrap=True)
    else:
        # soft_wrap: a path the user copies must not be cut by a line break at the terminal's width.
        console.print(f"the lab's data moved to {moved}; the next `obslab lab` starts with an empty event log",
                      highlight=False, soft_wrap=True)


@bench_app.command("lab")
def bench_lab(
    spec: Path = typer.Option(None, "--spec", help="SLO spec (default: ./slo.yaml, else the spec the package ships)."),
    users: int = typer.Option(6, "--users", min=1, help="Simulated users, as `obslab lab --users`."),
    settle: float = typer.Option(60.0, "--settle", min=5, help="Seconds of load over which RSS is sampled."),
    runs: int = typer.Option(1, "--runs", min=1, max=5, help="Runs with Prometheus (plus one without)."),
    write: Path = typer.Option(Path("docs/performance.md"), "--write",
                               help="Markdown file whose '## Embedded lab' section is replaced."),
    no_write: bool = typer.Option(False, "--no-write", help="Print only."),
    fresh_clone: bool = typer.Option(False, "--fresh-clone", help="Instead: clone this checkout's HEAD to a temp dir "
                                     "and time `make lab` there (fresh venv, empty caches) to the first SLI."),
    warm_cache: bool = typer.Option(False, "--warm-cache", help="With --fresh-clone: keep the pip/uv caches."),
) -> None:
    """Embedded lab footprint: RSS of the whole process tree and time to the first SLI on the page."""
    from toolkit.bench.lab import performance_section, run_lab_bench
    from toolkit.bench.perfdoc import write_section

    from toolkit.bench.perfdoc import TargetError, check_target

    with user_errors(RuntimeError, OSError, TargetError):
        if not no_write:
            check_target(write, "--write")  # before minutes of measuring, not after
        if fresh_clone:
            _bench_fresh_clone(write, no_write, cold_cache=not warm_cache)
            return
        results = []
        for prometheus in [True] * runs + [False]:
            r = run_lab_bench(resolve_spec_path(spec)[0].resolve(), users=users, settle_s=settle, prometheus=prometheus)
            console.print(f"prometheus={'yes' if prometheus else 'no'}: first SLI on the page after {r.first_sli_s:.1f} s "
                          f"(all processes up {r.all_started_s or float('nan'):.1f} s, first outcome event "
                          f"{r.first_outcome_s or float('nan'):.1f} s; machine load {r.load_avg[0]:.1f}); "
                          f"RSS of the lab's process tree max {r.rss_max_mb:.0f} MB, median {r.rss_median_mb:.0f} MB "
                          f"({r.processes} processes, {users} users, {len(r.rss_samples_mb)} samples over {settle:.0f} s); "
                          f"{len(r.leftover_pids)} processes left after stop", highlight=False)
            results.append(r)
        command = f"obslab bench lab --users {users} --settle {settle:g} --runs {runs}"
        section = performance_section(results, command)
        if no_write:
            console.print(section, highlight=False)
        else:
            write_section(write, section)
            console.print(f"wrote the 'Embedded lab' section of {write}", highlight=False)


def _bench_fresh_clone(write: Path, no_write: bool, cold_cache: bool) -> None:
    import subprocess

    from toolkit.bench.lab import fresh_clone_section, run_fresh_clone_bench
    from toolkit.bench.perfdoc import write_section

    try:
        repo = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], check=True, capture_output=True,
                                   text=True).stdout.strip())
    except (subprocess.CalledProcessError, FileNotFoundError):
        raise LabError("--fresh-clone runs in an obslab git checkout (it clones its HEAD)") from None
    console.print(f"cloning {repo} (HEAD) and timing `make lab` there; this takes a few minutes …", highlight=False)
    r = run_fresh_clone_bench(repo, cold_cache=cold_cache)
    console.print(f"fresh clone ({r.installer}, {'cold' if cold_cache else 'warm'} cache): first SLI after "
                  f"{r.first_sli_s:.1f} s; " + ", ".join(f"{w} {t:.1f} s" for w, t in r.phases)
                  + f"; machine load {r.load_avg[0]:.1f} → {r.load_avg[1]:.1f}", highlight=False)
    command = "obslab bench lab --fresh-clone" + ("" if cold_cache else " --warm-cache")
    section = fresh_clone_section(r, command)
    if no_write:
        console.print(section, highlight=False)
    else:
        write_section(write, section)
        console.print(f"wrote the '{section.splitlines()[0][3:]}' section of {write}", highlight=False)
