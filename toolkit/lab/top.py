"""``obslab top``: the dashboard's tiles in a terminal (rich), for SSH sessions.

Reads the same data directory and computes the same snapshot as the web dashboard
(``toolkit.lab.web.snapshot``), so the two views never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from toolkit.lab.runtime import read_lab_file
from toolkit.measures.definitions import format_percent
from toolkit.slo.spec import SloSpec, load_spec
from toolkit.lab.web import snapshot as snap
from toolkit.lab.web.api import as_of_now, drill_speed, prometheus_alerts
from toolkit.lab.web import service_dir_of
from toolkit.lab.web.explorer import event_files

__all__ = ["TopSource", "take_snapshot", "render"]


@dataclass(frozen=True)
class TopSource:
    data_dir: Path
    spec: SloSpec
    profile: str = "lab"
    window: str = "lab"
    settle_s: float = 2.0
    started_at: datetime | None = None
    prometheus_url: str | None = None

    @classmethod
    def from_data_dir(cls, data_dir: Path, spec_path: Path | None, window: str, profile: str = "lab") -> "TopSource":
        info = read_lab_file(data_dir) or {}
        spec_file = spec_path or Path(info.get("spec") or "slo.yaml")
        started = snap.parse_ts(info["started_at"]) if info.get("started_at") else None
        return cls(Path(data_dir), load_spec(spec_file), info.get("profile", profile), window,
                   started_at=started, prometheus_url=info.get("prometheus_url"))


def take_snapshot(source: TopSource, now: datetime | None = None) -> dict:
    as_of = as_of_now(source.settle_s, now)
    data = snap.LabData(event_files(service_dir_of(source.data_dir)), source.spec, source.profile, as_of,
                        speed=drill_speed(source.data_dir, source.profile))
    try:
        window = snap.window_for(source.window, as_of, source.started_at, data.first_event_at)
        alerts = prometheus_alerts(source.prometheus_url) if source.prometheus_url else None
        return data.snapshot(window, prometheus_alerts=alerts)
    finally:
        data.close()


def _pct(x: float | None, digits: int = 2) -> str:
    return format_percent(x, digits)


def _ms(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s:.2f} s" if s >= 1 else f"{s * 1000:.0f} ms"


def _tile(title: str, value: str, detail: str, style: str) -> Panel:
    # Wide enough that a named figure ("publish-success: spent 0.86 % · 99.14 % remaining") keeps one line.
    width = max(34, len(title) + 6, 4 + max(len(line) for line in (value + "\n" + detail).splitlines() or [""]))
    return Panel(Group(Text(value, style=f"bold {style}"), Text(detail, style="dim")), title=title,
                 title_align="left", border_style=style, width=width)


def render(s: dict, width: int | None = None, fit=None) -> Group:
    """One frame: header, tiles, burn-rate table. ``width``: the console's, the tiles go on as many rows as
    they need; ``fit``: applied to the burn-rate table (the CLI's narrow-terminal layout)."""
    su, la = s["success"], s["latency"]
    header = Text(f"obslab top · as of {s['as_of']} · window {s['window']['start']} → {s['window']['end']} "
                  f"({s['window']['label']}) · {s['synthetic']}", style="bold")
    ok = "green" if su["value"] is not None and su["value"] >= su["objective"] else ("red" if su["value"] is not None else "white")
    panels = (
        _tile("publish success rate", _pct(su["value"]),
              f"{su['good']:,} / {su['total']:,} attempts\n{su['failed']:,} failed · {su['abandoned']:,} abandoned\n"
              f"{su['in_flight']:,} in flight · objective {_pct(su['objective'], 1)}", ok),
        _tile("processing latency (exact)", f"p50 {_ms(la['p50_s'])}",
              f"p95 {_ms(la['p95_s'])} · p99 {_ms(la['p99_s'])}\nover {la['count']:,} published\n"
              f"≤ {_ms(la['threshold_s'])}: {_pct(la['good_ratio'])}",
              "green" if la["p95_s"] is None or la["p95_s"] <= la["threshold_s"] else "yellow"),
        _tile(f"error budget · {' / '.join(sorted({b['period'] for b in s['budgets']}))} period",
              "\n".join(f"{b['slo']}: spent {_pct(b['spent'])} · {_pct(b['remaining'])} remaining"
                        for b in s["budgets"]),
              "\n".join(f"{b['slo']}: {b['bad']:,} bad / {b['total']:,}; data covers {b['data_covers']}"
                        for b in s["budgets"]),
              "green" if all((b["remaining"] or 1) > 0.5 for b in s["budgets"]) else "yellow"),
    )
    # As many tiles a row as the console holds (a squeezed tile cuts its title and wraps its figures).
    per_row = len(panels)
    while width and per_row > 1 and sum(sorted((p.width for p in panels), reverse=True)[:per_row]) + per_row - 1 > width:
        per_row -= 1
    tiles = Table.grid(padding=(0, 1))
    for i in range(0, len(panels), per_row):
        tiles.add_row(*panels[i:i + per_row])
    scenario = s.get("scenario") or {}
    in_scenario = (scenario.get("speed") or 1) != 1
    burn = Table(title=f"burn rates over events · alerts from {s['burn']['source']}"
                 + (f" · {scenario['text']}" if in_scenario else ""), title_justify="left", expand=False)
    for col in ("SLO", "severity", "long window", "short window", "threshold", "over events", "first fired"):
        burn.add_column(col, justify="left" if col in ("SLO", "severity", "state") else "right")
    fmt = lambda b: "–" if b is None else f"{b:.2f}×"  # noqa: E731
    for w in s["burn"]["windows"]:
        # At a drill's speed, each window in scenario time with its wall length beside it.
        long, short = ((f"{w['scenario_long']} ({w['long']} wall)", f"{w['scenario_short']} ({w['short']} wall)")
                       if in_scenario else (w["long"], w["short"]))
        burn.add_row(w["slo"], w["severity"], f"{fmt(w['long_burn'])} / {long}", f"{fmt(w['short_burn'])} / {short}",
                     f"{w['burn_rate_threshold']:g}×", Text("FIRING", style="bold red") if w["firing"] else Text("ok", style="green"),
                     w.get("first_fired") or "never")
    if fit is not None:
        burn = fit(burn)
    alerts = s["burn"]["alerts"]
    alert_line = Text("alerts: " + (", ".join(f"{a['name']} ({a['state']})" for a in alerts) if alerts else "none firing"),
                      style="bold red" if any(a["state"] == "firing" for a in alerts) else "green")
    return Group(header, tiles, burn, alert_line)
