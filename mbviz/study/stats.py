"""The statistics of a paired study: bootstrap intervals, the sign test, per-method
paired summaries against the plain sum, and :class:`Study`, a run table with them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import metrics as M
from .._deps import require
from .runs import DIAGNOSTIC_COLUMNS, DIAGNOSTIC_SUFFIXES, RUN_COLUMNS


# ---------------------------------------------------------------------- statistics
def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (NaNs dropped).

    Draws ``n_boot`` resamples of the values with replacement, takes each resample's
    mean, and returns the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of those
    means. ``seed`` fixes the resampling, so equal inputs give equal intervals.
    ``(nan, nan)`` without values; with one value (or all equal) the interval is that value.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if not (isinstance(n_boot, int) and n_boot >= 1):
        raise ValueError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))
    means = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


def sign_test(differences: Sequence[float] | np.ndarray) -> float:
    """Two-sided exact sign-test p-value of paired ``differences`` (zeros and NaNs dropped).

    With ``n`` nonzero differences of which ``k`` are positive, the p-value is the
    probability under Binomial(n, 1/2) of an outcome at least as far from ``n/2`` as
    ``k``: ``min(1, 2 * sum_{i <= min(k, n-k)} C(n, i) / 2**n)``. 1.0 when ``n = 0``.
    """
    d = np.asarray(differences, dtype=np.float64).ravel()
    d = d[~np.isnan(d) & (d != 0)]
    n = len(d)
    if n == 0:
        return 1.0
    k = int((d > 0).sum())
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1))
    return min(1.0, 2.0 * tail / 2.0**n)


def metric_columns(runs: Any) -> list[str]:
    """The metric columns of a run table: everything but :data:`RUN_COLUMNS`, the display
    label ``rule`` and the training diagnostics (:data:`DIAGNOSTIC_SUFFIXES`,
    :data:`DIAGNOSTIC_COLUMNS`)."""
    return [
        c
        for c in runs.columns
        if c not in (*RUN_COLUMNS, "rule", *DIAGNOSTIC_COLUMNS)
        and not str(c).endswith(DIAGNOSTIC_SUFFIXES)
    ]


def higher_is_better(column: str) -> bool:
    """Direction of a run-table metric column (``"<task> <metric>"`` or ``delta_m``)."""
    if column.endswith("delta_m"):  # delta_m, val_delta_m
        return True
    return M.HIGHER_IS_BETTER[column.rpartition(" ")[2]]


def paired_summary(
    runs: Any,
    *,
    reference: str = "equal",
    metrics: Sequence[str] | None = None,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
):  # -> pandas.DataFrame
    """Every method against ``reference``, paired by seed, per setting and metric.

    Args:
        runs: a study's run table (:attr:`Study.runs`, or the CSV it wrote, read back).
        reference: the method the others are compared with (default the plain sum).
        metrics: metric columns to summarise (default: every one).
        level, n_boot, seed: of :func:`bootstrap_ci`.

    Returns:
        One row per (question, dataset, param, value, method, metric) with ``n`` (seeds
        where both runs have a finite metric), ``reference_mean``, ``method_mean``,
        ``diff_mean`` (method minus reference), ``ci_low``, ``ci_high``, ``sign_p``
        (:func:`sign_test`), ``higher_is_better``, and ``wins``/``losses`` (seeds where the
        method is better/worse in that direction).
    """
    pd = require("pandas")
    cols = list(metrics) if metrics is not None else metric_columns(runs)
    missing = [c for c in cols if c not in runs.columns]
    if missing:
        raise ValueError(f"metrics {missing} are not columns of the run table")
    keys = ["question", "dataset", "param", "value"]
    table = runs[runs["method"] != "single-task"]
    out = []
    for key, g in table.groupby(keys, sort=False, dropna=False):
        ref = g[g["method"] == reference].set_index("seed")
        if ref.empty:
            continue
        for method, m in g.groupby("method", sort=False):
            if method == reference:
                continue
            m = m.set_index("seed")
            seeds = ref.index.intersection(m.index)
            for col in cols:
                a = m.loc[seeds, col].to_numpy(dtype=np.float64)
                b = ref.loc[seeds, col].to_numpy(dtype=np.float64)
                ok = np.isfinite(a) & np.isfinite(b)
                d = a[ok] - b[ok]
                up = higher_is_better(col)
                lo, hi = bootstrap_ci(d, level=level, n_boot=n_boot, seed=seed)
                out.append(
                    {
                        **dict(zip(keys, key)),
                        "method": method,
                        "metric": col,
                        "n": int(ok.sum()),
                        "reference_mean": float(b[ok].mean()) if ok.any() else math.nan,
                        "method_mean": float(a[ok].mean()) if ok.any() else math.nan,
                        "diff_mean": float(d.mean()) if len(d) else math.nan,
                        "ci_low": lo,
                        "ci_high": hi,
                        "sign_p": sign_test(d),
                        "higher_is_better": up,
                        "wins": int(((d > 0) if up else (d < 0)).sum()),
                        "losses": int(((d < 0) if up else (d > 0)).sum()),
                    }
                )
    return pd.DataFrame(out)


@dataclass
class Study:
    """The runs of one study question: :attr:`runs` is the tidy per-run table."""

    runs: Any  # pandas.DataFrame

    def summary(self, reference: str = "equal", **kwargs: Any):  # -> pandas.DataFrame
        """:func:`paired_summary` of the runs (keyword arguments pass through)."""
        return paired_summary(self.runs, reference=reference, **kwargs)

    def table(self, metric: str = "delta_m", reference: str = "equal", **kwargs: Any):
        """:func:`summary_table` of one metric: parameter values as rows, methods as
        columns (keyword arguments go to :func:`paired_summary`)."""
        return summary_table(self.summary(reference, metrics=[metric], **kwargs), metric)

    def to_csv(self, path: Any) -> None:
        """Write the run table as CSV (read it back with ``pandas.read_csv``)."""
        self.runs.to_csv(path, index=False)


def summary_table(summary: Any, metric: str = "delta_m", *, digits: int = 3):
    """One metric of a :func:`paired_summary` as a grid: one row per (param, value), one
    column per method, each cell ``"diff [ci_low, ci_high] p=sign_p"``."""
    t = summary[summary["metric"] == metric]
    if t.empty:
        raise ValueError(f"metric {metric!r} is not in the summary: {sorted(set(summary.metric))}")
    cells = t.assign(
        cell=[
            f"{d:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}] p={p:.3f}"
            for d, lo, hi, p in zip(t["diff_mean"], t["ci_low"], t["ci_high"], t["sign_p"])
        ]
    )
    grid = cells.pivot(index=["param", "value"], columns="method", values="cell")
    return grid[list(dict.fromkeys(t["method"]))]


def format_summary(summary: Any, *, digits: int = 4) -> str:
    """A paired summary as text: one line per (value, method, metric) with the mean
    difference, its interval, the sign-test p-value and wins:losses."""
    if summary.empty:
        return "(no paired comparisons: is the reference method among the methods?)"
    t = summary.copy()
    t["diff (95% CI)"] = [
        f"{d:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"
        for d, lo, hi in zip(t["diff_mean"], t["ci_low"], t["ci_high"])
    ]
    t["sign p"] = [f"{p:.3f}" for p in t["sign_p"]]
    t["wins:losses"] = [f"{w}:{l}" for w, l in zip(t["wins"], t["losses"])]
    cols = ["param", "value", "method", "metric", "n", "diff (95% CI)", "sign p", "wins:losses"]
    return str(t[cols].to_string(index=False))
