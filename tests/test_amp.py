"""Mixed precision: GradScaler-independent weights, overflowing steps skipped, autocast runs."""

from __future__ import annotations

import pytest
import torch

import mbkernels as mbk

from .helpers import ToyMultiTask

T = 3


def _batches(n: int, b: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.randn(b, 6), torch.randn(b, T)) for _ in range(n)]


def _run_scaled(init_scale: float | None, batches, inject_at: int | None = None):
    """Train with a GradScaler of ``init_scale`` (None: no scaler); record per step the
    balancer's weights, EMA, step count, the scaler's scale and the parameters."""
    torch.manual_seed(0)
    model = ToyMultiTask(T)
    scaler = None
    if init_scale is not None:
        scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=10**6)
    bal = mbk.MultiBalance(T, beta=0.9, relax=0.7, reference="target", grad_scaler=scaler)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    record = []
    for i, (x, y) in enumerate(batches):
        opt.zero_grad()
        losses = model.task_losses(bal(model.bottom(x)), y)
        if i == inject_at:  # an overflow in task 1's gradient (what fp16 produces)
            losses[1] = losses[1] * torch.tensor(float("inf"))
        loss = sum(losses)
        if scaler is None:
            loss.backward()
            opt.step()
            scale = 1.0
        else:
            scaler.scale(loss).backward()
            scale = scaler.get_scale()
            scaler.step(opt)
            scaler.update()
        record.append(
            {
                "weights": bal.weights.clone(),
                "ema": bal.ema.clone(),
                "step": int(bal.step),
                "scale": scale,
                "params": torch.cat([p.detach().flatten() for p in model.parameters()]),
            }
        )
    return record


def test_weights_do_not_depend_on_the_loss_scale() -> None:
    batches = _batches(6)
    runs = [_run_scaled(s, batches) for s in (2.0**16, 2.0**3, None)]
    for a, b, c in zip(*runs):
        # Power-of-two scales: unscaling the Gram matrix by scale**2 is exact.
        assert torch.equal(a["weights"], b["weights"]) and torch.equal(a["weights"], c["weights"])
        assert torch.equal(a["ema"], b["ema"]) and torch.equal(a["ema"], c["ema"])
        assert torch.equal(a["params"], b["params"]) and torch.equal(a["params"], c["params"])
    assert runs[0][-1]["step"] == 6


def test_overflow_step_is_skipped_by_the_scaler_and_the_balancer() -> None:
    batches = _batches(6)
    rec = _run_scaled(2.0**16, batches, inject_at=3)
    before, during, after = rec[2], rec[3], rec[4]
    assert torch.equal(during["ema"], before["ema"]) and during["step"] == before["step"] == 3
    assert torch.equal(during["weights"], before["weights"])
    assert torch.equal(during["params"], before["params"])  # the scaler skipped opt.step()
    assert after["scale"] == before["scale"] / 2  # and backed off
    assert after["step"] == 4 and not torch.equal(after["ema"], before["ema"])
    # Afterwards the run equals one that never saw the broken batch (same later batches).
    clean = _run_scaled(2.0**16, batches[:3] + batches[4:])
    assert torch.equal(rec[-1]["ema"], clean[-1]["ema"])
    assert torch.equal(rec[-1]["weights"], clean[-1]["weights"])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_training_runs_and_tracks_float32(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 6)
    y = torch.tanh(x @ torch.randn(6, T))  # learnable targets
    batches = [(x, y)] * 30

    def train(amp: bool):
        torch.manual_seed(1)
        model = ToyMultiTask(T, d=16)
        scaler = torch.amp.GradScaler("cpu", enabled=amp and dtype == torch.float16)
        bal = mbk.MultiBalance(T, beta=0.9, relax=0.7, grad_scaler=scaler)
        opt = torch.optim.SGD(model.parameters(), lr=3e-2)
        losses, grad_dtypes = [], set()
        for x, y in batches:
            opt.zero_grad()
            with torch.autocast("cpu", dtype=dtype, enabled=amp):
                z = model.bottom(x)
                z.register_hook(lambda g: grad_dtypes.add(g.dtype))
                loss = sum(model.task_losses(bal(z), y))
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            losses.append(float(loss.detach()))
        return losses, bal.weights.clone(), grad_dtypes

    losses, weights, grad_dtypes = train(amp=True)
    ref_losses, ref_weights, _ = train(amp=False)
    assert grad_dtypes == {dtype}  # the balancer really ran on low-precision gradients
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.8 * losses[0]
    torch.testing.assert_close(weights, ref_weights, rtol=5e-2, atol=0)
    assert abs(losses[-1] - ref_losses[-1]) < 0.05 * ref_losses[0]


def test_grad_scaler_argument_is_validated() -> None:
    with pytest.raises(ValueError, match="grad_scaler must be None or a torch.amp.GradScaler"):
        mbk.MultiBalance(T, grad_scaler=2.0**16)
