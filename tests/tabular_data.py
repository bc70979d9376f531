"""A synthetic table with known answers for the TabularProblem tests."""

from __future__ import annotations

import numpy as np
import pandas as pd


def synthetic_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Columns: ``day`` (0..n//4-1, four rows per day), numeric ``x1`` (some missing),
    ``x2``, categorical ``colour``; tasks ``y_small`` (regression, unit scale),
    ``y_big`` (regression, 1000 times larger, some labels missing), ``clicked`` (binary)
    and ``bought`` (binary, labelled only where ``has_bought``)."""
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal(n)
    x2 = rng.standard_normal(n) * 3.0 + 5.0
    colour = rng.choice(["red", "green", "blue"], size=n)
    effect = pd.Series(colour).map({"red": 1.0, "green": 0.0, "blue": -1.0}).to_numpy()
    y_small = x1 + 0.5 * effect + 0.1 * rng.standard_normal(n)
    y_big = 1000.0 * (x2 - 5.0) / 3.0 + 100.0 * rng.standard_normal(n)
    clicked = (x1 + effect + 0.3 * rng.standard_normal(n) > 0).astype(int)
    bought = (x2 > 5.0).astype(float)
    df = pd.DataFrame(
        {
            "day": np.arange(n) // 4,
            "x1": x1,
            "x2": x2,
            "colour": colour,
            "y_small": y_small,
            "y_big": y_big,
            "clicked": clicked,
            "bought": bought,
            "has_bought": rng.random(n) < 0.7,
        }
    )
    df.loc[df.index % 10 == 3, "x1"] = np.nan
    df.loc[df.index % 7 == 2, "y_big"] = np.nan
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # rows out of time order


TASKS = {"y_small": "regression", "y_big": "regression", "clicked": "binary", "bought": "binary"}
FEATURES = ["x1", "x2", "colour"]
