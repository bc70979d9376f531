"""The exercises' self-checks: right answers pass, wrong or missing ones do not,
and every solution file in notebooks/solutions/ passes its own check."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import torch

import mbkernels as mbk
from mbviz.course import check_multibalance_weights
from mbviz.course.traffic import bytes_moved

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solution_passes_its_check(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(path), run_name="__main__")  # each solution asserts its check
    assert "correct!" in capsys.readouterr().out


def test_every_notebook_has_a_solution() -> None:
    notebooks = {p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert notebooks <= {p.stem for p in SOLUTIONS}


class _TwoTowers(torch.nn.Module):
    """Shared bottom -> Z [B, 4] -> three linear towers; the third loss is 10x larger."""

    def __init__(self) -> None:
        super().__init__()
        self.bottom = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh())
        self.towers = torch.nn.ModuleList(torch.nn.Linear(4, 1) for _ in range(3))


def _losses(preds: list[torch.Tensor], y: torch.Tensor) -> list[torch.Tensor]:
    return [s * ((p.squeeze(-1) - y[:, t]) ** 2).mean() for t, (s, p) in enumerate(
        zip((1.0, 2.0, 10.0), preds))]  # fmt: skip


def test_fork_step_check_accepts_the_fork_and_rejects_the_usual_mistakes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mbviz.course import check_fork_step

    gen = torch.Generator().manual_seed(0)
    batch = (torch.randn(16, 5, generator=gen), torch.randn(16, 3, generator=gen))

    def forked(model, bal, opt, batch):  # type: ignore[no-untyped-def]
        x, y = batch
        zs = bal(model.bottom(x))
        losses = _losses([tower(z) for tower, z in zip(model.towers, zs)], y)
        opt.zero_grad()
        sum(losses).backward()
        opt.step()

    def no_fork(model, bal, opt, batch):  # type: ignore[no-untyped-def]
        x, y = batch
        z = model.bottom(x)
        bal(z)  # called, but the towers read z itself
        opt.zero_grad()
        sum(_losses([tower(z) for tower in model.towers], y)).backward()
        opt.step()

    def one_view(model, bal, opt, batch):  # type: ignore[no-untyped-def]
        x, y = batch
        zs = bal(model.bottom(x))
        opt.zero_grad()
        sum(_losses([tower(zs[0]) for tower in model.towers], y)).backward()
        opt.step()

    def backward_per_task(model, bal, opt, batch):  # type: ignore[no-untyped-def]
        x, y = batch
        zs = bal(model.bottom(x))
        opt.zero_grad()
        losses = _losses([tower(z) for tower, z in zip(model.towers, zs)], y)
        for t, loss in enumerate(losses):
            loss.backward(retain_graph=t < 2)
        opt.step()

    def no_step(model, bal, opt, batch):  # type: ignore[no-untyped-def]
        x, y = batch
        zs = bal(model.bottom(x))
        sum(_losses([tower(z) for tower, z in zip(model.towers, zs)], y)).backward()

    def broken(model, bal, opt, batch):  # type: ignore[no-untyped-def]
        raise RuntimeError("typo")

    kw = dict(make_model=_TwoTowers, batch=batch, num_tasks=3)
    assert check_fork_step(forked, **kw)
    assert check_fork_step(forked, relax=1.0, reference="max", **kw)
    for wrong in (no_fork, one_view, backward_per_task, no_step, broken):
        assert not check_fork_step(wrong, **kw), wrong.__name__
    assert not check_fork_step(None, **kw)
    out = capsys.readouterr().out
    assert out.count("correct!") == 2 and "not answered yet" in out
    assert "got no gradient" in out and "backward passes" in out and "optimizer.step()" in out
    assert "RuntimeError: typo" in out


def _balancer_after_two_steps() -> mbk.MultiBalance:
    bal = mbk.MultiBalance(num_tasks=3, beta=0.5, relax=0.7, reference="target", target=1)
    for scale in (1.0, 2.0):
        z = torch.ones(4, 2, requires_grad=True)
        zs = bal(z)
        # dL_t/dz = c_t everywhere: norms 2*sqrt(2)*c_t with c = (1, 4, 0.5) * scale
        sum(c * scale * zt.sum() for c, zt in zip((1.0, 4.0, 0.5), zs)).backward()
    return bal


def test_weights_check_against_hand_computed_values(capsys: pytest.CaptureFixture[str]) -> None:
    bal = _balancer_after_two_steps()
    # Every norm is proportional to c_t, so m_ref / m_t = c_1 / c_t = (4, 1, 8).
    by_hand = [0.7 * 4 + 0.3, 1.0, 0.7 * 8 + 0.3]
    assert check_multibalance_weights(by_hand, bal)
    assert torch.allclose(bal.stats.weights.double(), torch.tensor(by_hand, dtype=torch.float64))
    assert not check_multibalance_weights([1.0, 1.0, 1.0], bal)
    assert not check_multibalance_weights([1.0, 2.0], bal)  # wrong length: a hint, no exception
    assert not check_multibalance_weights(None, bal)
    out = capsys.readouterr().out
    assert "correct!" in out and "not quite" in out and "not answered yet" in out


def test_bytes_formula() -> None:
    from mbviz.course.traffic import transfer_time_us

    # 1 MB at 1 GB/s is 1000 us; bandwidth must be positive
    assert transfer_time_us(2, 50_000, "float32", "fused", 1e9) == pytest.approx(1000.0)
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        transfer_time_us(2, 10, "float32", "fused", 0.0)
    # T = 2 tasks of N = 10 float32: fused 5 passes of 10 elements, naive 13.
    assert bytes_moved(2, 10, "float32", "fused") == 5 * 10 * 4
    assert bytes_moved(2, 10, "float32", "naive") == 13 * 10 * 4
    with pytest.raises(ValueError, match="dtype"):
        bytes_moved(2, 10, "int8")
    with pytest.raises(ValueError, match="method"):
        bytes_moved(2, 10, "float32", "magic")


def test_new_checks_reject_wrong_answers() -> None:
    from mbviz.course import (
        check_cosine,
        check_delta_m,
        check_ema_noise_factor,
        check_throughput_ratio,
    )

    # cos of (1, 0) and (1, 1) is 1/sqrt(2), derived by hand
    assert check_cosine(2**-0.5, [1.0, 0.0], [1.0, 1.0])
    assert not check_cosine(0.5, [1.0, 0.0], [1.0, 1.0])
    # beta = 0.5: sqrt(0.5 / 1.5)
    assert check_ema_noise_factor(3**-0.5, beta=0.5)
    assert not check_ema_noise_factor(0.5, beta=0.5)
    # AUC 0.8 -> 0.84 (+5%), RMSE 1.0 -> 1.1 (-10%): mean -2.5%
    dm = dict(
        method={"a": 0.84, "r": 1.1},
        baseline={"a": 0.8, "r": 1.0},
        higher_is_better={"a": True, "r": False},
    )
    assert check_delta_m(-2.5, **dm)
    assert not check_delta_m(7.5, **dm)
    # T = 3 backward passes costing 2 forwards each: (1 + 2) / (1 + 6)
    assert check_throughput_ratio(3 / 7, num_tasks=3, backward_over_forward=2.0)
    assert not check_throughput_ratio(1 / 3, num_tasks=3, backward_over_forward=2.0)


def test_checks_accept_three_significant_figures(capsys: pytest.CaptureFixture[str]) -> None:
    from mbviz.course import check_cosine, check_ema_noise_factor, check_throughput_ratio

    # 1/3 typed as 0.333 (T = 2, b = 2: (1 + 2) / (1 + 4) = 0.6; T = 5, b = 1: 2 / 6 = 1/3)
    assert check_throughput_ratio(0.333, num_tasks=5, backward_over_forward=1.0)
    # beta = 0.9: sqrt(0.1 / 1.9) = 0.22942
    assert check_ema_noise_factor(0.229, beta=0.9)
    # notebook 01's gradients: cos = -0.19048; -0.191 comes from norms rounded to 3 figures
    g1, g2 = [0.5, -1.0, 2.0], [-1.0, 0.5, 0.25]
    assert check_cosine(-0.190, g1, g2) and check_cosine(-0.191, g1, g2)
    capsys.readouterr()
    # two figures: a rounding problem, said as such
    assert not check_throughput_ratio(0.33, num_tasks=5, backward_over_forward=1.0)
    assert "rounded" in capsys.readouterr().out
    assert not check_cosine(-0.2, g1, g2)
    assert "rounded" in capsys.readouterr().out
    # a wrong answer gets the hint, not the rounding message
    assert not check_cosine(0.19, g1, g2)
    out = capsys.readouterr().out
    assert "Hint" in out and "rounded" not in out
    assert not check_ema_noise_factor(float("nan"), beta=0.9)


def test_delta_m_hint_names_the_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    from mbviz.course import check_delta_m

    dm = dict(method={"a": 1.0}, baseline={"a": 2.0}, higher_is_better={"a": True})
    assert not check_delta_m(10.0, **dm)
    out = capsys.readouterr().out
    assert "M_baseline" in out and "equal weighting" in out and "M_single" not in out


def _load_solution(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "notebooks" / "solutions" / name
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rule_exercise_accepts_the_solution_and_refuses_near_misses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mbviz.course import check_multibalance_rule

    good = _load_solution("02_multibalance_step_by_step.py").MyMultiBalance
    capsys.readouterr()
    assert check_multibalance_rule(good)

    class NoEma(good):  # per-batch norms: right on step 1, wrong after
        def weights(self, gram, state, step):
            n = gram.diagonal().sqrt()
            return self.relax * n[self.target] / (n + self.eps) + 1 - self.relax, dict(state)

    class ForgetsState(good):  # the EMA is computed but never kept
        def weights(self, gram, state, step):
            w, _ = super().weights(gram, state, step)
            return w, dict(state)

    class Skeleton(good):
        def weights(self, gram, state, step):
            raise NotImplementedError("fill in weights()")

    class WrongShape(good):
        def weights(self, gram, state, step):
            w, s = super().weights(gram, state, step)
            return w[:-1], s

    for cls in (NoEma, ForgetsState):
        assert not check_multibalance_rule(cls)
        out = capsys.readouterr().out
        assert "step 2" in out and "state" in out
    assert not check_multibalance_rule(Skeleton)
    assert "not answered yet" in capsys.readouterr().out
    assert not check_multibalance_rule(WrongShape)
    assert "raised" in capsys.readouterr().out
    assert not check_multibalance_rule(None)


def test_mgda_exercise(capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    from mbviz.course import check_mgda_endpoint
    from mbviz.problems import QuadraticToy

    sol = _load_solution("03_pareto_fronts.py")
    capsys.readouterr()
    kw = dict(toy=QuadraticToy(scale_ratio=10.0), start=(0.0, 2.0), steps=150, lr=0.02)
    assert check_mgda_endpoint(sol.min_norm_weights, "c1", **kw)
    assert "prediction 'c1' was right" in capsys.readouterr().out
    assert check_mgda_endpoint(sol.min_norm_weights, "c2", **kw)  # a wrong guess is explained
    assert "prediction 'c2' was wrong" in capsys.readouterr().out

    def unclipped(G):  # the stationary point without the simplex constraint
        w = (G[1, 1] - G[0, 1]) / (G[0, 0] + G[1, 1] - 2 * G[0, 1])
        return [w, 1 - w]

    def equal(G):
        return [0.5, 0.5]

    def skeleton(G):
        raise NotImplementedError

    for wrong in (unclipped, equal):
        assert not check_mgda_endpoint(wrong, "c1", **kw)
        assert "clip w to [0, 1]" in capsys.readouterr().out
    assert not check_mgda_endpoint(skeleton, None, **kw)
    assert "not answered yet" in capsys.readouterr().out
    assert not check_mgda_endpoint(None, None, **kw)
    assert np.isfinite(sol.min_norm_weights(np.eye(2))).all()


@pytest.mark.interpret
def test_weighted_sum_kernel_exercise(capsys: pytest.CaptureFixture[str]) -> None:
    import triton
    import triton.language as tl

    from mbviz.course import check_weighted_sum_kernel

    sol = _load_solution("06_inside_the_triton_kernel.py")
    capsys.readouterr()
    assert check_weighted_sum_kernel(sol.my_weighted_sum)

    @triton.jit
    def first_task_only(g_ptr, w_ptr, out_ptr, T, N, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < N
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(out_ptr + offs, (tl.load(w_ptr) * g).to(out_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def skeleton(g_ptr, w_ptr, out_ptr, T, N, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=offs < N)

    def launcher(kernel, block=128):
        def run(g, w):
            out = torch.empty(g.shape[1], dtype=g.dtype)
            grid = (triton.cdiv(g.shape[1], block),)
            kernel[grid](g.contiguous(), w, out, g.shape[0], g.shape[1], BLOCK=block)
            return out

        return run

    assert not check_weighted_sum_kernel(launcher(first_task_only))
    assert "Loop over the T tasks" in capsys.readouterr().out
    assert not check_weighted_sum_kernel(launcher(skeleton))
    assert "not answered yet" in capsys.readouterr().out
    assert not check_weighted_sum_kernel(lambda g, w: (w[:, None] * g).sum(0).double())
    assert "g's dtype" in capsys.readouterr().out


@pytest.mark.parametrize(("wins", "losses"), [(10, 0), (9, 1), (7, 2), (5, 5), (0, 3)])
def test_sign_test_check_agrees_with_scipy(
    wins: int, losses: int, capsys: pytest.CaptureFixture[str]
) -> None:
    from scipy.stats import binomtest

    from mbviz.course import check_sign_test

    diffs = [0.5] * wins + [-0.25] * losses + [0.0, float("nan")]  # ties and gaps dropped
    p = binomtest(wins, wins + losses).pvalue
    assert check_sign_test(p, differences=diffs)
    assert not check_sign_test(p / 2, differences=diffs)  # the one-sided value
    assert not check_sign_test(None, differences=diffs)
    assert "sign-test" in capsys.readouterr().out
