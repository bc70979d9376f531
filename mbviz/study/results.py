"""The shipped results of the full study (``mbviz/data/study``) and how they were made."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._deps import require
from .problems import DATASETS

# ---------------------------------------------------------------------- shipped results
#: The questions whose full study ships with the package (plus ``"select"``, MultiBalance's
#: validation sweep).
QUESTIONS = ("imbalance", "tuning", "sparse")
_TABLES = {"runs": "", "summary": "_summary", "curve": "_curve"}


def results_dir():  # -> importlib.resources Traversable
    """The folder of the shipped study results (``mbviz/data/study``)."""
    from importlib.resources import files

    return files("mbviz.data").joinpath("study")


def load_results(
    question: str, dataset: str | Sequence[str] | None = None, *, table: str = "runs"
):  # -> pandas.DataFrame
    """The shipped results of the full study of ``question`` (:data:`QUESTIONS` or
    ``"select"``), for one ``dataset``, several, or all (:data:`DATASETS`; those missing
    are skipped), concatenated.

    ``table``: ``"runs"`` (the tidy run table), ``"summary"`` (:func:`paired_summary`
    against ``equal``) or ``"curve"`` (:func:`search_curve`, tuning only). The commands,
    sizes and wall times are in :func:`load_manifest`.
    """
    pd = require("pandas")
    if question not in (*QUESTIONS, "select"):
        raise ValueError(f"question must be one of {[*QUESTIONS, 'select']}, got {question!r}")
    if table not in _TABLES:
        raise ValueError(f"table must be one of {list(_TABLES)}, got {table!r}")
    names = [dataset] if isinstance(dataset, str) else list(dataset or DATASETS)
    bad = [d for d in names if d not in DATASETS]
    if bad:
        raise ValueError(f"dataset must be among {list(DATASETS)}, got {bad}")
    root = results_dir()
    frames = []
    for d in names:
        f = root.joinpath(f"{question}_{d}{_TABLES[table]}.csv")
        if f.is_file():
            with f.open("r", encoding="utf-8") as fh:
                frames.append(pd.read_csv(fh))
    if not frames:
        raise FileNotFoundError(f"no shipped {table} table for {question!r} on {names}")
    return pd.concat(frames, ignore_index=True)


def chosen_multibalance(dataset: str) -> dict[str, Any]:
    """MultiBalance's ``relax``, ``reference`` and ``beta`` for ``dataset`` as chosen by
    the shipped validation sweep (``select_<dataset>.csv``, :func:`select_multibalance`):
    the combination with the highest mean validation Δm%, as the rule's keyword
    arguments (``reference="target"`` is the first task, MultiBalance's default target)."""
    runs = load_results("select", dataset)
    mb = runs[runs["method"] == "multibalance"]
    best = str(mb.groupby("param")["val_delta_m"].mean().idxmax())
    kw = dict(item.split("=", 1) for item in best.split(","))
    return {"relax": float(kw["relax"]), "reference": kw["reference"], "beta": float(kw["beta"])}


def load_manifest() -> list[dict[str, Any]]:
    """How each shipped CSV was made: file, exact command, wall time (``manifest.json``)."""
    import json

    return list(json.loads(results_dir().joinpath("manifest.json").read_text("utf-8")))
