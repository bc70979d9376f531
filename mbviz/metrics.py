"""Per-task evaluation metrics and the multi-task summary Δm%.

All functions take 1-D numpy arrays (or anything ``np.asarray`` accepts) and
return Python floats. They are written here, in a few lines each, so the
course can show them; they are tested against brute-force definitions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

#: Metric name -> True if higher is better.
HIGHER_IS_BETTER: dict[str, bool] = {
    "auc": True,
    "ne": False,
    "logloss": False,
    "rmse": False,
    "poisson_deviance": False,
}


def _rank_average(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks_sorted = np.arange(1, len(x) + 1, dtype=np.float64)
    # average the ranks inside each run of equal values
    starts = np.r_[0, np.flatnonzero(xs[1:] != xs[:-1]) + 1]
    ends = np.r_[starts[1:], len(x)]
    avg = (starts + 1 + ends) / 2.0
    ranks_sorted = np.repeat(avg, ends - starts)
    ranks = np.empty_like(ranks_sorted)
    ranks[order] = ranks_sorted
    return ranks


def auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve (Mann–Whitney U with tied scores counted half).

    NaN when only one class is present.
    """
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    pos = y > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = _rank_average(s)
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def logloss(labels: ArrayLike, probs: ArrayLike, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities ``probs`` (clipped to [eps, 1-eps])."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.clip(np.asarray(probs, dtype=np.float64).ravel(), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def normalized_entropy(labels: ArrayLike, probs: ArrayLike, eps: float = 1e-7) -> float:
    """Normalized entropy (He et al., ADKDD 2014): logloss divided by the entropy of the
    base rate. 1.0 = no better than predicting the average; lower is better."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = float(np.clip(y.mean(), eps, 1 - eps))
    base = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    return float(logloss(y, probs, eps) / base)


def rmse(targets: ArrayLike, preds: ArrayLike) -> float:
    """Root mean squared error."""
    t = np.asarray(targets, dtype=np.float64).ravel()
    p = np.asarray(preds, dtype=np.float64).ravel()
    return float(np.sqrt(np.mean((t - p) ** 2)))


def poisson_deviance(counts: ArrayLike, rates: ArrayLike) -> float:
    """Mean Poisson deviance ``2 mean(y log(y / mu) - (y - mu))`` (``y log y = 0`` at 0):
    0 when every predicted rate ``mu`` equals its count; lower is better."""
    y = np.asarray(counts, dtype=np.float64).ravel()
    mu = np.asarray(rates, dtype=np.float64).ravel()
    ylog = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)
    return float(2.0 * np.mean(ylog - (y - mu)))


def task_metrics(kind: str, targets: ArrayLike, outputs: ArrayLike) -> dict[str, float]:
    """Metrics of one task: ``kind`` "binary" (outputs are logits), "regression" (values)
    or "count" (outputs are log rates)."""
    if kind == "binary":
        logits = np.asarray(outputs, dtype=np.float64)
        probs = 1.0 / (1.0 + np.exp(-logits))
        return {
            "auc": auc(targets, logits),
            "ne": float(normalized_entropy(targets, probs)),
            "logloss": logloss(targets, probs),
        }
    if kind == "regression":
        return {"rmse": rmse(targets, outputs)}
    if kind == "count":
        rates = np.exp(np.asarray(outputs, dtype=np.float64))
        return {"poisson_deviance": poisson_deviance(targets, rates), "rmse": rmse(targets, rates)}
    raise ValueError(f"kind must be 'binary', 'regression' or 'count', got {kind!r}")


#: The metric Δm% uses per task kind.
PRIMARY_METRIC: dict[str, str] = {
    "binary": "auc",
    "regression": "rmse",
    "count": "poisson_deviance",
}

#: The metrics :func:`task_metrics` returns per task kind.
METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("auc", "ne", "logloss"),
    "regression": ("rmse",),
    "count": ("poisson_deviance", "rmse"),
}


def delta_m(
    method: Mapping[str, float],
    baseline: Mapping[str, float],
    higher_is_better: Mapping[str, bool] | Sequence[bool],
) -> float:
    """Δm% (Maninis et al. 2019): the mean relative change against single-task
    baselines, in percent, signed so that positive means better::

        Δm = 100/K * sum_k s_k (M_k - B_k) / B_k,   s_k = +1 if higher is better else -1

    ``method`` and ``baseline`` map the same K keys (for example task names) to
    metric values.
    """
    keys = list(baseline)
    if set(method) != set(keys):
        raise ValueError(
            f"method and baseline must have the same keys, got {sorted(method)} and {sorted(keys)}"
        )
    if not isinstance(higher_is_better, Mapping):
        higher_is_better = dict(zip(keys, higher_is_better))
    total = 0.0
    for k in keys:
        b = float(baseline[k])
        if b == 0:
            raise ValueError(f"baseline[{k!r}] is 0; Δm% needs nonzero baselines")
        sign = 1.0 if higher_is_better[k] else -1.0
        total += sign * (float(method[k]) - b) / abs(b)
    return 100.0 * total / len(keys)
