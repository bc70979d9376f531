"""``Balancer(fast_paths=False)`` always takes the general tensor path, and
``Balancer.combine`` is the fork's backward on given gradients: the public switch and
entry point that benchmarks measure the paths side by side with."""

from __future__ import annotations

from unittest import mock

import pytest
import torch

import mbkernels as mbk
from mbkernels.rules import MultiBalanceRule

T = 3


def _grads(seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [(i + 1) * torch.randn(16, 8, generator=gen) for i in range(T)]


def test_without_fast_paths_the_rule_runs_as_tensors_with_the_same_result() -> None:
    fast, general = mbk.MultiBalance(T), mbk.MultiBalance(T, fast_paths=False)
    with mock.patch.object(
        MultiBalanceRule, "host_weights", autospec=True, side_effect=MultiBalanceRule.host_weights
    ) as spy:
        for seed in range(3):
            a, b = fast.combine(_grads(seed)), general.combine(_grads(seed))
            assert a is not None and b is not None
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert spy.call_count == 3  # the fast balancer only
        for name, value in fast.state_dict().items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(value, general.state_dict()[name], rtol=0, atol=0)
        general.fast_paths = True  # settable: this one takes the host path from now on
        general.combine(_grads(3))
        assert spy.call_count == 4


def test_combine_is_what_the_fork_sends_back() -> None:
    gs = _grads(0)
    via_fork, direct = mbk.MultiBalance(T), mbk.MultiBalance(T)
    z = torch.zeros(16, 8, requires_grad=True)
    sum((z_t * g).sum() for z_t, g in zip(via_fork(z), gs)).backward()
    out = direct.combine(gs)
    assert z.grad is not None and out is not None
    torch.testing.assert_close(z.grad, out, rtol=0, atol=0)
    assert int(direct.step) == int(via_fork.step) == 1


def test_fast_paths_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="fast_paths must be True or False, got 1"):
        mbk.MultiBalance(T, fast_paths=1)  # type: ignore[arg-type]
    bal = mbk.MultiBalance(T)
    with pytest.raises(ValueError, match="fast_paths must be True or False"):
        bal.fast_paths = "no"  # type: ignore[assignment]
    assert bal.fast_paths is True
