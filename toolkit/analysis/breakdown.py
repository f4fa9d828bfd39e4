"""BubbleUp-style breakdown: what is different about a selection of attempts?

A selection (failed attempts, slow ones, a time slice, or any SQL predicate) is set against a
baseline (the rest of the population, or all of it) across every dimension — cohort columns,
flags, service version and numeric fields cut into bins (a value holding a large share, such
as the zeros of a count, gets its own bin; the rest are quantile bins). Each dimension value gets
its count and share in both groups; values are ranked by how much more common they are in the
selection: by the share difference (selection − baseline, percentage points) divided by its
standard error (a two-proportion z), so a small cohort that doubles outranks a point of noise in a
big one; dimensions by their best value. A chi-square test per dimension (scipy) says whether the difference could be chance.

``breakdown_arrays`` is the pure part (arrays in, frozen result out); ``breakdown_attempts``
reads the columns from the attempts relation; ``render_chart`` writes the PNG.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from scipy import stats as sps

from toolkit.analysis.compare import (DEFAULT_ABANDON_AFTER_S, CohortSelector, Window, _iso, _synthetic_sql,
                                      resolve_window, run_query, scope_attempts)

__all__ = [
    "BREAKDOWN_SCHEMA",
    "CATEGORICAL_DIMENSIONS",
    "NUMERIC_DIMENSIONS",
    "Selection",
    "ValueRow",
    "DimensionResult",
    "BreakdownResult",
    "selection_preset",
    "breakdown_arrays",
    "breakdown_attempts",
    "render_chart",
]

BREAKDOWN_SCHEMA = "obslab.breakdown/v1"
CATEGORICAL_DIMENSIONS = ("region", "app_version", "network_type", "media_size_bucket", "release",
                          "transcode_mode", "service_version", "error_class")
NUMERIC_DIMENSIONS = ("chunk_count", "chunk_retries", "chunk_failures", "processing_ms", "e2e_ms", "transcode_ms")
NONE_LABEL = "(none)"
# Attempts that have finished: in-flight ones have no outcome yet.
POPULATION = "outcome <> 'in_flight'"


@dataclass(frozen=True)
class Selection:
    """A named SQL predicate over the attempts table, and the columns it makes trivially
    different (excluded from the breakdown: failures have no processing latency, say)."""

    name: str
    predicate: str
    description: str
    excluded: tuple[str, ...] = ()


def selection_preset(kind: str, *, slow_ms: float = 1000.0, time_range: CohortSelector | None = None,
                     where: str | None = None, abandon_after_s: float = DEFAULT_ABANDON_AFTER_S) -> Selection:
    """``failed`` | ``slow`` | ``time`` | ``where``."""
    if kind == "failed":
        return Selection("failed", "outcome IN ('failed', 'abandoned')",
                         "attempts that failed or were abandoned",
                         ("error_class", "processing_ms", "e2e_ms", "transcode_ms"))
    if kind == "slow":
        return Selection("slow", f"outcome = 'succeeded' AND processing_ms > {float(slow_ms)!r}",
                         f"published attempts with processing latency > {slow_ms:g} ms", ("processing_ms",))
    if kind == "time":
        if time_range is None or not time_range.has_time_range:
            raise ValueError("--select time needs --time START/END")
        return Selection("time", time_range.time_sql(abandon_after_s),
                         f"attempts with an outcome time in ({_iso(time_range.start)}, {_iso(time_range.end)}]")
    if kind == "where":
        if not where:
            raise ValueError("--select where needs --where 'SQL predicate'")
        return Selection("where", where, f"attempts where {where}")
    raise ValueError(f"--select must be failed, slow, time or where; got {kind!r}")


@dataclass(frozen=True)
class ValueRow:
    dimension: str
    value: str
    selection_count: int
    baseline_count: int
    selection_share: float
    baseline_share: float
    difference: float          # selection_share − baseline_share (0..1)
    lift: float | None         # selection_share / baseline_share
    z: float                   # difference / its pooled standard error: the ranking key


@dataclass(frozen=True)
class DimensionResult:
    dimension: str
    numeric: bool
    score: float               # largest z among its values
    chi2: float | None
    p_value: float | None
    values: tuple[ValueRow, ...]


@dataclass(frozen=True)
class BreakdownResult:
    selection: Selection
    baseline: str              # "rest" | "all"
    selection_total: int
    baseline_total: int
    dimensions: tuple[DimensionResult, ...]   # ranked
    top_values: tuple[ValueRow, ...]          # ranked across dimensions
    window: dict[str, Any]
    synthetic: str
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        def clean(x):
            if isinstance(x, float) and not math.isfinite(x):
                return None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [clean(v) for v in x]
            return x

        return clean({
            "schema": BREAKDOWN_SCHEMA,
            "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "source": self.source,
            "window": self.window,
            "synthetic": self.synthetic,
            "selection": asdict(self.selection),
            "baseline": self.baseline,
            "selection_total": self.selection_total,
            "baseline_total": self.baseline_total,
            "ranking": "z of (share in selection − share in baseline), pooled two-proportion standard error",
            "dimensions": [asdict(d) for d in self.dimensions],
            "top_values": [asdict(v) for v in self.top_values],
        })


def _number(v: float) -> str:
    return f"{int(v)}" if float(v).is_integer() else f"{v:.4g}"


def _bin_numeric(values: np.ndarray, bins: int) -> np.ndarray:
    """Labels of informative bins; NaN → "(none)".

    Few distinct values (≤ ``bins``) keep their values. Otherwise a value that alone holds at
    least 1/``bins`` of the rows (a point mass, e.g. the zeros of a mostly-zero count column)
    gets a bin of its own, and the other values are cut into quantile bins ("[a, b)"), so a
    skewed column is not collapsed into one bin that hides who has a non-zero count.
    """
    labels = np.full(values.shape, NONE_LABEL, dtype=object)
    ok = ~np.isnan(values)
    if not ok.any():
        return labels
    finite = values[ok]
    distinct, counts = np.unique(finite, return_counts=True)
    if distinct.size <= bins:
        names = np.asarray([_number(v) for v in distinct], dtype=object)
        labels[ok] = names[np.searchsorted(distinct, finite)]
        return labels
    heavy = distinct[counts * bins >= finite.size]
    out = np.empty(finite.shape, dtype=object)
    is_heavy = np.isin(finite, heavy)
    for v in heavy:
        out[finite == v] = _number(v)
    rest = finite[~is_heavy]
    if rest.size:
        left = max(2, bins - heavy.size)
        rest_distinct = np.unique(rest)
        if rest_distinct.size <= left:
            out[~is_heavy] = [_number(v) for v in rest]
        else:
            edges = np.unique(np.quantile(rest, np.linspace(0, 1, left + 1), method="inverted_cdf"))
            if edges.size < 2:
                out[~is_heavy] = _number(edges[0])
            else:
                idx = np.clip(np.searchsorted(edges, rest, side="right") - 1, 0, edges.size - 2)
                names = []
                for i in range(edges.size - 1):
                    lo, hi = edges[i], edges[i + 1]
                    last = i == edges.size - 2
                    inside = [h for h in heavy if lo <= h < hi or (last and h == hi)]
                    names.append(f"[{lo:.4g}, {hi:.4g}{']' if last else ')'}"
                                 + (f" except {', '.join(_number(h) for h in inside)}" if inside else ""))
                out[~is_heavy] = np.asarray(names, dtype=object)[idx]
    labels[ok] = out
    return labels


def _z(sel: int, n_sel: int, base: int, n_base: int) -> float:
    """Two-proportion z of a value's share in the selection vs the baseline (pooled SE): how much
    more common it is, in units of sampling noise — so a small cohort that doubles outranks a
    point of noise in a big one."""
    if not n_sel or not n_base:
        return 0.0
    pooled = (sel + base) / (n_sel + n_base)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_sel + 1 / n_base))
    diff = sel / n_sel - base / n_base
    return diff / se if se > 0 else 0.0


def breakdown_arrays(columns: Mapping[str, np.ndarray], selected: np.ndarray, *, selection: Selection,
                     baseline: str = "rest", numeric: tuple[str, ...] = NUMERIC_DIMENSIONS, bins: int = 5,
                     top: int = 20, window: dict[str, Any] | None = None, synthetic: str = "include",
                     source: str = "") -> BreakdownResult:
    """Rank every dimension value by how much more common it is in the selection. Pure."""
    if baseline not in ("rest", "all"):
        raise ValueError(f"baseline must be 'rest' or 'all', got {baseline!r}")
    selected = np.asarray(selected, dtype=bool)
    base_mask = ~selected if baseline == "rest" else np.ones_like(selected)
    n_sel, n_base = int(selected.sum()), int(base_mask.sum())
    dims: list[DimensionResult] = []
    for name, raw in columns.items():
        if name in selection.excluded:
            continue
        is_num = name in numeric
        if is_num:
            labels = _bin_numeric(np.asarray(raw, dtype=float), bins)
        else:
            labels = np.asarray([NONE_LABEL if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                                 for v in raw], dtype=object)
        values, inverse = np.unique(labels.astype(str), return_inverse=True)
        sel_counts = np.bincount(inverse[selected], minlength=values.size)
        base_counts = np.bincount(inverse[base_mask], minlength=values.size)
        rows = []
        for v, s, b in zip(values, sel_counts, base_counts):
            s_share = s / n_sel if n_sel else 0.0
            b_share = b / n_base if n_base else 0.0
            rows.append(ValueRow(name, str(v), int(s), int(b), s_share, b_share, s_share - b_share,
                                 s_share / b_share if b_share else None,
                                 _z(int(s), n_sel, int(b), n_base)))
        rows.sort(key=lambda r: (-r.z, -r.difference, r.value))
        chi2 = p = None
        table = np.vstack([sel_counts, base_counts])
        table = table[:, table.sum(axis=0) > 0]
        if baseline == "rest" and table.shape[1] >= 2 and n_sel and n_base:
            res = sps.chi2_contingency(table, correction=False)
            chi2, p = float(res.statistic), float(res.pvalue)
        dims.append(DimensionResult(name, is_num, rows[0].z if rows else 0.0, chi2, p, tuple(rows)))
    dims.sort(key=lambda d: (-d.score, d.dimension))
    top_values = sorted((r for d in dims for r in d.values), key=lambda r: (-r.z, -r.difference, r.dimension, r.value))
    return BreakdownResult(selection, baseline, n_sel, n_base, tuple(dims), tuple(top_values[:top]),
                           window or {}, synthetic, source)


def breakdown_attempts(attempts, selection: Selection, *, baseline: str = "rest", window: Window = Window(),
                       synthetic: str = "include", bins: int = 5, dimensions: tuple[str, ...] | None = None,
                       top: int = 20, source: str = "",
                       abandon_after_s: float = DEFAULT_ABANDON_AFTER_S) -> BreakdownResult:
    """Read the population (finished attempts with an outcome time in the window) and break the selection down."""
    window = resolve_window(attempts, window, abandon_after_s)
    attempts = scope_attempts(attempts, window.start, window.end, abandon_after_s)
    cats = [d for d in (dimensions or CATEGORICAL_DIMENSIONS) if d in CATEGORICAL_DIMENSIONS]
    nums = [d for d in (dimensions or NUMERIC_DIMENSIONS) if d in NUMERIC_DIMENSIONS]
    unknown = set(dimensions or ()) - set(CATEGORICAL_DIMENSIONS) - set(NUMERIC_DIMENSIONS)
    if unknown:
        raise ValueError(f"--dimensions: unknown {', '.join(sorted(unknown))}; choose from "
                         f"{', '.join(CATEGORICAL_DIMENSIONS + NUMERIC_DIMENSIONS)}")
    where = " AND ".join(f"({p})" for p in (POPULATION, _synthetic_sql(synthetic)))
    select = ", ".join([*cats, *(f"{n}::DOUBLE AS {n}" for n in nums),
                        f"coalesce(({selection.predicate}), FALSE) AS __selected", "started_at"])
    data = run_query(attempts, f"SELECT {select} FROM a WHERE {where}",
                     f"selection {selection.predicate!r}").fetchnumpy()
    columns = {c: np.asarray(data[c], dtype=object) for c in cats}
    for n in nums:
        arr = data[n]
        columns[n] = np.asarray(arr.filled(np.nan) if hasattr(arr, "filled") else arr, dtype=float)
    selected = np.asarray(data["__selected"], dtype=bool)
    started = data["started_at"]
    win = {"start": _iso(window.start), "end": _iso(window.end), "seconds": window.seconds}
    if len(started):
        lo, hi = np.min(started), np.max(started)
        win["first_started"] = str(np.datetime_as_string(lo, unit="ms")) + "Z"
        win["last_started"] = str(np.datetime_as_string(hi, unit="ms")) + "Z"
    return breakdown_arrays(columns, selected, selection=selection, baseline=baseline, numeric=tuple(nums),
                            bins=bins, top=top, window=win, synthetic=synthetic, source=source)


def render_chart(result: BreakdownResult, path: str | Path, *, dimensions: int = 6, values_per_dimension: int = 6) -> Path:
    """Paired horizontal bars (selection vs baseline share) for the top-ranked dimensions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = [d for d in result.dimensions if d.values][:dimensions]
    if not dims:
        raise ValueError("nothing to chart: the breakdown has no dimension values")
    cols = min(3, len(dims))
    rows = math.ceil(len(dims) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax, d in zip(axes.ravel(), dims):
        vals = list(d.values[:values_per_dimension])[::-1]
        y = np.arange(len(vals))
        ax.barh(y + 0.2, [v.selection_share * 100 for v in vals], height=0.4, color="#d62728",
                label=f"selection ({result.selection.name}, n={result.selection_total})")
        ax.barh(y - 0.2, [v.baseline_share * 100 for v in vals], height=0.4, color="#7f7f7f",
                label=f"baseline ({result.baseline}, n={result.baseline_total})")
        ax.set_yticks(y, [v.value for v in vals], fontsize=8)
        p = f", χ² p={d.p_value:.2g}" if d.p_value is not None else ""
        ax.set_title(f"{d.dimension}: {d.values[0].value} {d.values[0].difference * 100:+.1f} pp{p}", fontsize=9)
        ax.set_xlabel("share of attempts (%)", fontsize=8)
    for ax in axes.ravel()[len(dims):]:
        ax.axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8)
    syn = {"include": "synthetic traffic included", "exclude": "synthetic traffic excluded",
           "only": "synthetic traffic only"}[result.synthetic]
    fig.suptitle(f"Breakdown: {result.selection.description} vs {result.baseline} ({syn})", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
