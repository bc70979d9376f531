"""mbviz figures: each has its traces and titled axes; values come from the inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mbviz import figures as F
from mbviz import stability
from mbviz.problems import QuadraticToy, SyntheticProblem
from mbviz.runner import (
    RunConfig,
    baseline_metrics,
    single_task_baselines,
    sweep_preferences,
    train,
)

pytestmark = pytest.mark.usefixtures("one_thread")

CFG = RunConfig(steps=40, batch_size=64, lr=0.05, progress=False, eval_every=20)


def _titles(fig) -> list[str]:
    out = []
    for name in dir(fig.layout):
        if name.startswith(("xaxis", "yaxis")):
            ax = getattr(fig.layout, name)
            if ax is not None and hasattr(ax, "title"):
                out.append(ax.title.text)
    return out


def _all_axes_titled(fig) -> None:
    titles = _titles(fig)
    assert titles and all(t for t in titles), titles
    assert fig.layout.title.text


@pytest.fixture(scope="module")
def runs():
    p = SyntheticProblem(num_tasks=3, angle=120.0, scale_ratio=10.0)
    return p, [train(p, CFG, rule=r) for r in ("equal", "multibalance")]


def test_gradient_combination_matches_rules() -> None:
    fig = F.gradient_combination(
        angle=90.0,
        ratio=4.0,
        rules=["equal", "multibalance"],
        rule_kwargs={"multibalance": {"relax": 1.0}},
    )
    names = [t.name for t in fig.data]
    assert names[:2] == ["g1 (task 1)", "g2 (task 2)"] and "Equal" in names
    eq = fig.data[names.index("Equal")]
    np.testing.assert_allclose([eq.x[1], eq.y[1]], [1.0, 4.0], atol=1e-6)  # g1 + g2
    mb = fig.data[names.index("MultiBalance")]
    # relax=1, target task 1: w2 = ||g1|| / ||g2|| = 1/4 -> g1 + g2/4 = (1, 1)
    np.testing.assert_allclose([mb.x[1], mb.y[1]], [1.0, 1.0], atol=1e-5)
    _all_axes_titled(fig)
    with pytest.raises(ValueError, match="grads"):
        F.gradient_combination(np.zeros((3, 2)))


def test_cosine_and_magnitude_figures(runs) -> None:
    _p, (eq, mb) = runs
    fig = F.cosine_heatmap(mb.history)
    assert len(fig.data) == 1 and len(fig.data[0].y) == 3  # three task pairs
    h = mb.history
    want = h[(h.task == "task1") & (h.step == 5)]["cos_task3"].item()
    assert fig.data[0].y[1] == "task1 · task3" and fig.data[0].z[1][4] == pytest.approx(want)
    _all_axes_titled(fig)
    fig = F.magnitudes_and_weights(mb.history)
    names = [t.name for t in fig.data]
    assert {"task1 raw", "task1 EMA", "task3 weight"} <= set(names)
    np.testing.assert_allclose(
        fig.data[names.index("task3 weight")].y, h[h.task == "task3"]["weight"]
    )
    _all_axes_titled(fig)
    fig = F.magnitudes_and_weights(eq.history)  # equal keeps no EMA
    assert not any(t.name.endswith("EMA") for t in fig.data)
    assert fig.layout.yaxis2.type == "linear"
    exploded = mb.history.assign(weight=np.where(mb.history.task == "task2", 1e6, 1.0))
    assert F.magnitudes_and_weights(exploded).layout.yaxis2.type == "log"


def test_learning_curves_and_throughput(runs) -> None:
    _, res = runs
    fig = F.learning_curves(res)
    assert len(fig.data) == 2 * 3
    _all_axes_titled(fig)
    fig = F.learning_curves(res, split="val")
    assert list(fig.data[0].x) == [20, 40]
    _all_axes_titled(fig)
    table = pd.DataFrame({"method": ["plain", "mb"], "steps_per_s": [100.0, 50.0]})
    fig = F.throughput_bars(table)
    assert list(fig.data[0].text) == ["1.00×", "0.50×"]
    _all_axes_titled(fig)
    # the benchmark's paired ratio (median of per-round ratios) is what its table shows:
    # the labels read the same, not the ratio of the medians
    table["ratio_vs_sum_paired"] = [1.0, 0.47]
    assert list(F.throughput_bars(table).data[0].text) == ["1.00×", "0.47×"]
    assert list(F.throughput_bars(table, baseline="mb").data[0].text) == ["2.00×", "1.00×"]


def test_pareto_front_figure() -> None:
    p = SyntheticProblem(angle=90.0, scale_ratio=1.0, noise=0.3)
    cfg = RunConfig(steps=60, batch_size=64, lr=0.05, progress=False)
    sweep = sweep_preferences(p, cfg, n=3)
    methods = [train(p, cfg, rule="multibalance", seed=s) for s in (0, 1)]
    base = baseline_metrics(single_task_baselines(p, cfg))
    fig = F.pareto_front(sweep, methods, single_task=base)
    names = [t.name for t in fig.data]
    assert names == [
        "preference sweep",
        "non-dominated (sweep)",
        "MultiBalance",
        "single-task optima",
    ]
    assert len(fig.data[2].x) == 2 and fig.data[3].x[0] == pytest.approx(base["task1"])
    _all_axes_titled(fig)
    assert F.nondominated(np.array([[1, 1], [2, 2], [0, 3]]), [True, True]).tolist() == [
        False,
        True,
        True,
    ]


def test_toy_and_stability_figures() -> None:
    toy = QuadraticToy(scale_ratio=3.0)
    traj = pd.concat([toy.trajectory(r, steps=50) for r in ("equal", "multibalance")])
    fig = F.toy_trajectories(toy, traj)
    assert {"Pareto set", "Equal", "MultiBalance"} <= {t.name for t in fig.data}
    _all_axes_titled(fig)
    p = SyntheticProblem(noise=0.3, outliers=0.05)
    model = stability.warmed_up_model(p, steps=0)
    s = pd.concat(
        [stability.weight_series(p, model, beta=b, batch_size=16, steps=40) for b in (0.0, 0.9)]
    )
    fig = F.stability_traces(s)
    assert len(fig.data) == 2
    std0, std9 = (float(s[(s.beta == b) & (s.task == "task2")]["weight"].std()) for b in (0, 0.9))
    assert std9 < std0  # the moving average smooths the weights
    _all_axes_titled(fig)
    v = stability.weight_variability(
        p, model, betas=(0.0, 0.9), batch_sizes=(16, 64), steps=30, burn_in=5
    )
    fig = F.variance_heatmap(v)
    assert np.asarray(fig.data[0].z).shape == (2, 2)
    _all_axes_titled(fig)


def test_every_method_the_runner_accepts_has_a_label_and_no_other_name_does() -> None:
    from mbkernels.rules import RULES
    from mbviz.rules import LABELS, rule_names
    from mbviz.runner import PARAM_METHODS

    assert set(LABELS) == {*RULES, "none", *PARAM_METHODS}
    assert rule_names() == tuple(RULES)


def test_traffic_bars_and_throughput_ratios() -> None:
    import pandas as pd

    from mbviz import figures
    from mbviz.course.traffic import bytes_moved

    fig = figures.traffic_bars(2**20, tasks=[1, 4])
    assert [t.name for t in fig.data] == ["fused", "naive"]
    assert list(fig.data[0].y) == [bytes_moved(t, 2**20, "float32", "fused") / 1e6 for t in (1, 4)]
    rows = pd.DataFrame(
        {"method": ["a", "a", "b", "b"], "T": [2, 4, 2, 4], "ratio_vs_sum_paired": [1, 1, 0.9, 0.8]}
    )
    fig = figures.throughput_ratios(rows)
    assert [t.name for t in fig.data] == ["a", "b"] and list(fig.data[1].y) == [0.9, 0.8]
    for f in (fig, figures.traffic_bars(16)):
        assert f.layout.xaxis.title.text and f.layout.yaxis.title.text


def test_fixed_cost_bars() -> None:
    import pandas as pd

    from mbviz import figures

    rows = pd.DataFrame(
        {
            "size": ["batch 32"] * 3 + ["batch 256"] * 3,
            "method": ["plain sum", "mb", "fork"] * 2,
            "overhead_us": [0.0, 300.0, 200.0, 0.0, 350.0, 210.0],
            "overhead_us_90": [[0, 0], [250, 380], [150, 260], [0, 0], [300, 400], [180, 240]],
            "ratio_vs_sum_paired": [1.0, 0.9, 0.93, 1.0, 0.92, 0.95],
        }
    )
    fig = figures.fixed_cost(rows, baseline="plain sum")
    assert [t.name for t in fig.data] == ["mb", "fork"]  # the baseline's own rows left out
    mb = fig.data[0]
    assert list(mb.x) == ["batch 32", "batch 256"] and list(mb.y) == [300.0, 350.0]
    assert list(mb.error_y.array) == [80.0, 50.0] and list(mb.error_y.arrayminus) == [50.0, 50.0]
    assert list(mb.text) == ["0.90×", "0.92×"]
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    with pytest.raises(ValueError, match="besides 'sum'"):
        figures.fixed_cost(rows[rows["method"] == "sum"])
