"""Hypothesis fuzzing: shapes, dtypes, magnitudes 1e-30..1e30, T up to 32.

Contract: with finite inputs the gradient and weights are finite and match a float64
reference (when the exact gradient fits the dtype; otherwise inf, never NaN); with
non-finite inputs the result is either a clear error (``"raise"``) or finite weights and
an untouched state. Never a silent NaN.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mbkernels as mbk

from .helpers import multibalance_reference

FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

#: (smallest, largest) decimal exponent of the base magnitude per dtype, within [-30, 30]
#: and leaving room for the per-task spread and the weights inside the dtype's range.
EXPONENTS = {
    torch.float64: (-30, 30),
    torch.float32: (-30, 30),
    torch.bfloat16: (-30, 30),
    torch.float16: (-3, 2),
}
#: Normwise tolerance of the combined gradient, relative to sum_t |w_t g_t|. The applied
#: weights are float32 (the ``weights`` buffer), which bounds float64's accuracy too.
TOL = {torch.float64: 1e-6, torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}


@st.composite
def problems(draw):
    dtype = draw(st.sampled_from(list(EXPONENTS)))
    lo, hi = EXPONENTS[dtype]
    num_tasks = draw(st.integers(1, 32))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=3)))
    base = draw(st.integers(lo, hi))
    spread = draw(st.lists(st.integers(-2, 2), min_size=num_tasks, max_size=num_tasks))
    zero = draw(st.lists(st.booleans(), min_size=num_tasks, max_size=num_tasks))
    config = {
        "beta": draw(st.sampled_from([0.0, 0.5, 0.9, 0.99])),
        "relax": draw(st.sampled_from([0.0, 0.3, 0.7, 1.0])),
        "reference": draw(st.sampled_from(["target", "mean", "max"])),
        "target": draw(st.integers(0, num_tasks - 1)),
    }
    policy = draw(st.sampled_from(list(mbk.NONFINITE_POLICIES)))
    seed = draw(st.integers(0, 2**31 - 1))
    return dtype, shape, base, spread, zero, config, policy, seed


@FUZZ
@given(problems())
def test_fork_output_is_finite_and_matches_float64(problem) -> None:
    dtype, shape, base, spread, zero, config, policy, seed = problem
    gen = torch.Generator().manual_seed(seed)
    num_tasks = len(spread)
    bal = mbk.MultiBalance(num_tasks, nonfinite=policy, **config)
    ema = torch.zeros(num_tasks, dtype=torch.float64)
    for step in (1, 2):
        grads = [
            (torch.randn(shape, generator=gen, dtype=torch.float64) * 10.0 ** (base + s)).to(dtype)
            * (0 if z and step == 2 else 1)  # some tasks have no gradient on step 2
            for s, z in zip(spread, zero)
        ]
        assert all(torch.isfinite(g).all() for g in grads)
        z = torch.zeros(shape, dtype=dtype, requires_grad=True)
        sum((o * g).sum() for o, g in zip(bal(z), grads)).backward()
        out = z.grad
        g64 = [g.double() for g in grads]
        expect, ema, w = multibalance_reference(g64, ema, step, **config)
        assert out is not None and out.dtype == dtype and not out.isnan().any()
        if expect.abs().max() > torch.finfo(dtype).max / 2:  # the exact result overflows dtype:
            return  # inf, as in plain training (a GradScaler backs off); never NaN
        assert torch.isfinite(out).all()
        assert torch.isfinite(bal.weights).all() and bool(bal.stats.finite)
        torch.testing.assert_close(bal.weights.double(), w, rtol=1e-5, atol=0)
        scale = sum(w_t.abs() * g.abs() for w_t, g in zip(w, g64)).max()
        err = (out.double() - expect).abs().max()
        info = torch.finfo(dtype)
        subnormal_step = info.smallest_normal * info.eps  # float resolution near 0
        assert err <= TOL[dtype] * scale + (num_tasks + 1) * subnormal_step, (err, scale)


GRAM_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e30, max_value=1e30),
    st.sampled_from([0.0, 1e-30, -1e-30, 1e30, float("inf"), -float("inf"), float("nan")]),
)


@FUZZ
@given(
    num_tasks=st.integers(1, 32),
    data=st.data(),
    policy=st.sampled_from(list(mbk.NONFINITE_POLICIES)),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_step_weights_on_arbitrary_matrices_never_returns_nan(
    num_tasks: int, data, policy: str, dtype: torch.dtype
) -> None:
    """Any [T, T] matrix, Gram or not, finite or not: finite weights, or a clear error."""
    values = data.draw(st.lists(GRAM_VALUES, min_size=num_tasks**2, max_size=num_tasks**2))
    gram = torch.tensor(values, dtype=torch.float64).reshape(num_tasks, num_tasks).to(dtype)
    bal = mbk.MultiBalance(num_tasks, nonfinite=policy, warn_after_refused=None)
    before = {k: v.clone() for k, v in bal.state_dict().items() if isinstance(v, torch.Tensor)}
    before.pop("refused_streak")  # a refused step counts itself there
    try:
        weights = bal.step_weights(gram)
    except FloatingPointError as err:
        assert policy == "raise" and "the balancer state was not changed" in str(err)
        after = bal.state_dict()
        assert all(torch.equal(v, after[k]) for k, v in before.items())
        return
    assert torch.isfinite(weights).all() and torch.isfinite(bal.ema).all()
    if not bool(bal.stats.finite):  # a refused step changes nothing
        after = bal.state_dict()
        assert all(torch.equal(v, after[k]) for k, v in before.items())


@FUZZ
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    num_tasks=st.integers(1, 8),
    wrong=st.integers(1, 9),
)
def test_step_weights_rejects_wrong_shapes(shape, num_tasks: int, wrong: int) -> None:
    bal = mbk.MultiBalance(num_tasks)
    bad = torch.ones(*shape)
    if tuple(bad.shape) == (num_tasks, num_tasks):
        bad = torch.ones(num_tasks, wrong + num_tasks)
    with pytest.raises(ValueError, match=rf"gram must be a \[{num_tasks}, {num_tasks}\] tensor"):
        bal.step_weights(bad)
    assert int(bal.step) == 0
