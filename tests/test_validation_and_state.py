"""Bad arguments fail loudly and change nothing; state round-trips exactly."""

from __future__ import annotations

import copy
import io

import pytest
import torch

import mbkernels as mbk
from mbkernels.ops import resolve_backend

from .helpers import ToyMultiTask


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_tasks": 0}, r"num_tasks must be an integer in \[1, inf\)"),
        ({"num_tasks": 2.5}, r"num_tasks must be an integer"),
        ({"num_tasks": 3, "beta": 1.0}, r"beta must be in \[0, 1\)"),
        ({"num_tasks": 3, "beta": -0.1}, r"beta must be in \[0, 1\)"),
        ({"num_tasks": 3, "beta": float("nan")}, r"beta must be in \[0, 1\)"),
        ({"num_tasks": 3, "relax": 1.5}, r"relax must be in \[0, 1\]"),
        ({"num_tasks": 3, "relax": -0.01}, r"relax must be in \[0, 1\]"),
        ({"num_tasks": 3, "target": 3}, r"target must be an integer in \[0, 2\]"),
        ({"num_tasks": 3, "target": -1}, r"target must be an integer in \[0, 2\]"),
        (
            {"num_tasks": 3, "reference": "median"},
            r"reference must be one of 'target', 'mean', 'max'",
        ),
        ({"num_tasks": 3, "eps": 0.0}, r"eps must be in \(0, 1\]"),
        ({"num_tasks": 3, "backend": "cuda"}, r"backend must be one of 'auto', 'torch', 'triton'"),
    ],
)
def test_invalid_arguments_name_parameter_and_range(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        mbk.MultiBalance(**kwargs)


def test_non_float_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="z must have a floating-point dtype"):
        mbk.MultiBalance(2)(torch.ones(3, dtype=torch.int64))


def _train(model, bal, opt, batches):
    grads = []
    for x, y in batches:
        opt.zero_grad()
        sum(model.task_losses(bal(model.bottom(x)), y)).backward()
        opt.step()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    return grads


def test_state_dict_round_trip_continues_bit_identically() -> None:
    num_tasks = 4
    batches = [(torch.randn(8, 6), torch.randn(8, num_tasks)) for _ in range(6)]
    model = ToyMultiTask(num_tasks)
    bal = mbk.MultiBalance(num_tasks, beta=0.95, relax=0.5, reference="max")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    _train(model, bal, opt, batches[:3])

    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "bal": bal.state_dict(), "opt": opt.state_dict()}, buf)
    expected = _train(model, bal, opt, batches[3:])

    buf.seek(0)
    ckpt = torch.load(buf, weights_only=False)
    model2 = ToyMultiTask(num_tasks)
    model2.load_state_dict(ckpt["model"])
    bal2 = mbk.MultiBalance(num_tasks, beta=0.95, relax=0.5, reference="max")
    bal2.load_state_dict(ckpt["bal"])
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.01)
    opt2.load_state_dict(ckpt["opt"])
    assert int(bal2.step) == 3
    got = _train(model2, bal2, opt2, batches[3:])
    for a, b in zip(expected, got):
        assert torch.equal(a, b)
    assert torch.equal(bal.ema, bal2.ema) and torch.equal(bal.weights, bal2.weights)


def test_loading_state_for_other_num_tasks_raises_and_changes_nothing() -> None:
    bal3 = mbk.MultiBalance(3)
    z = torch.randn(4, 2, requires_grad=True)
    sum(o.sum() * (i + 1) for i, o in enumerate(bal3(z))).backward()
    before = copy.deepcopy(bal3.state_dict())
    sd5 = mbk.MultiBalance(5).state_dict()
    with pytest.raises(ValueError, match="num_tasks=5.*num_tasks=3"):
        bal3.load_state_dict(sd5)
    # without the config entry, the shapes still give it away
    sd5.pop("_extra_state")
    with pytest.raises(ValueError, match="different num_tasks"):
        bal3.load_state_dict(sd5)
    after = bal3.state_dict()
    for key, value in before.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, after[key]), key


