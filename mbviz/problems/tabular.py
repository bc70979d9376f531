"""Your own table as a multi-task problem: a pandas DataFrame, feature and task columns.

::

    prob = TabularProblem(df, tasks={"wage": "regression", "insured": "binary"},
                          features=["age", "education", "maritl"], time_col="year")
    mbviz.runner.train(prob, rule="multibalance", epochs=5)

Features: numeric columns are standardised with the *training* rows' mean and standard
deviation; a missing value becomes 0 (the training mean) plus a 0/1 indicator column
``<col> missing`` (added for every numeric column with a missing value anywhere). A column
constant wherever it is present (on the training rows) keeps its indicator only.
Categorical columns (non-numeric dtype, or listed in ``categorical=``) become embeddings
(``categorical_encoding="embedding"``, code 0 = missing or a category unseen in
training) or one-hot columns (``"onehot"``, all zeros for missing or unseen).

Tasks: ``"binary"`` (values 0/1 or bool; BCE on a logit), ``"regression"`` (numeric;
MSE in the column's own units: the model's tower predicts on a standard scale and its
output is mapped back with the training mean and standard deviation, see
:class:`mbviz.models.TabularSharedBottom`) or ``"count"`` (non-negative integers; Poisson
NLL on a log rate that starts at the log of the training mean). A missing label (NaN), or
a ``False`` in the task's mask column (``masks={task: column}``), counts in no loss and no
metric.

Split: ``split="random"`` (rows permuted with ``seed``) or ``time_col=`` (earliest rows
train, latest test; see :func:`mbviz.problems.tabular_split.time_split`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models import TabularSharedBottom
from .base import TASK_KINDS, Batch, MultiTaskProblem
from .tabular_split import SPLITS, random_split, time_split

ENCODINGS = ("embedding", "onehot")


def _require_columns(df: Any, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        have = ", ".join(repr(str(c)) for c in list(df.columns)[:30])
        raise ValueError(f"{what} column {missing[0]!r} is not in the table; columns: {have}")


def _check_task(pd: Any, df: Any, name: str, kind: str, labelled: np.ndarray) -> np.ndarray:
    """The task's targets as float64 (NaN where unlabelled), after checking the column."""
    if kind not in TASK_KINDS:
        raise ValueError(
            f"task {name!r}: kind must be one of {', '.join(map(repr, TASK_KINDS))}, got {kind!r}"
        )
    col = df[name]
    if col.dtype == bool:
        col = col.astype(float)
    if not pd.api.types.is_numeric_dtype(col):
        raise ValueError(
            f"task {name!r} ({kind}) must be numeric, got dtype {col.dtype} "
            f"(e.g. {col.dropna().iloc[0]!r}); map it to numbers first"
            if col.notna().any()
            else f"task {name!r} ({kind}) has no labels: every value is missing"
        )
    y = col.to_numpy(dtype=np.float64, na_value=np.nan).copy()
    ok = labelled & ~np.isnan(y)
    if not ok.any():
        raise ValueError(f"task {name!r} ({kind}) has no labels: every value is missing or masked")
    if not np.isfinite(y[ok]).all():
        raise ValueError(f"task {name!r} has infinite values")
    if kind == "count":
        v = y[ok]
        bad_counts = v[(v < 0) | (v != np.round(v))]
        if len(bad_counts):
            raise ValueError(
                f"count task {name!r} must hold non-negative integers (or missing), "
                f"found {sorted(set(bad_counts.tolist()))[:5]}"
            )
    if kind == "binary":
        bad = sorted(set(np.unique(y[ok]).tolist()) - {0.0, 1.0})
        if bad:
            raise ValueError(
                f"binary task {name!r} must hold only 0 and 1 (or missing), "
                f"found {bad[:5]}; map it to 0/1 first (e.g. (df[{name!r}] == 'yes').astype(int))"
            )
    y[~ok] = np.nan
    return y


