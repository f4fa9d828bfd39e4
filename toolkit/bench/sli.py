"""SLI engine benchmark: the full SLI report from JSONL and Parquet, DuckDB vs a plain pandas version.

``run_bench(events=5_000_000)`` generates a seeded synthetic log (``toolkit.events.synth``)
once, as JSONL and Parquet, in a cache directory, and compacts the Parquet file into
an archive (``obslab events compact``: events by day plus their stored fold, timed
as its own run); then runs each (engine, input)
in its own child process — so each peak RSS is that run's own (``os.wait4``
rusage) — and times the report inside the child (load + fold + every figure,
series and breakdown; interpreter start-up and imports excluded, reported
separately as wall time). The pandas version computes the same totals, series
and breakdown with straightforward pandas/numpy code and is checked to agree
with DuckDB on the headline figures.

``render_section(result, command)`` is the ``docs/performance.md`` section (toolkit.bench.perfdoc writes it) under
``## SLI engine``, leaving other sections alone.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from contract.env import ENV_BENCH_DIR

__all__ = ["BenchRun", "BenchResult", "run_bench", "prepare_data", "render_section", "SECTION_TITLE", "TARGETS"]

SECTION_TITLE = "## SLI engine"
TARGETS = {"parquet_events_per_s": 10e6, "jsonl_events_per_s": 2.5e6, "peak_rss_mb": 500.0, "speedup_vs_pandas": 10.0}
BREAKDOWN = ("region", "release")
WINDOW_S = 300.0
# Events per generation block: bounds the generator's memory however large the run.
BLOCK_EVENTS = 250_000
# Arrival rate of the benchmark's traffic: a busy lab (5 M events ≈ 5 hours, 60 five-minute windows).
ATTEMPTS_PER_S = 20.0
DATA_VERSION = 2  # bump when the generated data changes, so caches are not reused


@dataclass(frozen=True)
class BenchRun:
    engine: str  # "duckdb" | "pandas" | "compact"
    format: str  # "jsonl" | "parquet" (one file, time order) | "archive" (obslab events compact's output)
    events: int
    report_s: float  # time of the report inside the child
    cpu_s: float  # CPU time (all threads) of the report inside the child
    wall_s: float  # child process wall time, start-up included
    peak_rss_mb: float
    load_avg: float  # 1-minute load average when the run ended (the machine is shared)
    headline: dict  # figures used to check the engines agree
    prefolded_files: int = 0  # files the DuckDB run read through their stored fold

    @property
    def events_per_s(self) -> float:
        return self.events / self.report_s if self.report_s > 0 else float("inf")


@dataclass(frozen=True)
class BenchResult:
    events: int
    jsonl_bytes: int
    parquet_bytes: int
    data_dir: str
    runs: tuple[BenchRun, ...]
    agree: bool
    disagreements: tuple[str, ...]
    machine: str
    archive_bytes: int = 0  # events + stored fold
    compaction: BenchRun | None = None  # obslab events compact of the Parquet file (None: archive was cached)

    def run(self, engine: str, fmt: str) -> BenchRun | None:
        return next((r for r in self.runs if r.engine == engine and r.format == fmt), None)


def default_cache_dir() -> Path:
    return Path(os.environ.get(ENV_BENCH_DIR, Path(tempfile.gettempdir()) / "obslab-bench"))


def prepare_data(events: int, seed: int = 20260105, cache_dir: Path | None = None,
                 log=lambda msg: None) -> tuple[Path, Path]:
    """JSONL and Parquet files of exactly ``events`` synthetic events (reused when cached)."""
    import pyarrow.parquet as pq

    from toolkit.events.synth import EVENT_ARROW_SCHEMA, SynthConfig, generate, write_jsonl

    d = (cache_dir or default_cache_dir()) / f"sli-v{DATA_VERSION}-{events}-{seed}"
    jsonl, parquet, done = d / "events.jsonl", d / "events.parquet", d / ".complete"
    if done.exists() and jsonl.exists() and parquet.exists():
        log(f"using cached events in {d}")
        return jsonl, parquet
    d.mkdir(parents=True, exist_ok=True)
    log(f"generating {events:,} events in {d} (seed {seed}) …")
    base = SynthConfig()
    # Blocks of attempts, each its own seed and time span, appended in time order.
    per_block_attempts = max(1, BLOCK_EVENTS // 14)
    block_s = per_block_attempts / ATTEMPTS_PER_S
    written = 0
    block = 0
    jsonl.unlink(missing_ok=True)
    writer = pq.ParquetWriter(parquet, EVENT_ARROW_SCHEMA, compression="zstd")
    try:
        with open(jsonl, "ab"):
            pass
        while written < events:
            start = base.start + timedelta(seconds=block * block_s)
            table = generate(SynthConfig(attempts=per_block_attempts, start=start, duration_s=block_s),
                             seed=seed + block)
            table = table.slice(0, min(table.num_rows, events - written))
            _append_jsonl(table, jsonl, write_jsonl)
            writer.write_table(table, row_group_size=1_000_000)
            written += table.num_rows
            block += 1
            if block % 4 == 0:
                log(f"  {written:,} events")
    finally:
        writer.close()
    done.write_text(datetime.now(timezone.utc).isoformat())
    return jsonl, parquet


def _append_jsonl(table, path: Path, write_jsonl) -> None:
    tmp = path.with_suffix(".part")
    write_jsonl(table, tmp)
    with open(path, "ab") as out, open(tmp, "rb") as src:
        while chunk := src.read(1 << 24):
            out.write(chunk)
    tmp.unlink()


def prepare_archive(parquet: Path, events: int, log=lambda msg: None) -> tuple[Path, BenchRun | None]:
    """``obslab events compact`` of the Parquet file, beside it (reused when cached for this fold definition)."""
    from toolkit.events.fold import FOLD_KEY

    archive = parquet.parent / f"archive-{FOLD_KEY}"
    done = archive / ".complete"
    if done.exists():
        log(f"using cached archive {archive}")
        return archive, None
    if archive.exists():
        import shutil
        shutil.rmtree(archive)
    log(f"compacting {parquet.name} into {archive} …")
    run = _spawn_and_measure("compact", "parquet", str(parquet), str(archive), events)
    done.write_text(datetime.now(timezone.utc).isoformat())
    return archive, run


def _spawn_and_measure(engine: str, fmt: str, path: str, spec_path: str, events: int) -> BenchRun:
    """Start the child and wait for it with wait4, so its rusage is its own (not the max of all children)."""
    cmd = [sys.executable, "-m", "toolkit.bench.sli", engine, path, spec_path]
    out_file = tempfile.TemporaryFile(mode="w+")
    err_file = tempfile.TemporaryFile(mode="w+")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=out_file, stderr=err_file, text=True)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    out_file.seek(0)
    err_file.seek(0)
    out, err = out_file.read(), err_file.read()
    if proc.returncode != 0:
        tail = " | ".join(err.strip().splitlines()[-3:])
        raise RuntimeError(f"bench child {engine}/{fmt} exited {proc.returncode}: {tail}")
    data = json.loads(out.strip().splitlines()[-1])
    # The child's own high-water mark (VmHWM); rusage.ru_maxrss also counts the pre-exec copy of this
    # (large) parent after fork, so it is only the fallback.
    peak_mb = data.get("peak_rss_mb") or usage.ru_maxrss / 1024.0
    return BenchRun(engine, fmt, events, data["seconds"], data["cpu_seconds"], wall, peak_mb, os.getloadavg()[0],
                    data["headline"], data.get("prefolded_files", 0))


def run_bench(events: int = 5_000_000, *, seed: int = 20260105, cache_dir: Path | None = None,
              spec_path: str | None = None, pandas_formats: tuple[str, ...] = ("archive", "parquet", "jsonl"),
              log=lambda msg: None) -> BenchResult:
    """Generate (or reuse) the data, run every engine × format in its own process, compare."""
    spec_path = spec_path or str(Path(__file__).resolve().parents[2] / "slo.yaml")
    jsonl, parquet = prepare_data(events, seed, cache_dir, log)
    archive, compaction = prepare_archive(parquet, events, log)
    runs = []
    for engine, fmt, path in (("duckdb", "archive", archive), ("duckdb", "parquet", parquet),
                              ("duckdb", "jsonl", jsonl), ("pandas", "archive", archive),
                              ("pandas", "parquet", parquet), ("pandas", "jsonl", jsonl)):
        if engine == "pandas" and fmt not in pandas_formats:
            continue
        log(f"running {engine} on {fmt} …")
        run = _spawn_and_measure(engine, fmt, str(path), spec_path, events)
        log(f"  {run.report_s:.2f} s, {run.events_per_s / 1e6:.2f} M events/s, peak RSS {run.peak_rss_mb:.0f} MB")
        if engine == "duckdb" and (run.prefolded_files > 0) != (fmt == "archive"):
            raise RuntimeError(f"duckdb on {fmt} read {run.prefolded_files} file(s) through a stored fold; "
                               f"expected {'some' if fmt == 'archive' else 'none'}")
        runs.append(run)
    disagreements = []
    ref = runs[0].headline
    for r in runs[1:]:
        for k, v in ref.items():
            other = r.headline.get(k)
            if isinstance(v, float) and isinstance(other, float):
                same = abs(v - other) <= 1e-9 * max(1.0, abs(v))
            else:
                same = v == other
            if not same:
                disagreements.append(f"{r.engine}/{r.format} {k}: {other!r} vs {runs[0].engine}/{runs[0].format} {v!r}")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    archive_bytes = sum(f.stat().st_size for f in archive.rglob("*.parquet"))
    return BenchResult(events, jsonl.stat().st_size, parquet.stat().st_size, str(jsonl.parent), tuple(runs),
                       not disagreements, tuple(disagreements), machine, archive_bytes, compaction)


# -- child side ---------------------------------------------------------------------------

def _duckdb_report(path: str, spec_path: str) -> dict:
    from toolkit.events import load_events
    from toolkit.measures.sli import SliQuery, compute_report
    from toolkit.slo.spec import load_spec

    spec = load_spec(spec_path)
    t0 = time.perf_counter()
    events = load_events([path], with_ids=False)
    report = compute_report(events, spec, SliQuery(window_s=WINDOW_S, by=BREAKDOWN)).to_dict()
    seconds = time.perf_counter() - t0
    t = report["totals"]
    figs = {f["name"]: f for g in ("primary", "latency", "secondary") for f in t[g]}
    headline = {
        "attempts": t["counts"]["attempts"], "succeeded": t["counts"]["succeeded"],
        "failed": t["counts"]["failed"], "abandoned": t["counts"]["abandoned"],
        "cancelled": t["counts"]["cancelled"],
        "success_rate": figs["publish_success_rate"]["value"], "latency_sli": figs["latency_sli"]["value"],
        "processing_p95": figs["processing_latency_p95"]["value"], "e2e_p99": figs["e2e_latency_p99"]["value"],
        "chunk_retry_rate": figs["chunk_retry_rate"]["value"],
        "transcode_p95": figs["transcode_latency_p95"]["value"],
        "series_points": len(report["series"]["points"]), "segments": len(report["breakdown"]["segments"]),
    }
    return {"seconds": seconds, "headline": headline, "prefolded_files": events.prefolded_files}


def _compact(path: str, archive: str) -> dict:
    from toolkit.events import compact

    t0 = time.perf_counter()
    compact([path], archive)
    return {"seconds": time.perf_counter() - t0, "headline": {}}


def _pandas_report(path: str, spec_path: str) -> dict:
    """The same report in straightforward pandas: group events per request, then aggregate."""
    import numpy as np
    import pandas as pd

    from toolkit.slo.spec import load_spec

    spec = load_spec(spec_path)
    abandon = pd.Timedelta(seconds=spec.abandon_after_s)
    threshold = next(s for s in spec.slos if s.kind == "latency").threshold_s * 1000.0
    cols = ["ts", "event", "request_id", "region", "flags", "synthetic", "duration_ms", "error_class",
            "chunk_count", "queue_wait_ms", "service"]
    t0 = time.perf_counter()
    if path.endswith(".parquet") or os.path.isdir(path):
        files = [path] if path.endswith(".parquet") else sorted(str(f) for f in Path(path).glob("day=*/*.parquet"))
        df = pd.concat([pd.read_parquet(f, columns=cols) for f in files], ignore_index=True)
        df["release"] = df["flags"].map(lambda f: f["release"] if f else None)
    else:
        # In chunks, keeping only the needed columns: one 5 M-line frame of every field needs > 10 GB.
        chunks = pd.read_json(path, lines=True, dtype=False, convert_dates=False, chunksize=250_000)
        df = pd.concat([c.reindex(columns=cols) for c in chunks], ignore_index=True)
        df["ts"] = pd.to_datetime(df["ts"], format="%Y-%m-%dT%H:%M:%S.%fZ")
        df["release"] = df["flags"].map(lambda f: f.get("release") if isinstance(f, dict) else None)
    df = df[df["request_id"].notna()
            & ~df["event"].isin(["upload_rejected", "fault_changed", "flag_changed", "shed_changed"])]
    g = df.groupby("request_id")
    a = pd.DataFrame({"first": g["ts"].min(), "last": g["ts"].max(),
                      "region": g["region"].first(), "release": g["release"].first()})

    def first_ts(names):
        sub = df[df["event"].isin(names)]
        return sub.groupby("request_id")["ts"].min()

    def count(name):
        return df[df["event"] == name].groupby("request_id").size()

    terminal = df[df["event"].isin(["publish_succeeded", "publish_failed", "upload_cancelled"])]
    terminal = terminal.sort_values("ts").groupby("request_id").first()
    a["started"] = first_ts(["upload_started"])
    a["completed"] = first_ts(["upload_completed"])
    a["ended"] = terminal["ts"]
    a["terminal"] = terminal["event"]
    for name, col in (("chunk_uploaded", "up"), ("chunk_retry", "retry"), ("chunk_failed", "cfail"),
                      ("upload_completed", "completes"), ("transcode_completed", "tc"),
                      ("transcode_failed", "tf")):
        a[col] = count(name).reindex(a.index).fillna(0).astype("int64")
    a["transcode_ms"] = df[df["event"] == "transcode_completed"].groupby("request_id")["duration_ms"].max()
    # Timed-out API requests: chunk uploads, plus one complete whose transcode or publish timed out.
    timed_out = df[df["error_class"] == "timeout"]
    chunk_timeouts = timed_out[timed_out["event"] == "chunk_failed"].groupby("request_id").size()
    complete_timeouts = timed_out[timed_out["event"].isin(["transcode_failed", "publish_failed"])] \
        .groupby("request_id").size().clip(upper=1)
    a["timeouts"] = chunk_timeouts.reindex(a.index).fillna(0) + complete_timeouts.reindex(a.index).fillna(0)
    as_of = df["ts"].max()
    outcome = a["terminal"].map({"publish_succeeded": "succeeded", "publish_failed": "failed",
                                 "upload_cancelled": "cancelled"})
    silent = outcome.isna()
    outcome[silent] = np.where(a.loc[silent, "last"] + abandon < as_of, "abandoned", "in_flight")
    a["outcome"] = outcome
    succ = a["outcome"] == "succeeded"
    a["processing_ms"] = np.where(succ, (a["ended"] - a["completed"]).dt.total_seconds() * 1000.0, np.nan)
    a["e2e_ms"] = np.where(succ, (a["ended"] - a["started"]).dt.total_seconds() * 1000.0, np.nan)
    a["outcome_at"] = a["ended"].where(a["ended"].notna(), a["last"] + abandon)
    a.loc[a["outcome"] == "in_flight", "outcome_at"] = pd.NaT
    a["requests"] = 1 + a["up"] + a["cfail"] + a["completes"] + (a["outcome"] == "cancelled")

    def pct(values, q):
        v = values.dropna().to_numpy()
        return float(np.quantile(v, q, method="inverted_cdf")) if len(v) else None

    def section(s: pd.DataFrame) -> dict:
        oc = s["outcome"].value_counts()
        total = oc.get("succeeded", 0) + oc.get("failed", 0) + oc.get("abandoned", 0)
        lat = s.loc[s["outcome"] == "succeeded", "processing_ms"]
        puts = s["up"].sum() + s["cfail"].sum()
        return {
            "attempts": len(s), **{k: int(oc.get(k, 0)) for k in ("succeeded", "failed", "abandoned", "cancelled")},
            "success_rate": oc.get("succeeded", 0) / total if total else None,
            "latency_sli": float((lat <= threshold).sum() / lat.notna().sum()) if lat.notna().sum() else None,
            "processing_p50": pct(s["processing_ms"], 0.5), "processing_p95": pct(s["processing_ms"], 0.95),
            "processing_p99": pct(s["processing_ms"], 0.99), "e2e_p99": pct(s["e2e_ms"], 0.99),
            "chunk_retry_rate": s["retry"].sum() / puts if puts else None,
            "transcode_p95": pct(s["transcode_ms"], 0.95),
            "api_timeout_rate": s["timeouts"].sum() / s["requests"].sum(),
        }

    totals = section(a)
    timed = a[a["outcome_at"].notna()]
    series = [section(s) for _, s in timed.groupby(timed["outcome_at"].dt.floor(f"{int(WINDOW_S)}s"))]
    segments = [section(s) for _, s in a.groupby(list(BREAKDOWN), dropna=False)]
    seconds = time.perf_counter() - t0
    headline = {k: totals[k] for k in ("attempts", "succeeded", "failed", "abandoned", "cancelled", "success_rate",
                                       "latency_sli", "processing_p95", "e2e_p99", "chunk_retry_rate",
                                       "transcode_p95")}
    headline["series_points"] = len(series)
    headline["segments"] = len(segments)
    for k, v in headline.items():
        if isinstance(v, (np.integer,)):
            headline[k] = int(v)
        elif isinstance(v, (np.floating,)):
            headline[k] = float(v)
    return {"seconds": seconds, "headline": headline}


# -- docs/performance.md ---------------------------------------------------------------------

_INPUT_LABEL = {"archive": "archive (compact's output)", "parquet": "Parquet file", "jsonl": "JSONL"}


def render_section(result: BenchResult, command: str) -> str:
    def fmt_rate(r: BenchRun | None) -> str:
        return "—" if r is None else f"{r.events_per_s / 1e6:.2f} M/s"

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    da, dp, dj = result.run("duckdb", "archive"), result.run("duckdb", "parquet"), result.run("duckdb", "jsonl")
    pandas = {f: result.run("pandas", f) for f in ("archive", "parquet", "jsonl")}
    peak = max(r.peak_rss_mb for r in result.runs if r.engine == "duckdb")
    lines = [
        SECTION_TITLE, "",
        f"Measured by `{command}` on {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} "
        f"({result.machine}; a shared machine, other work running). "
        f"{result.events:,} synthetic events (`toolkit/events/synth.py`, seeded), the same events three ways: "
        f"JSONL {result.jsonl_bytes / 1e6:,.0f} MB; one Parquet file in time order, as a generic writer leaves it, "
        f"{result.parquet_bytes / 1e6:,.0f} MB; and the archive `obslab events compact` makes of that file "
        f"(events by day, ordered by request_id, plus their stored fold: one partial row per attempt, "
        f"`toolkit/events/stored_fold.py`), {result.archive_bytes / 1e6:,.0f} MB. "
        f"The full SLI report = read + structural check + fold per request_id (or read the stored fold) "
        f"+ totals, {int(WINDOW_S // 60)}-minute series and a breakdown by {', '.join(BREAKDOWN)}; each run in its "
        "own process, timed inside it (start-up excluded); peak RSS is that process's VmHWM.", "",
        "| engine | input | report time | events/s | CPU time (all threads) | events per CPU-second | peak RSS "
        "| process wall | load avg (1 min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result.runs:
        lines.append(f"| {r.engine} | {_INPUT_LABEL[r.format]} | {r.report_s:.2f} s | {r.events_per_s / 1e6:.2f} M | "
                     f"{r.cpu_s:.2f} s | {r.events / r.cpu_s / 1e6:.2f} M | {r.peak_rss_mb:.0f} MB | "
                     f"{r.wall_s:.1f} s | {r.load_avg:.1f} |")
    c = result.compaction
    if c:
        lines += ["", f"Making the archive (`obslab events compact` of the Parquet file, once, in its own process): "
                      f"{c.report_s:.1f} s, {c.cpu_s:.1f} CPU-s, peak RSS {c.peak_rss_mb:.0f} MB; every later report "
                      "over the archive reads the stored fold instead of the events."]
    else:
        lines += ["", "The archive was reused from an earlier run of this command (same data, same fold definition), "
                      "so its compaction was not timed in this run."]
    lines += ["", "| target | goal | measured | |", "|---|---|---|---|"]
    for d, name in ((da, "Parquet throughput, archive (compact's output)"),
                    (dp, "Parquet throughput, one raw Parquet file")):
        if d:
            lines.append(f"| {name} | ≥ 10 M events/s | {fmt_rate(d)} | "
                         f"{verdict(d.events_per_s >= TARGETS['parquet_events_per_s'])} |")
    if dj:
        lines.append(f"| JSONL throughput | ≥ 2.5 M events/s | {fmt_rate(dj)} | "
                     f"{verdict(dj.events_per_s >= TARGETS['jsonl_events_per_s'])} |")
    lines.append(f"| peak memory (DuckDB runs) | ≤ 500 MB | {peak:.0f} MB | {verdict(peak <= TARGETS['peak_rss_mb'])} |")
    for fmt, d in (("archive", da), ("parquet", dp), ("jsonl", dj)):
        p = pandas[fmt]
        if d and p:
            ratio = p.report_s / d.report_s
            lines.append(f"| vs pandas, {_INPUT_LABEL[fmt]} (report time) | ≥ 10× | {ratio:.1f}× | "
                         f"{verdict(ratio >= TARGETS['speedup_vs_pandas'])} |")
            cpu_ratio = p.cpu_s / d.cpu_s
            lines.append(f"| vs pandas, {_INPUT_LABEL[fmt]} (CPU time) | ≥ 10× | {cpu_ratio:.1f}× | "
                         f"{verdict(cpu_ratio >= TARGETS['speedup_vs_pandas'])} |")
    lines += ["", "How: the archive's report reads the stored fold (one row per attempt, written by `compact`) "
              "instead of folding the events again; the stored fold is used only while every file it covers is "
              "given and unchanged (size and mtime) and no `--until` cuts inside it, else the events are read, "
              "and folds of several compaction runs or of an archive plus raw files merge. Raw files: one DuckDB "
              "pass reads only the 18 columns the SLIs use, with explicit types (`read_json` `columns=`, "
              "`format='newline_delimited'`, no sniffing; bounded sets as ENUMs), applies the structural check and "
              "folds every event into one row per request_id (a single GROUP BY with FILTER aggregates; "
              "`obslab sli` and this bench do not fold upload_id/user_id, which no SLI reads). The report then "
              "filters the per-attempt rows once into a narrow scope table and computes totals, series and "
              "breakdown in one GROUPING SETS scan of it. pandas on the archive reads its event files (it has no "
              "stored fold), so that ratio is what `compact` buys a repeated analysis, not a faster fold.",
              "",
              "Where the CPU goes, raw files (DuckDB `EXPLAIN ANALYZE`, operator time over both threads, 5 M "
              "events): Parquet — scan ≈ 0.6 s, type casts and the structural check ≈ 0.6 s, hash aggregation "
              "into 373k attempts ≈ 1.4 s. JSONL — DuckDB's JSON reader converting the 18 columns costs ≈ 1.6 "
              "CPU-s per million events of 531 bytes, the fold ≈ 0.25; splitting the same bytes into lines alone "
              "(a one-column CSV read) costs ≈ 0.6 CPU-s per million.",
              "",
              "What bounds the raw-file targets: 10 M events/s means the 5 M-event report in 0.5 s, ≤ 1 CPU-second "
              "on 2 cores, while the scan and casts of a raw Parquet file alone take ≈ 1.2 CPU-s before any "
              "grouping — hence the stored fold. 2.5 M events/s on JSONL needs 1.25 M events (≈ 660 MB) per "
              "CPU-second on 2 cores; DuckDB's reader splits lines at ≈ 1.6 M per CPU-second and converts the "
              "18 columns at ≈ 0.6 M, a ceiling of ≈ 1.2 M events/s on two idle cores with a free fold. A log "
              "that is read more than once is compacted: its second and later reports run at the archive's rate. "
              "Wall-clock rates on this shared machine depend on the load average shown per run; events per "
              "CPU-second is the steadier figure."]
    lines += ["", ("Engines and inputs agree on the headline figures (counts, success rate, latency SLI, p95/p99, "
                   "chunk retry rate, series and segment counts)." if result.agree else
                   "**Engines disagree:** " + "; ".join(result.disagreements)), ""]
    return "\n".join(lines)


def _peak_rss_mb() -> float | None:
    """VmHWM of this process: peak resident memory since exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _main(argv: list[str]) -> int:
    engine, path, spec_path = argv
    cpu0 = time.process_time()
    runner = {"duckdb": _duckdb_report, "pandas": _pandas_report, "compact": _compact}[engine]
    result = runner(path, spec_path)
    result["cpu_seconds"] = time.process_time() - cpu0
    result["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
