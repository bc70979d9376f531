"""Train / validation / test rows of a table: at random with a seed, or by a time column."""

from __future__ import annotations

import numpy as np

SPLITS = ("random", "time")


def _check_fractions(val_frac: float, test_frac: float) -> None:
    for name, v in (("val_frac", val_frac), ("test_frac", test_frac)):
        if not 0.0 < float(v) < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {v!r}")
    if val_frac + test_frac >= 1.0:
        raise ValueError(
            f"val_frac + test_frac must be below 1 (rows must remain for training), "
            f"got {val_frac} + {test_frac}"
        )


def random_split(
    n: int, val_frac: float, test_frac: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (train, val, test): a permutation of ``range(n)`` drawn with ``seed``."""
    _check_fractions(val_frac, test_frac)
    perm = np.random.default_rng(seed).permutation(n)
    n_val, n_test = round(n * val_frac), round(n * test_frac)
    n_train = n - n_val - n_test
    parts = perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]
    if min(len(p) for p in parts) == 0:
        raise ValueError(
            f"a split of {n} rows with val_frac={val_frac}, test_frac={test_frac} leaves an "
            "empty train, val or test split"
        )
    return tuple(np.sort(p) for p in parts)  # type: ignore[return-value]


def time_split(
    times: np.ndarray, val_frac: float, test_frac: float, *, column: str = "time"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (train, val, test) by time: the earliest rows train, the latest test.

    The cuts fall between distinct time values, so rows sharing a time stay in one split
    and every train row is strictly earlier than every validation row (and every
    validation row earlier than every test row). The fractions are therefore approximate.
    """
    _check_fractions(val_frac, test_frac)
    t = np.asarray(times)
    n = len(t)
    if n and np.issubdtype(t.dtype, np.floating) and np.isnan(t).any():
        raise ValueError(f"time column {column!r} has missing values")
    order = np.sort(t, kind="stable")
    n_val, n_test = round(n * val_frac), round(n * test_frac)
    cut_val = order[n - n_val - n_test] if n - n_val - n_test < n else None
    cut_test = order[n - n_test] if n_test > 0 else None
    if cut_val is None or cut_test is None:
        raise ValueError(f"time split of {n} rows leaves an empty split")
    train = np.flatnonzero(t < cut_val)
    val = np.flatnonzero((t >= cut_val) & (t < cut_test))
    test = np.flatnonzero(t >= cut_test)
    if min(len(train), len(val), len(test)) == 0:
        raise ValueError(
            f"time column {column!r} has too few distinct values ({len(np.unique(t))}) for "
            f"a train / val / test split with val_frac={val_frac}, test_frac={test_frac}: "
            "rows sharing a time stay together, so some split is empty"
        )
    return train, val, test
