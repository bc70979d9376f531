"""Every rule through the fork: the gradient reaching Z equals per-task autograd + the
rule's float64 reference, on the PyTorch path and through the Triton interpreter; and
the rule sees only the Gram matrix."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import mbkernels as mbk
from mbkernels import ops

from . import _rules_reference as ref
from .conftest import requires_triton
from .helpers import ToyMultiTask

RULES: dict[str, dict] = {
    "equal": {},
    "linear": {"preferences": [0.5, 2.0, 1.0]},
    "multibalance": {"beta": 0.8, "relax": 0.6, "reference": "max"},
    "max_norm": {"beta": 0.8},
    "mgda_ub": {},
    "pcgrad": {"seed": 11},
    "imtl_g": {},
    "cagrad": {"c": 0.5},
    "aligned_mtl": {"preferences": [1.0, 1.0, 2.0]},
    "nash_mtl": {"max_norm": 2.0},
    "fairgrad": {"alpha": 2.0},
    "gradvac": {"beta": 0.3, "seed": 5},
    "db_mtl": {"beta": 0.8, "sigma": 0.5},
}
T = 3


def reference_update(name: str, m: np.ndarray, state: np.ndarray, step: int):
    """(d, new_state) from the float64 per-task gradients m (T x N)."""
    kw = RULES[name]
    if name == "equal":
        return ref.equal(m), state
    if name == "linear":
        return ref.linear(m, kw["preferences"]), state
    if name == "multibalance":
        return ref.multibalance(m, state, step, **kw)
    if name == "max_norm":
        return ref.max_norm(m, state, step, **kw)
    if name == "mgda_ub":
        return ref.mgda(m), state
    if name == "pcgrad":
        return ref.pcgrad(m, seed=kw["seed"], step=step), state
    if name == "imtl_g":
        return ref.imtl_g(m), state
    if name == "cagrad":
        return ref.cagrad(m, c=kw["c"]), state
    if name == "aligned_mtl":
        return ref.aligned_mtl(m, kw["preferences"]), state
    if name == "nash_mtl":
        return ref.nash_mtl(m, **kw), state
    if name == "fairgrad":
        return ref.fairgrad(m, **kw), state
    if name == "gradvac":
        if np.ndim(state) == 1:
            state = np.zeros((T, T))
        return ref.gradvac(m, state, step=step, **kw)
    if name == "db_mtl":
        return ref.db_mtl(m, state, step, **kw)
    raise AssertionError(name)


def _per_task_grads64(model64: ToyMultiTask, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    z64 = model64.bottom(x.double()).detach().requires_grad_()
    losses = model64.task_losses([z64] * T, y.double())
    grads = [torch.autograd.grad(loss, z64, retain_graph=True)[0] for loss in losses]
    return torch.stack([g.reshape(-1) for g in grads]).numpy()


@pytest.mark.parametrize("name", list(RULES))
def test_rule_through_fork_matches_per_task_autograd_reference(name: str) -> None:
    model = ToyMultiTask(T)
    model64 = copy.deepcopy(model).double()
    bal = mbk.Balancer(mbk.make_rule(name, T, **RULES[name]), backend="torch")
    state = np.zeros(T)
    for step in range(1, 4):
        x, y = torch.randn(7, 6), torch.randn(7, T)
        z = model.bottom(x)
        z.retain_grad()
        sum(model.task_losses(bal(z), y)).backward()
        m = _per_task_grads64(model64, x, y)
        d, state = reference_update(name, m, state, step)
        scale = np.abs(m).sum(0).max()
        np.testing.assert_allclose(
            z.grad.double().reshape(-1).numpy(), d, rtol=2e-4, atol=2e-5 * scale
        )
        # the weights in stats are the ones applied
        np.testing.assert_allclose(
            bal.stats.weights.double().numpy() @ m,
            z.grad.double().reshape(-1).numpy(),
            rtol=1e-4,
            atol=1e-5 * scale,
        )
        assert int(bal.stats.step) == step


def test_equal_through_fork_is_the_plain_sum_gradient_for_all_parameters() -> None:
    model = ToyMultiTask(4)
    x, y = torch.randn(9, 6), torch.randn(9, 4)
    sum(model.task_losses(mbk.Balancer(mbk.make_rule("equal", 4))(model.bottom(x)), y)).backward()
    balanced = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    z = model.bottom(x)
    sum(model.task_losses([z] * 4, y)).backward()
    for a, b in zip(balanced, (p.grad for p in model.parameters())):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("full_gram", [False, True])
@pytest.mark.parametrize("name", list(RULES))
def test_gram_only_rules_never_touch_the_gradients(name: str, full_gram: bool, monkeypatch) -> None:
    """One pass-1 call (Gram matrix, or only the norms for rules that read nothing
    else) and one weighted-sum pass over the T gradients per backward; the rule
    itself receives only the [T, T] Gram matrix."""
    calls: list[str] = []
    real_gram, real_norms, real_sum = ops.gram, ops.sq_norms, ops.weighted_sum

    def gram(grads, backend="auto"):
        calls.append("gram")
        return real_gram(grads, backend)

    def sq_norms(grads, backend="auto"):
        calls.append("sq_norms")
        return real_norms(grads, backend)

    def weighted_sum(grads, weights, backend="auto"):
        calls.append("sum")
        return real_sum(grads, weights, backend)

    monkeypatch.setattr(ops, "gram", gram)
    monkeypatch.setattr(ops, "sq_norms", sq_norms)
    monkeypatch.setattr(ops, "weighted_sum", weighted_sum)
    rule = mbk.make_rule(name, T, **RULES[name])
    seen: list[tuple] = []
    off_diagonal: list[float] = []
    real_weights = rule.weights

    def spy(gram_matrix, state, step):
        seen.append((tuple(gram_matrix.shape), *(tuple(v.shape) for v in state.values())))
        off_diagonal.append(float((gram_matrix - gram_matrix.diag().diag()).abs().sum()))
        return real_weights(gram_matrix, state, step)

    monkeypatch.setattr(rule, "weights", spy)
    model = ToyMultiTask(T)
    bal = mbk.Balancer(rule, full_gram=full_gram)
    for _ in range(2):
        sum(model.task_losses(bal(model.bottom(torch.randn(5, 6))), torch.randn(5, T))).backward()
    full = full_gram or rule.uses_cross_terms
    assert calls == ["gram" if full else "sq_norms", "sum"] * 2
    # state: per task ([T]) or per pair of tasks ([T, T], GradVac's cosine targets)
    small = ((T,), (T, T))
    assert all(shape[0] == (T, T) and all(s in small for s in shape[1:]) for shape in seen)
    assert len(seen) == 2
    # Norms only: the rule sees zeros off the diagonal, the stats say "not computed".
    assert all((v > 0) == full for v in off_diagonal)
    off = ~torch.eye(T, dtype=torch.bool)
    assert bal.stats is not None
    assert bool(bal.stats.gram[off].isnan().all()) != full
    assert bool(bal.stats.gram.diagonal().isfinite().all())


@pytest.mark.parametrize("name", list(RULES))
def test_rule_state_round_trips_through_balancer(name: str) -> None:
    model = ToyMultiTask(T)
    batches = [(torch.randn(6, 6), torch.randn(6, T)) for _ in range(4)]
    bal = mbk.Balancer(mbk.make_rule(name, T, **RULES[name]))

    def run(b, data):
        out = []
        for x, y in data:
            z = model.bottom(x)
            z.retain_grad()
            sum(model.task_losses(b(z), y)).backward()
            out.append(z.grad.clone())
        return out

    run(bal, batches[:2])
    sd = copy.deepcopy(bal.state_dict())
    expected = run(bal, batches[2:])
    bal2 = mbk.Balancer(mbk.make_rule(name, T, **RULES[name]))
    bal2.load_state_dict(sd)
    for a, b in zip(expected, run(bal2, batches[2:])):
        assert torch.equal(a, b)


@requires_triton
@pytest.mark.interpret
@pytest.mark.parametrize("name", list(RULES))
def test_rule_through_fork_on_triton_interpreter(name: str) -> None:
    model = ToyMultiTask(T)
    bal_triton = mbk.Balancer(mbk.make_rule(name, T, **RULES[name]), backend="triton")
    bal_torch = mbk.Balancer(mbk.make_rule(name, T, **RULES[name]), backend="torch")
    for _ in range(2):
        x, y = torch.randn(5, 6), torch.randn(5, T)
        grads = []
        for bal in (bal_triton, bal_torch):
            z = model.bottom(x)
            z.retain_grad()
            sum(model.task_losses(bal(z), y)).backward()
            grads.append(z.grad)
        scale = grads[1].abs().max().item()
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5 * scale)
        torch.testing.assert_close(
            bal_triton.stats.weights, bal_torch.stats.weights, rtol=1e-4, atol=1e-6
        )


@pytest.mark.parametrize("name", list(RULES))
def test_skip_task_balances_the_other_tasks_among_themselves(name: str) -> None:
    """With nonfinite="skip_task", a task with a NaN gradient gets weight 0 and the others
    get what the rule gives a problem without that task (PCGrad: the same projections,
    in an order drawn for T - 1 tasks, so only the invariants are checked)."""
    dropped = 1
    m = torch.randn(T, 6, dtype=torch.float64) * torch.tensor([[1.0], [3.0], [0.5]])
    gram = m @ m.T
    gram[dropped, :] = torch.nan
    gram[:, dropped] = torch.nan
    bal = mbk.Balancer(mbk.make_rule(name, T, **RULES[name]), nonfinite="skip_task")
    w = bal.step_weights(gram)
    assert w[dropped] == 0 and torch.isfinite(w).all() and int(bal.step) == 1
    keep = [t for t in range(T) if t != dropped]
    kwargs = dict(RULES[name])
    if "preferences" in kwargs:
        kwargs["preferences"] = [kwargs["preferences"][t] for t in keep]
    sub = m[keep] @ m[keep].T
    expect, _ = (r := mbk.make_rule(name, T - 1, **kwargs)).weights(
        sub, r.init_state(), torch.tensor(1)
    )
    if name == "pcgrad":
        assert (w[keep] >= 1 - 1e-6).all()  # conflicts only ever add weight to others
        return
    torch.testing.assert_close(w[keep].double(), expect, rtol=1e-5, atol=1e-7)
