"""Notebook 00's warm-up run: the loss-scale jump, the bias-corrected EMA, the figure."""

from __future__ import annotations

import numpy as np
import pytest

from mbviz.course.warmup import (
    JUMP,
    LOSS_SCALES,
    NOTEBOOK_RUN,
    train_warmup,
    update_warmup_figure,
    warmup_figure,
)


@pytest.fixture(scope="module")
def history():
    return train_warmup(**NOTEBOOK_RUN)[1]


def test_the_jump_scales_the_last_task_gradient(history) -> None:
    last = len(LOSS_SCALES) - 1
    norms = history[history.task == last].set_index("step")["norm"]
    at = NOTEBOOK_RUN["jump_at"]
    before, after = norms.loc[at - 5 : at - 1].mean(), norms.loc[at : at + 4].mean()
    assert 0.4 * JUMP < after / before < 2.5 * JUMP
    other = history[history.task == 0].set_index("step")["norm"]
    assert 0.3 < other.loc[at : at + 4].mean() / other.loc[at - 5 : at - 1].mean() < 3


def test_corrected_ema_is_what_the_weights_use(history) -> None:
    # relax 0.7, target 0: w_t = 0.7 * mhat_0 / (mhat_t + eps) + 0.3 with mhat the corrected EMA
    for _, h in history.groupby("step"):
        m = h.sort_values("task")["ema_corrected"].to_numpy()
        w = h.sort_values("task")["weight"].to_numpy()
        np.testing.assert_allclose(w, 0.7 * m[0] / m + 0.3, rtol=1e-4)
    first = history[history.step == 0]
    # step 1: the stored EMA is (1 - beta) n, the corrected one is n
    np.testing.assert_allclose(first["ema"], 0.1 * first["norm"], rtol=1e-5)
    np.testing.assert_allclose(first["ema_corrected"], first["norm"], rtol=1e-5)


def test_beta_trades_noise_against_lag() -> None:
    at = NOTEBOOK_RUN["jump_at"]
    runs = {b: train_warmup(beta=b, relax=1.0, **NOTEBOOK_RUN)[1] for b in (0.0, 0.99)}
    last = len(LOSS_SCALES) - 1
    ema = {b: h[h.task == last].set_index("step")["ema_corrected"] for b, h in runs.items()}
    # noise before the jump: beta 0 jumps with every batch, 0.99 barely moves step to step
    jitter = {b: e.loc[10 : at - 1].diff().abs().mean() for b, e in ema.items()}
    assert jitter[0.0] > 10 * jitter[0.99], jitter
    # lag after it: beta 0 is at the new level at once, 0.99 is still far below
    assert ema[0.0].loc[at + 2] > 3 * ema[0.99].loc[at + 2]


def test_figure_and_its_update(history) -> None:
    fig = warmup_figure(history)
    assert len(fig.data) == len(LOSS_SCALES) + 2
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis2.type == "log"
    other = train_warmup(beta=0.0, **NOTEBOOK_RUN)[1]
    update_warmup_figure(fig, other)
    last = len(LOSS_SCALES) - 1
    np.testing.assert_allclose(fig.data[-1].y, other[other.task == last]["ema_corrected"])
    np.testing.assert_allclose(fig.data[0].y, other[other.task == 0]["weight"])