def test_state_lives_where_the_gradients_are() -> None:
    bal = mbk.MultiBalance(2)
    assert bal.ema.device.type == "cpu" and bal.ema.dtype == torch.float32
    assert set(bal.state_dict()) == {
        "ema",
        "count",
        "step",
        "weights",
        "refused_streak",
        "_extra_state",
    }


def test_backend_resolution() -> None:
    cpu = torch.device("cpu")
    assert resolve_backend("auto", cpu, torch.float32) == "torch"
    assert resolve_backend("torch", cpu, torch.float16) == "torch"
    # conftest turns the interpreter on, so CPU tensors may use Triton explicitly...
    assert resolve_backend("triton", cpu, torch.bfloat16) == "triton"
    # ...but float64 is not a Triton dtype here
    with pytest.raises(RuntimeError, match="float16, bfloat16 and float32"):
        resolve_backend("triton", cpu, torch.float64)


def test_backend_triton_without_interpreter_on_cpu_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        resolve_backend("triton", torch.device("cpu"), torch.float32)


def test_backend_triton_without_package_is_a_clear_error(monkeypatch) -> None:
    from mbkernels.ops import backend

    monkeypatch.setattr(backend, "triton_available", lambda: False)
    with pytest.raises(RuntimeError, match="'triton' package is not installed"):
        resolve_backend("triton", torch.device("cpu"), torch.float32)


def test_stats_are_a_record_independent_of_the_returned_weights_and_later_steps() -> None:
    """The balancer hands its fresh tensors to the stats without copies where it can;
    what it returns, and what it updates in place later, must not reach a recorded stats."""
    bal = mbk.Balancer(mbk.MultiBalanceRule(3))
    w = bal.step_weights(torch.diag(torch.tensor([4.0, 9.0, 1.0])))
    first = bal.stats
    assert first is not None
    recorded = {k: v.clone() for k, v in first.state.items()}
    weights, step = first.weights.clone(), first.step.clone()
    w.mul_(100.0)  # the caller's copy
    bal.step_weights(torch.diag(torch.tensor([1.0, 1.0, 1.0])))  # buffers updated in place
    bal.reset()
    torch.testing.assert_close(first.weights, weights)
    torch.testing.assert_close(first.step, step)
    for k, v in first.state.items():
        torch.testing.assert_close(v, recorded[k])


def test_multibalance_rule_accepts_a_python_int_step() -> None:
    rule = mbk.MultiBalanceRule(3)
    gram = torch.diag(torch.tensor([4.0, 9.0, 1.0], dtype=torch.float64))
    for step in (1, 5):
        w_int, s_int = rule.weights(gram, rule.init_state(), step)  # type: ignore[arg-type]
        w_t, s_t = rule.weights(gram, rule.init_state(), torch.tensor(step))
        torch.testing.assert_close(w_int, w_t)
        torch.testing.assert_close(s_int["ema"], s_t["ema"])


def test_numpy_scalars_are_valid_hyperparameters_and_stored_as_python_numbers() -> None:
    np = pytest.importorskip("numpy")
    bal = mbk.MultiBalance(
        np.int64(3), beta=np.float32(0.5), relax=np.float64(0.25), target=np.int32(2)
    )
    config = bal.rule.config()
    assert config["num_tasks"] == 3 and config["target"] == 2
    assert config["beta"] == 0.5 and config["relax"] == 0.25
    assert all(type(config[k]) is int for k in ("num_tasks", "target"))
    assert all(type(config[k]) is float for k in ("beta", "relax", "eps"))
    assert mbk.PCGrad(np.int16(4), seed=np.uint8(7)).seed == 7
    # booleans are not numbers here, NumPy's included
    for bad in (True, np.bool_(True)):
        with pytest.raises(ValueError, match=r"num_tasks must be an integer in \[1, inf\)"):
            mbk.MultiBalance(bad)
    with pytest.raises(ValueError, match=r"beta must be a number in \[0, 1\)"):
        mbk.MultiBalance(3, beta=np.bool_(False))
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\)"):
        mbk.MultiBalance(3, beta=np.float32("nan"))
