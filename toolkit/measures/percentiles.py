"""The project's one percentile method: nearest-rank.

The q-th percentile of n values is the ceil(q·n)-th smallest (the first for q = 0): always one
of the values, never an interpolation between two. It is ``numpy.quantile(x, q,
method="inverted_cdf")`` and DuckDB's ``quantile_disc`` (the SLI engine's SQL), a test holds the
three together. Every output that shows a percentile (p50, p95, p99, a median) names the method
with ``PERCENTILE_METHOD``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PERCENTILE_METHOD", "percentile", "rank"]

PERCENTILE_METHOD = "nearest-rank (the ceil(q·n)-th smallest value; DuckDB quantile_disc = numpy method='inverted_cdf')"


def rank(q: float, n: int) -> int:
    """1-based rank of the nearest-rank q-quantile among n sorted values (n ≥ 1)."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"percentile q must be between 0 and 1, got {q}")
    return min(n, max(1, int(np.ceil(q * n - 1e-9))))


def percentile(values, q: float) -> float | None:
    """Nearest-rank q-quantile of ``values`` (NaN ignored); None when there are none."""
    arr = np.asarray(values, dtype=float).ravel()
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return None
    return float(np.partition(arr, rank(q, arr.size) - 1)[rank(q, arr.size) - 1])
