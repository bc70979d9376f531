"""The state-safety guarantees that need a GPU: device moves at commit, the refused-step
count read without a sync, MGDA-UB's GPU solver. Skipped without CUDA (run them with
``pytest tests/test_state_safety_cuda.py`` on a CUDA machine)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import mbkernels as mbk

from .test_mgda_exact import KKT_TOL, kkt_residuals
from .test_state_safety import SHAPE, T, assert_unchanged, backward, grads, snapshot

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_state_follows_the_gradients_to_the_gpu_when_the_step_commits() -> None:
    bal = mbk.MultiBalance(T, backend="torch")
    backward(bal, grads(1.0, 2.0, 3.0))  # on the CPU
    cpu_state = snapshot(bal)
    backward(bal, grads(1.0, 2.0, 3.0), device="cuda")
    assert all(v.device.type == "cuda" for v in snapshot(bal).values())
    assert int(bal.step) == 2
    assert all(snapshot(bal)[k].dtype == v.dtype for k, v in cpu_state.items())


def test_a_failed_gpu_step_leaves_the_cpu_state_where_it_was(monkeypatch) -> None:
    bal = mbk.MultiBalance(T, backend="torch")
    backward(bal, grads(1.0, 2.0, 3.0))
    before = snapshot(bal)

    def broken(*args, **kwargs):
        raise RuntimeError("pass 2 failed")

    monkeypatch.setattr(mbk.ops, "weighted_sum", broken)
    with pytest.raises(RuntimeError, match="pass 2 failed"):
        backward(bal, grads(1.0, 2.0, 3.0), device="cuda")
    assert_unchanged(bal, before)  # values, dtype and device (still the CPU)


def test_refused_streak_on_cuda_warns_without_a_sync_one_step_late() -> None:
    bal = mbk.MultiBalance(T, backend="torch", warn_after_refused=3).cuda()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(6):
            gs = grads(1.0, 2.0, 3.0)
            gs[1][0, 0] = float("nan")
            backward(bal, gs, device="cuda")
            torch.cuda.synchronize()  # the count's copy has landed for the next step
    refused = [w for w in caught if issubclass(w.category, mbk.RefusedStepsWarning)]
    assert len(refused) == 1 and "task index(es) [1]" in str(refused[0].message)
    assert int(bal.refused_streak) == 6


@pytest.mark.parametrize("t", [3, 8, 12, 16, 32])
def test_mgda_ub_on_a_gpu_gram_matrix_is_exact(t: int) -> None:
    rng = np.random.default_rng(t)
    m = rng.standard_normal((t, 24))
    gram = m @ m.T
    w = mbk.MGDAUB(t).weights(torch.from_numpy(gram).cuda(), {}, torch.tensor(1))[0]
    assert w.device.type == "cuda"
    dual, stationarity = kkt_residuals(gram, w.cpu().numpy())
    assert dual <= max(KKT_TOL, 1e-8) and stationarity <= max(KKT_TOL, 1e-8)


def test_shape_only_pass_on_cuda_state_touches_nothing() -> None:
    bal = mbk.MultiBalance(T, backend="torch").cuda()
    backward(bal, grads(1.0, 2.0, 3.0), device="cuda")
    before = snapshot(bal)
    z = torch.zeros(SHAPE, device="meta", requires_grad=True)
    sum(o.sum() for o in bal(z)).backward()
    assert_unchanged(bal, before)
