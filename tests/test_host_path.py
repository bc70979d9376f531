"""The CPU host path of the fork's backward (mbkernels._host) is the general tensor
path, bit for bit: gradients, state, weights and statistics, step after step."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import mbkernels as mbk


def _step(bal: mbk.Balancer, gs: list[torch.Tensor]) -> torch.Tensor:
    z = torch.zeros(gs[0].shape, dtype=gs[0].dtype, requires_grad=True)
    sum((z_t * g).sum() for z_t, g in zip(bal(z), gs)).backward()
    assert z.grad is not None
    return z.grad


def _general(bal: mbk.Balancer) -> mbk.Balancer:
    bal._host_rule = False
    return bal


def _same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


def _assert_identical(host: mbk.Balancer, general: mbk.Balancer) -> None:
    for (name, a), (_, b) in zip(host.state_dict().items(), general.state_dict().items()):
        if isinstance(a, torch.Tensor):
            _same(a, b)
        else:
            assert a == b, name
    sa, sb = host.stats, general.stats
    assert sa is not None and sb is not None
    for field in ("gram", "norms", "weights", "step", "finite", "refused_streak"):
        _same(getattr(sa, field), getattr(sb, field))
    assert sa.state.keys() == sb.state.keys()
    for key in sa.state:
        _same(sa.state[key], sb.state[key])


def _grads(gen: torch.Generator, t: int, shape: tuple[int, ...], dtype=torch.float32):
    scales = torch.logspace(-3, 3, t, dtype=torch.float64)
    return [(torch.randn(shape, generator=gen, dtype=torch.float64) * s).to(dtype) for s in scales]


@pytest.mark.parametrize("num_tasks", [1, 2, 3, 4, 5, 8, 9])
@pytest.mark.parametrize("reference", ["target", "mean", "max"])
@pytest.mark.parametrize("bias_correction", [True, False])
def test_multibalance_host_path_is_the_general_path_bit_for_bit(
    num_tasks: int, reference: str, bias_correction: bool
) -> None:
    kw = {"beta": 0.5, "relax": 0.7, "reference": reference, "target": num_tasks - 1}
    host = mbk.MultiBalance(num_tasks, bias_correction=bias_correction, **kw)
    general = _general(mbk.MultiBalance(num_tasks, bias_correction=bias_correction, **kw))
    gen = torch.Generator().manual_seed(num_tasks)
    calls = []
    real = host.rule.host_weights
    host.rule.host_weights = lambda *a: calls.append(1) or real(*a)  # type: ignore[method-assign]
    # beta = 0.5: the bias correction is exactly 1 after 61 steps, both ways
    for _ in range(70):
        gs = _grads(gen, num_tasks, (16, 8))
        _same(_step(host, gs), _step(general, gs))
        _assert_identical(host, general)
    assert len(calls) == 70


@pytest.mark.parametrize(
    ("shape", "dtype", "full_gram"),
    [
        ((64, 300), torch.float32, False),  # above NORM_ROW: sq_norms_torch's row pass
        ((16, 8), torch.float64, False),
        ((16, 8), torch.bfloat16, False),
        ((16, 8), torch.float16, False),
        ((16, 8), torch.float32, True),  # the Gram matrix for the statistics
    ],
)
def test_host_path_other_sizes_dtypes_and_full_gram(shape, dtype, full_gram: bool) -> None:
    host = mbk.MultiBalance(4, full_gram=full_gram)
    general = _general(mbk.MultiBalance(4, full_gram=full_gram))
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        gs = _grads(gen, 4, shape, dtype)
        _same(_step(host, gs), _step(general, gs))
        _assert_identical(host, general)


def test_equal_rule_host_path() -> None:
    host = mbk.Balancer(mbk.Equal(3))
    general = _general(mbk.Balancer(mbk.Equal(3)))
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        gs = _grads(gen, 3, (16, 8))
        _same(_step(host, gs), _step(general, gs))
        _assert_identical(host, general)


@pytest.mark.parametrize(
    "value",
    [1e-30, 1e25, float("inf"), float("nan")],  # underflow, overflow (float64 redo), refused
)
@pytest.mark.parametrize("policy", ["skip_update", "raise"])
def test_steps_the_host_path_hands_to_the_general_path(value: float, policy: str) -> None:
    host = mbk.MultiBalance(3, nonfinite=policy)
    general = _general(mbk.MultiBalance(3, nonfinite=policy))
    gen = torch.Generator().manual_seed(0)
    gs = _grads(gen, 3, (16, 8))
    _step(host, gs), _step(general, gs)
    bad = [gs[0], torch.full_like(gs[1], value), gs[2]]
    if policy == "raise" and not math.isfinite(value):
        for bal in (host, general):
            with pytest.raises(mbk.NonFiniteGradientError):
                _step(bal, bad)
        _assert_identical(host, general)
        return
    _same(_step(host, bad), _step(general, bad))
    _assert_identical(host, general)
    _same(_step(host, gs), _step(general, gs))  # and back on the host path
    _assert_identical(host, general)


def test_a_subclass_overriding_weights_runs_its_own_weights() -> None:
    class Halved(mbk.MultiBalanceRule):
        def weights(self, gram, state, step):  # type: ignore[no-untyped-def]
            w, new = super().weights(gram, state, step)
            return w / 2, new

    bal = mbk.Balancer(Halved(2, relax=0.0))
    gs = [torch.ones(4, 2), torch.ones(4, 2)]
    _same(_step(bal, gs), torch.ones(4, 2))  # (1/2 + 1/2) * 1


def test_state_dict_deepcopy_and_dtype_moves_after_host_steps() -> None:
    host = mbk.MultiBalance(3)
    general = _general(mbk.MultiBalance(3))
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        gs = _grads(gen, 3, (16, 8))
        _step(host, gs), _step(general, gs)
    twin = copy.deepcopy(host)  # its own buffers: its steps do not write into host's
    gs = _grads(gen, 3, (16, 8))
    _step(twin, gs)
    assert int(twin.step) == 4 and int(host.step) == 3
    host.double()  # new buffer objects (same dtypes): the host path follows them
    general.double()
    for _ in range(2):
        gs = _grads(gen, 3, (16, 8))
        _same(_step(host, gs), _step(general, gs))
    _assert_identical(host, general)
    fresh = mbk.MultiBalance(3)
    fresh.load_state_dict(host.state_dict())
    fresh_general = _general(mbk.MultiBalance(3))
    fresh_general.load_state_dict(general.state_dict())
    gs = _grads(gen, 3, (16, 8))
    _same(_step(fresh, gs), _step(fresh_general, gs))
    _assert_identical(fresh, fresh_general)


def test_host_pass_two_is_weighted_sum_torch_bit_for_bit() -> None:
    from mbkernels import _host
    from mbkernels.ops.torch_ops import weighted_sum_torch

    gen = torch.Generator().manual_seed(0)
    for t in (1, 2, 4, 7):
        for shape in ((3,), (256, 32), (17, 33), (5, 7, 9)):
            gs = [torch.randn(shape, generator=gen) for _ in range(t)]
            w = (torch.rand(t, generator=gen, dtype=torch.float64) * 10).tolist()
            _same(_host.pass2(gs, w), weighted_sum_torch(gs, torch.tensor(w)))
            dims = tuple(reversed(range(len(shape))))
            strided = [torch.randn(shape[::-1], generator=gen).permute(dims) for _ in range(t)]
            _same(_host.pass2(strided, w), weighted_sum_torch(strided, torch.tensor(w)))
    huge = [torch.ones(4), torch.ones(4)]  # weights beyond float32: the scaled path
    _same(_host.pass2(huge, [1e39, 1.0]), weighted_sum_torch(huge, torch.tensor([1e39, 1.0])))


@pytest.mark.parametrize("length", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17])
def test_float64_op_is_the_tensor_op_bit_for_bit(length: int) -> None:
    """The host rule's sqrt and pow run as torch ops on a reused float64 tensor: the same
    bits as the tensor rule's fresh tensors, on every length (vectorised body and scalar
    tail alike)."""
    from mbkernels import _host

    gen = torch.Generator().manual_seed(length)
    for _ in range(200):
        values = (torch.rand(length, generator=gen, dtype=torch.float64) * 1e6).tolist()
        expected = torch.tensor(values, dtype=torch.float64).sqrt().tolist()
        assert _host.float64_op(values, torch.Tensor.sqrt_) == expected
        counts = torch.randint(1, 500, (length,), generator=gen).tolist()
        powers = (0.9 ** torch.tensor(counts, dtype=torch.float64)).tolist()
        assert _host.float64_op(counts, lambda c: torch.pow(0.9, c, out=c)) == powers
    # the reused tensor does not leak one call's values into the next
    assert _host.float64_op([4.0] * length, torch.Tensor.sqrt_) == [2.0] * length


def test_host_path_float32_square_matches_the_tensor_path() -> None:
    """norms_small's squares (float32, through NumPy) are sq_norms_torch's, bit for bit."""
    from mbkernels import _host
    from mbkernels.ops.torch_ops import sq_norms_torch

    gen = torch.Generator().manual_seed(0)
    for t in (1, 3, 4, 9):
        for shape in ((37, 5), (1,), (8, 1023), (3, 7, 11)):
            gs = _grads(gen, t, shape)
            assert _host.norms_small(gs) == sq_norms_torch(gs).tolist()
    # strided gradients are left to the tensor path's pass 1 (its copy fixes the order)
    assert _host.norms_small([g.t() for g in _grads(gen, 3, (37, 5))]) is None
