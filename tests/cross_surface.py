"""The same figures read off every surface, in one shape, so tests can hold the surfaces together.

Each ``figures_from_*`` takes what one surface outputs (its JSON, or the text it renders) and
returns a ``SurfaceFigures`` with the figures that surface shows; figures it does not show stay
``None`` and are not compared. ``assert_same_figures`` compares every figure two or more surfaces
show. A new surface (e.g. the drill report) adds its own ``figures_from_...`` here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from toolkit.measures.definitions import format_percent

__all__ = ["SurfaceFigures", "figures_from_sli_json", "figures_from_budget_json", "figures_from_snapshot",
           "figures_from_top_text", "figures_from_drill_report", "assert_same_figures"]


@dataclass
class SurfaceFigures:
    """What one surface says. Times are ISO strings with milliseconds; latencies in seconds."""

    surface: str
    success_rate: float | None = None
    success_good: int | None = None
    success_total: int | None = None
    p50_s: float | None = None
    p95_s: float | None = None
    p99_s: float | None = None
    # per SLO name: (spent, remaining)
    budget: dict[str, tuple[float | None, float | None]] | None = None
    # per (slo, severity, long, short): (long burn, short burn, firing)
    burn: dict[tuple[str, str, str, str], tuple[float | None, float | None, bool]] | None = None
    # per SLO name: the first time a page alert fired, or None
    first_page: dict[str, str | None] | None = None
    # Figures a text surface shows rounded: name -> the exact text it printed.
    text: str | None = field(default=None, repr=False)


def _first_page(history_like: list[tuple[str, str, str | None]]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for slo, severity, first in history_like:
        if severity != "page":
            continue
        cur = out.get(slo)
        out[slo] = first if cur is None else (cur if first is None else min(cur, first))
    return out


def figures_from_sli_json(d: Mapping[str, Any], latency_kind: str = "processing") -> SurfaceFigures:
    figs = {f["name"]: f for g in ("primary", "latency") for f in d["totals"][g]}
    sr = figs["publish_success_rate"]
    ms = lambda v: None if v is None else v / 1000.0  # noqa: E731
    return SurfaceFigures("obslab sli", sr["value"], sr["numerator"], sr["denominator"],
                          ms(figs[f"{latency_kind}_latency_p50"]["value"]),
                          ms(figs[f"{latency_kind}_latency_p95"]["value"]),
                          ms(figs[f"{latency_kind}_latency_p99"]["value"]))


def figures_from_budget_json(d: Mapping[str, Any]) -> SurfaceFigures:
    ratio = next(s for s in d["slos"] if s["kind"] == "ratio")
    budget = {s["slo"]: (s["budget"]["spent"], s["budget"]["remaining"]) for s in d["slos"]}
    burn = {(s["slo"], a["severity"], a["long"]["window"], a["short"]["window"]):
            (a["long"]["burn"]["burn_rate"], a["short"]["burn"]["burn_rate"], a["firing"])
            for s in d["slos"] for a in s["alerts"]}
    first = _first_page([(s["slo"], h["severity"], h["first_fired"]) for s in d["slos"] for h in s["history"]])
    return SurfaceFigures("obslab budget", ratio["sli"], ratio["good"], ratio["total"], budget=budget, burn=burn,
                          first_page=first)


def figures_from_snapshot(s: Mapping[str, Any], surface: str = "dashboard snapshot") -> SurfaceFigures:
    su, la = s["success"], s["latency"]
    budget = {b["slo"]: (b["spent"], b["remaining"]) for b in s["budgets"]}
    burn = {(w["slo"], w["severity"], w["long"], w["short"]): (w["long_burn"], w["short_burn"], w["firing"])
            for w in s["burn"]["windows"]}
    first = _first_page([(w["slo"], w["severity"], w["first_fired"]) for w in s["burn"]["windows"]])
    return SurfaceFigures(surface, su["value"], su["good"], su["total"], la["p50_s"], la["p95_s"], la["p99_s"],
                          budget, burn, first)


def figures_from_top_text(text: str) -> SurfaceFigures:
    """``obslab top`` prints rounded figures: keep the text; ``assert_same_figures`` looks them up in it."""
    return SurfaceFigures("obslab top", text=re.sub(r"\s+", " ", text))


def _ms_text(s: float | None) -> str:
    from toolkit.lab.top import _ms

    return _ms(s)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def assert_same_figures(*surfaces: SurfaceFigures) -> None:
    """Every figure shown by two or more surfaces is identical; text surfaces show the same, rounded."""
    exact = [s for s in surfaces if s.text is None]
    for f in fields(SurfaceFigures):
        if f.name in ("surface", "text"):
            continue
        shown = [(s.surface, getattr(s, f.name)) for s in exact if getattr(s, f.name) is not None]
        for (name_a, a), (name_b, b) in zip(shown, shown[1:]):
            if isinstance(a, dict):
                common = set(a) & set(b)
                assert common, f"{f.name}: {name_a} and {name_b} show nothing in common"
                for k in common:
                    assert _same(a[k], b[k]) or a[k] == b[k], f"{f.name}[{k}]: {name_a} {a[k]!r} != {name_b} {b[k]!r}"
            else:
                assert _same(a, b), f"{f.name}: {name_a} {a!r} != {name_b} {b!r}"
    for t in (s for s in surfaces if s.text is not None):
        ref = next((s for s in exact if s.success_rate is not None), None)
        assert ref is not None
        assert format_percent(ref.success_rate) in t.text, f"{t.surface}: success rate {format_percent(ref.success_rate)}"
        lat = next((s for s in exact if s.p50_s is not None), None)
        if lat:
            assert f"p50 {_ms_text(lat.p50_s)}" in t.text and f"p95 {_ms_text(lat.p95_s)}" in t.text \
                and f"p99 {_ms_text(lat.p99_s)}" in t.text, f"{t.surface}: latency percentiles"
        bud = next((s for s in exact if s.budget), None)
        if bud:
            for slo, (spent, remaining) in bud.budget.items():
                want = f"{slo}: spent {format_percent(spent)} · {format_percent(remaining)} remaining"
                assert want in t.text, f"{t.surface}: {want!r}"
        burn = next((s for s in exact if s.burn), None)
        if burn:
            fmt = lambda b: "–" if b is None else f"{b:.2f}×"  # noqa: E731
            for (slo, severity, long, short), (lb, sb, _firing) in burn.burn.items():
                want = f"{fmt(lb)} / {long} │ {fmt(sb)} / {short}"
                assert want in t.text, f"{t.surface}: {slo} {severity} burn {want!r}"
        first = next((s for s in exact if s.first_page), None)
        if first:
            for slo, when in first.first_page.items():
                if when is not None:
                    assert when in t.text, f"{t.surface}: {slo} first page {when}"


def figures_from_drill_report(report: Mapping[str, Any]) -> SurfaceFigures:
    """A drill's ``report.json`` (``toolkit.drills.report.report_json``): its whole-drill figures, as of
    the drill's end (success rate and latency over the drill, the lab period's budget, each lab alert's
    burn rates and state, and the first page the report counts)."""
    from datetime import datetime, timezone

    def iso(t: float | None) -> str | None:
        if t is None:
            return None
        d = datetime.fromtimestamp(round(t * 1e6) / 1e6, tz=timezone.utc)
        return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"

    drill = report["sli_drill"]
    ms = {k: None if v is None else v / 1000.0 for k, v in drill["processing_latency_ms"].items()}
    budget = report["budget"]
    burn = {(a["slo"], a["severity"], a["long"], a["short"]): (a["long_burn"], a["short_burn"], a["firing"])
            for a in report["alerts"]}
    return SurfaceFigures("drill report", None if not drill["total"] else drill["good"] / drill["total"],
                          drill["good"], drill["total"], ms["p50"], ms["p95"], ms["p99"],
                          {budget["slo"]: (budget["spent"], budget["remaining"])}, burn,
                          {budget["slo"]: iso(report["first_page_at"])})