class TabularProblem(MultiTaskProblem):
    """A multi-task problem from a pandas DataFrame (see the module docstring).

    Args:
        df: the table, one example per row.
        tasks: task column -> kind ("binary", "regression" or "count"), in task order.
        features: feature columns; default every column that is not a task, a mask or
            the time column.
        categorical: columns to treat as categorical even if numeric (non-numeric
            columns always are).
        categorical_encoding: "embedding" (default) or "onehot".
        masks: task -> a column that is True where that task's label is valid.
        split: "random" (default) or "time" (implied by ``time_col``).
        time_col: the column that orders rows in time for ``split="time"``.
        val_frac, test_frac: fractions of rows for validation and test.
        seed: the random split's seed.
        loss_scales: fixed multipliers of the training losses (default all 1).
        emb_dim, hidden, tower_hidden: model sizes.
    """

    def __init__(
        self,
        df: Any,
        tasks: Mapping[str, str],
        features: Sequence[str] | None = None,
        *,
        categorical: Sequence[str] = (),
        categorical_encoding: str = "embedding",
        masks: Mapping[str, str] | None = None,
        split: str = "random",
        time_col: str | None = None,
        val_frac: float = 0.15,
        test_frac: float = 0.15,
        seed: int = 0,
        loss_scales: Sequence[float] | None = None,
        emb_dim: int = 8,
        hidden: Sequence[int] = (64, 32),
        tower_hidden: int = 16,
    ) -> None:
        import pandas as pd

        if not isinstance(df, pd.DataFrame):
            raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
        if len(df) == 0:
            raise ValueError("df has no rows")
        if not tasks:
            raise ValueError("tasks must name at least one column, e.g. {'price': 'regression'}")
        if categorical_encoding not in ENCODINGS:
            raise ValueError(
                f"categorical_encoding must be one of {ENCODINGS}, got {categorical_encoding!r}"
            )
        if not (isinstance(seed, (int, np.integer)) and seed >= 0):
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if time_col is not None:
            split = "time"
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if split == "time" and time_col is None:
            raise ValueError("split='time' needs time_col=<the column that orders the rows>")
        masks = dict(masks or {})
        task_names = [str(t) for t in tasks]
        _require_columns(df, task_names, "task")
        unknown = [t for t in masks if t not in tasks]
        if unknown:
            raise ValueError(f"masks names {unknown[0]!r}, which is not a task ({task_names})")
        _require_columns(df, list(masks.values()), "mask")
        if time_col is not None:
            _require_columns(df, [time_col], "time")
        reserved = {*task_names, *masks.values(), *([time_col] if time_col else [])}
        if features is None:
            features = [str(c) for c in df.columns if c not in reserved]
        features = list(features)
        _require_columns(df, features, "feature")
        clash = [f for f in features if f in reserved]
        if clash:
            raise ValueError(f"column {clash[0]!r} is both a feature and a task, mask or time")
        if not features:
            raise ValueError("features is empty: name at least one feature column")
        _require_columns(df, list(categorical), "categorical")
        cat_set = set(categorical)

        n = len(df)
        if split == "time":
            assert time_col is not None
            tcol = df[time_col]
            if tcol.isna().any():
                raise ValueError(f"time column {time_col!r} has missing values")
            idx = time_split(tcol.to_numpy(), val_frac, test_frac, column=time_col)
        else:
            idx = random_split(n, val_frac, test_frac, seed)
        self.rows = dict(zip(("train", "val", "test"), idx))
        train_rows = self.rows["train"]

        # targets and label masks
        ys, kinds = [], []
        for name in task_names:
            labelled = np.ones(n, dtype=bool)
            if name in masks:
                m = df[masks[name]]
                if m.isna().any() or not (m.dtype == bool or set(m.unique()) <= {0, 1}):
                    raise ValueError(
                        f"mask column {masks[name]!r} of task {name!r} must hold only "
                        "True/False (or 1/0) without missing values"
                    )
                labelled = m.to_numpy().astype(bool)
            y = _check_task(pd, df, name, str(tasks[name]), labelled)
            if np.isnan(y[train_rows]).all():
                raise ValueError(f"task {name!r} has no labels in the training split")
            ys.append(y)
            kinds.append(str(tasks[name]))
        y_all = np.stack(ys, axis=1)
        self.task_names = tuple(task_names)
        self.task_kinds = tuple(kinds)
        T = len(task_names)
        scales = tuple(loss_scales) if loss_scales is not None else (1.0,) * T
        if len(scales) != T or any(not (0.0 <= float(s) < math.inf) for s in scales):
            raise ValueError(f"loss_scales must be {T} finite numbers >= 0, got {scales}")
        self.loss_scales = tuple(float(s) for s in scales)

        # features: numeric standardised on train rows, categorical coded on train rows
        dense_cols: list[np.ndarray] = []
        self.dense_names: list[str] = []
        self.categories: dict[str, list[Any]] = {}
        codes: list[np.ndarray] = []
        self.feature_stats: dict[str, tuple[float, float]] = {}
        for f in features:
            col = df[f]
            is_cat = f in cat_set or not (
                pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)
            )
            if is_cat:
                cats = sorted(col.iloc[train_rows].dropna().unique().tolist(), key=str)
                if len(cats) <= 1 and not col.iloc[train_rows].isna().any():
                    raise ValueError(
                        f"feature {f!r} is constant on the training rows ({cats}); drop it"
                    )
                self.categories[f] = cats
                lookup = {c: i + 1 for i, c in enumerate(cats)}
                code = col.map(lookup).fillna(0).to_numpy(dtype=np.int64)
                if categorical_encoding == "embedding":
                    codes.append(code)
                else:
                    for i, c in enumerate(cats):
                        dense_cols.append((code == i + 1).astype(np.float32))
                        self.dense_names.append(f"{f}={c}")
                continue
            x = col.to_numpy(dtype=np.float64, na_value=np.nan)
            xt = x[train_rows]
            xt = xt[~np.isnan(xt)]
            if len(xt) == 0:
                raise ValueError(f"feature {f!r} is missing on every training row")
            mean, std = float(xt.mean()), float(xt.std())
            miss = np.isnan(x)
            if not std > 0 and not miss[train_rows].any():
                raise ValueError(
                    f"feature {f!r} is constant on the training rows (every value {mean:g}); "
                    "drop it"
                )
            if std > 0:  # a value present or missing carries no more than its indicator
                self.feature_stats[f] = (mean, std)
                dense_cols.append(np.where(miss, 0.0, (x - mean) / std).astype(np.float32))
                self.dense_names.append(f)
            if miss.any():
                dense_cols.append(miss.astype(np.float32))
                self.dense_names.append(f"{f} missing")
        self.features = features
        self.categorical_encoding = categorical_encoding
        dense = np.stack(dense_cols, axis=1) if dense_cols else np.zeros((n, 0), np.float32)
        code_arr = np.stack(codes, axis=1) if codes else np.zeros((n, 0), np.int64)
        self.cardinalities = [len(self.categories[f]) for f in features if f in self.categories]
        if categorical_encoding == "onehot":
            self.cardinalities = []

        # output scale of regression towers: the training labels' mean and std
        shift, scale = [], []
        for t, kind in enumerate(kinds):
            yt = y_all[train_rows, t]
            yt = yt[~np.isnan(yt)]
            if kind == "regression":
                sd = float(yt.std())
                shift.append(float(yt.mean()))
                scale.append(sd if sd > 0 else 1.0)
            elif kind == "count":  # log rate: start at the log of the mean count
                shift.append(float(np.log(max(yt.mean(), 1e-3))))
                scale.append(1.0)
            else:
                shift.append(0.0)
                scale.append(1.0)
        self.target_shift, self.target_scale = tuple(shift), tuple(scale)

        self.emb_dim = int(emb_dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.tower_hidden = int(tower_hidden)
        if self.emb_dim < 1 or not self.hidden or min(self.hidden) < 1 or self.tower_hidden < 0:
            raise ValueError(
                "emb_dim and every hidden size must be >= 1 and tower_hidden >= 0, got "
                f"emb_dim={emb_dim}, hidden={hidden}, tower_hidden={tower_hidden}"
            )
        self._splits = {
            name: self._make_batch(dense[r], code_arr[r], y_all[r]) for name, r in self.rows.items()
        }

    @staticmethod
    def _make_batch(dense: np.ndarray, codes: np.ndarray, y: np.ndarray) -> Batch:
        mask = ~np.isnan(y)
        targets = np.where(mask, y, 0.0)
        return Batch(
            (torch.as_tensor(dense), torch.as_tensor(codes)),
            torch.as_tensor(targets, dtype=torch.float32),
            torch.as_tensor(mask),
        )

    @classmethod
    def from_csv(cls, path: str | Path, tasks: Mapping[str, str], **kwargs: Any) -> TabularProblem:
        """Read ``path`` with :func:`pandas.read_csv`, then as the constructor."""
        import pandas as pd

        return cls(pd.read_csv(path), tasks, **kwargs)

    @classmethod
    def from_parquet(
        cls, path: str | Path, tasks: Mapping[str, str], **kwargs: Any
    ) -> TabularProblem:
        """Read ``path`` with :func:`pandas.read_parquet` (needs pyarrow or fastparquet)."""
        import pandas as pd

        try:
            df = pd.read_parquet(path)
        except ImportError as exc:
            raise ValueError(
                "reading parquet needs pyarrow or fastparquet (pip install pyarrow); "
                f"or save the table as CSV and use --csv ({exc})"
            ) from exc
        return cls(df, tasks, **kwargs)

    @property
    def num_dense(self) -> int:
        return int(self._splits["train"].inputs[0].shape[1])

    def make_model(self, arch: str = "shared_bottom") -> TabularSharedBottom:
        if arch not in self.archs:
            raise ValueError(f"arch must be one of {self.archs}, got {arch!r}")
        return TabularSharedBottom(
            self.num_dense,
            self.cardinalities,
            self.num_tasks,
            emb_dim=self.emb_dim,
            hidden=self.hidden,
            tower_hidden=self.tower_hidden,
            out_shift=self.target_shift,
            out_scale=self.target_scale,
        )

    @property
    def train_size(self) -> int:
        return len(self._splits["train"])

    def train_batch(self, idx: torch.Tensor) -> Batch:
        return self._splits["train"].take(idx)

    def sample_batch(self, batch_size: int, generator: torch.Generator) -> Batch:
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        idx = torch.randint(0, self.train_size, (batch_size,), generator=generator)
        return self.train_batch(idx)

    def split(self, name: str) -> Batch:
        if name not in self._splits:
            raise ValueError(f"split must be one of 'train', 'val', 'test', got {name!r}")
        return self._splits[name]
