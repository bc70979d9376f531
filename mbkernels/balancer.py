"""``Balancer``: a module that balances task gradients on a shared representation.

Usage::

    bal = Balancer(MultiBalanceRule(3))
    z1, z2, z3 = bal(z)             # forward: views of z, no copy
    (l1 + l2 + l3).backward()       # z receives sum_t w_t dL_t/dz

Per backward, through :mod:`mbkernels.ops`:

1. pass 1: the ``[T, T]`` Gram matrix of the task gradients (float32
   accumulation; recomputed in float64 only if that left float32's range,
   :mod:`mbkernels.numerics`); float64 from here on. For a rule that reads only
   the norms (``rule.uses_cross_terms is False``, e.g. MultiBalance) the PyTorch
   path computes only the diagonal unless ``full_gram=True``;
2. multi-process: one all-reduce makes it global (:mod:`mbkernels.distributed`),
   or a custom ``gram_reduce``;
3. mixed precision: divided by the GradScaler's ``scale**2`` (:mod:`mbkernels.amp`);
4. the rule maps Gram + state to weights and new state, under the non-finite
   policy (:mod:`mbkernels.nonfinite`; with a GradScaler always ``"skip_update"``),
   on the gradients' device; nothing is written yet. A loss-aware weighting
   (:mod:`mbkernels.weightings`) reads the losses given to :meth:`Balancer.observe`
   too (its learned parameters get their gradients from autograd, through the term
   ``observe`` returns);
5. pass 2: ``sum_t w_t g_t`` in the gradients' dtype;
6. commit: the new state if the statistics are finite (else the old one), the
   count of steps refused in a row and :attr:`Balancer.stats`. Last, so that an
   error anywhere before leaves every state tensor as it was; the buffers move to
   the gradients' device here, and only here. A loss-aware weighting's learned
   parameters never move (the user's optimiser holds them): a step whose gradients
   are on another device than they are raises ``ValueError``.

Everything stays on the device. On the general path host reads (one boolean per
step) happen for the range check (``range_check=False`` removes it), and for the
``"skip_task"`` and ``"raise"`` policies. The default policy on the GPU device path
(:mod:`mbkernels._device`) reads nothing: its range check is decided on the device,
and the refused-step count is read from a non-blocking copy a step later. A meta or
fake-tensor pass computes nothing and changes nothing (it returns the plain sum).
The statistics keep their dtype under ``.half()``/``.to(dtype)`` (:meth:`_apply`).
"""

from __future__ import annotations

import itertools
import math
import operator
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from . import _device, _host, ops
from .amp import check_grad_scaler, current_scale, unscale_gram
from .distributed import active_group, all_reduce_gram, check_process_group
from .fork import fork
from .nonfinite import (
    NONFINITE_POLICIES,
    NonFiniteGradientError,
    NonFinitePolicy,
    RefusedStepsWarning,
    all_finite,
    nonfinite_tasks,
)
from .numerics import (
    _range_safe,
    gram_float64,
    range_safe_gram,
    range_safe_sq_norms,
    sq_norms_float64,
)
from .rules.base import Rule
from .stats import BalanceStats
from .validation import check_choice, check_int
from .weightings.base import LossWeighting

try:
    from torch._subclasses.fake_tensor import is_fake as _is_fake
except ImportError:  # pragma: no cover - private module; meta tensors are still detected

    def _is_fake(x: object) -> bool:  # type: ignore[misc]
        return False


GramReduce = Callable[[Tensor], Tensor]

# torch.compile: the fork runs eagerly (one graph break). Its backward is data-dependent
# Python (range check, non-finite policy, collectives, Triton launches) that Dynamo would
# otherwise try to trace into the autograd.Function and break on anyway.
_fork_eager = torch.compiler.disable(fork)


class Balancer(nn.Module):
    """Balance the per-task gradients of a shared representation with any :class:`Rule`.

    Args:
        rule: maps the Gram matrix of the task gradients to task weights.
        backend: ``"auto"`` (Triton on CUDA when available, else PyTorch),
            ``"torch"`` or ``"triton"``.
        gram_reduce: called on the local ``[T, T]`` Gram matrix before the
            weights are computed; returns the global one. When given, it
            replaces the built-in all-reduce of ``process_group``.
        process_group: ``"auto"`` (default): all-reduce the Gram matrix over the
            default group when torch.distributed is initialised with more than
            one rank; ``None``/``False``: never; or a ``ProcessGroup``.
        nonfinite: ``"skip_update"`` (default), ``"skip_task"`` or ``"raise"``;
            see :mod:`mbkernels.nonfinite`.
        grad_scaler: the ``torch.amp.GradScaler`` that scales the losses, so the
            weights do not depend on the loss scale (:mod:`mbkernels.amp`). While it is
            enabled, a non-finite task gradient skips the whole step (``"skip_update"``)
            whatever ``nonfinite`` says: an overflow is the scaler's to handle.
        range_check: recompute the Gram matrix in float64 when float32
            accumulation over- or underflowed (:mod:`mbkernels.numerics`).
        full_gram: compute the whole Gram matrix even when the rule reads only
            its diagonal, so that ``stats.gram``/``stats.cosine`` show the
            conflicts between tasks. Default ``False``: such rules get only the
            norms on the PyTorch path (T dot products instead of T(T+1)/2; at
            T = 8 about a tenth of pass 1's time on a CPU core), and the
            off-diagonal of ``stats.gram`` is NaN (not computed). The Triton
            path always computes the whole matrix (free on a GPU).
        warn_after_refused: warn (:class:`RefusedStepsWarning`, once per streak) when
            this many balancing steps in a row were refused (non-finite statistics, a
            dropped task under ``"skip_task"``); ``None`` never warns. Default 20.
        fast_paths: take a step on the CPU host path or the GPU device path when it
            qualifies (default ``True``). Both compute what the general tensor path
            does; ``False`` always takes the general path, for measuring the two side
            by side and for tests that compare them.

    State (``state_dict``): the rule's state tensors, ``step`` (int64), ``weights``
    (float64, the last weights applied) and ``refused_streak`` (int64, the number of
    steps refused in a row), plus the rule's configuration; for a loss-aware weighting
    also its learned parameters (``nn.Parameter`` entries of the balancer, e.g. UW's
    ``log_var``: give ``bal.parameters()`` to the optimiser).

    Loss-aware weightings (:mod:`mbkernels.weightings`): ``aux = bal.observe(losses)``
    before ``backward``, and back-propagate ``sum(losses) + aux``; FAMO's :meth:`update`
    after the optimiser step; DWA's :meth:`end_epoch` at the end of each epoch.
    """

    step: Tensor
    weights: Tensor
    refused_streak: Tensor

    def __init__(
        self,
        rule: Rule,
        *,
        backend: str = "auto",
        gram_reduce: GramReduce | None = None,
        process_group: Any = "auto",
        nonfinite: NonFinitePolicy | str = "skip_update",
        grad_scaler: torch.amp.GradScaler | None = None,
        range_check: bool = True,
        full_gram: bool = False,
        warn_after_refused: int | None = 20,
        fast_paths: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(rule, Rule):
            raise ValueError(f"rule must be a mbkernels.rules.Rule, got {type(rule).__name__}")
        if gram_reduce is not None and not callable(gram_reduce):
            raise ValueError(f"gram_reduce must be None or callable, got {gram_reduce!r}")
        if not isinstance(range_check, bool):
            raise ValueError(f"range_check must be True or False, got {range_check!r}")
        if not isinstance(full_gram, bool):
            raise ValueError(f"full_gram must be True or False, got {full_gram!r}")
        self.rule = rule
        self.num_tasks = rule.num_tasks
        self.backend = check_choice("backend", backend, ops.BACKENDS)
        self.gram_reduce = gram_reduce
        self.process_group = check_process_group(process_group)
        self.nonfinite = check_choice("nonfinite", nonfinite, NONFINITE_POLICIES)
        self.grad_scaler = check_grad_scaler(grad_scaler)
        self.range_check = range_check
        self.full_gram = full_gram
        self.warn_after_refused = (
            None
            if warn_after_refused is None
            else check_int("warn_after_refused", warn_after_refused, low=1)
        )
        self._state_names = tuple(rule.init_state())
        for name, value in rule.init_state().items():
            if name in _OWN_STATE:
                raise ValueError(f"rule state name {name!r} is reserved")
            self.register_buffer(name, value)
        self._loss_rule = isinstance(rule, LossWeighting)
        # a weighting with an update after the optimiser step (FAMO) learns nothing from a
        # refused step: the balancer remembers refusals for update()
        self._tracks_refusals = (
            isinstance(rule, LossWeighting)
            and type(rule).after_step is not LossWeighting.after_step
        )
        initial_params = rule.init_parameters() if isinstance(rule, LossWeighting) else {}
        self._param_names = tuple(initial_params)
        for name, value in initial_params.items():
            if name in _OWN_STATE or name in self._state_names:
                raise ValueError(f"rule parameter name {name!r} is reserved")
            self.register_parameter(name, nn.Parameter(value))
        # this step's losses (float64 [T], detached), from observe() until a step commits
        self._losses: Tensor | None = None
        # loss-aware weightings: whether a balancing step since the last update() was
        # refused (a bool tensor, read by update()); None: no step since then
        self._refused_since_update: Tensor | None = None
        # the latest aux of observe() that requires grad: [its gradient was computed, a
        # backward through the fork used its losses]; warned once if the first stays False
        self._aux_watch: list[bool] | None = None
        self._aux_warned = False
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        # float64: any finite weight a rule returns fits (in float32, weights above 3.4e38,
        # e.g. from norm ratios above 1e38 in float64 training, would be inf and refused)
        self.register_buffer("weights", torch.ones(self.num_tasks, dtype=torch.float64))
        self.register_buffer("refused_streak", torch.zeros((), dtype=torch.int64))
        self._stats: BalanceStats | None = None
        self._warned = False  # for the current streak of refused steps
        # CUDA: the count in flight (pinned copy, its event, the count's device)
        self._pending_streak: tuple[Tensor, Any, torch.device] | None = None
        # The CPU host path (mbkernels._host) writes the state in the buffers' dtypes
        # (checked at every step).
        self._host_dtypes = {
            **{name: value.dtype for name, value in rule.init_state().items()},
            "step": torch.int64,
            "weights": torch.float64,
            "refused_streak": torch.int64,
        }
        # the rule's floating-point state: checked for finiteness on the host path
        self._host_float_state = tuple(
            name for name in self._state_names if self._host_dtypes[name].is_floating_point
        )
        # (buffers, their data pointers, NumPy views of them): see _host_buffers
        self._host_views: tuple[list[Tensor], list[int], dict[str, Any]] | None = None
        # a step taken on the host path, from which `stats` is built when read
        self._host_record: tuple[Any, ...] | None = None
        # the record of the latest step taken on the GPU device path (mbkernels._device)
        self._device_record: Tensor | None = None
        self.fast_paths = fast_paths  # sets _host_rule and _device_rule

    @property
    def fast_paths(self) -> bool:
        """Whether a step may take the CPU host path or the GPU device path (see the
        constructor); settable."""
        return self._fast_paths

    @fast_paths.setter
    def fast_paths(self, on: bool) -> None:
        if not isinstance(on, bool):
            raise ValueError(f"fast_paths must be True or False, got {on!r}")
        self._fast_paths = on
        # the rule has a host implementation (mbkernels._host), a device step (_device)
        self._host_rule = on and _has_host_weights(self.rule)
        self._device_rule = on and _device.has_device_step(self.rule)

    # ------------------------------------------------------------------ forward
    def forward(self, z: Tensor) -> tuple[Tensor, ...]:
        """Return ``num_tasks`` tensors equal to ``z``, one per task tower."""
        if not isinstance(z, Tensor):
            raise ValueError(f"z must be a torch.Tensor, got {type(z).__name__}")
        if not z.is_floating_point():
            raise ValueError(f"z must have a floating-point dtype, got {z.dtype}")
        if not (torch.is_grad_enabled() and z.requires_grad):
            return tuple(z for _ in range(self.num_tasks))
        # Under Dynamo the disabled wrapper makes the fork a graph break; eagerly the
        # wrapper's own cost (~10 µs a call) is skipped.
        fork_fn = _fork_eager if torch.compiler.is_compiling() else fork
        outs = fork_fn(z, self.num_tasks, self.combine)
        if not self._param_names:
            return outs
        learned = [p for p in (getattr(self, n) for n in self._param_names) if p.requires_grad]
        if learned:
            outs = (_ParamAnchor.apply(outs[0], *learned), *outs[1:])
        return outs

    # ------------------------------------------------------------------ losses
    def observe(self, losses: Sequence[Tensor | float] | Tensor) -> Tensor:
        """Hand a loss-aware weighting (:mod:`mbkernels.weightings`) this step's task
        losses; call it after the forward pass and before ``backward``, and add what it
        returns to the loss that is back-propagated::

            aux = bal.observe(losses)
            (sum(losses) + aux).backward()   # or scaler.scale(...), or divided by k

        ``losses``: a ``[num_tasks]`` tensor or ``num_tasks`` scalars (0-d tensors or
        numbers), the per-task losses as computed, in task order: not multiplied by a loss
        scale, not divided by the number of accumulated micro-batches (do that to the sum
        that is back-propagated, ``aux`` included). They are read detached, in float64;
        the next balancing step (the fork's backward, or :meth:`step_weights`) uses them
        once. Finite and within the weighting's domain; else ``ValueError`` and nothing
        changes. Losses observed before and not yet used by a balancing step are refused
        the same way (back-propagate them first, or :meth:`discard_observed`). One host
        read (of the ``T`` losses) per call.

        Returns ``aux``: a 0-d tensor of value zero, in the losses' dtype and on their
        device, whose gradient with respect to the weighting's learned parameters (UW's
        ``log_var``, IMTL-L's ``log_scale``) is ``dF/ds`` at these losses, the losses held
        constant. Back-propagated with the losses, it gives those parameters their
        gradients through autograd: gradient accumulation, a GradScaler and DDP treat
        them like every other parameter's. A weighting without learned parameters (or
        whose parameters do not require grad) returns a zero that requires no grad.
        """
        self._require_loss_rule("observe")
        values, dtype = self._loss_vector(losses)
        if self._losses is not None:
            raise ValueError(
                "bal.observe: the losses observed before have not been used by a balancing "
                "step yet (each observe is for one backward through the fork, or one "
                "step_weights); back-propagate them first, or bal.discard_observed() to drop "
                "them. Nothing was changed"
            )
        self._check_param_device(values.device, "the losses")
        aux = self._parameter_aux(values, dtype)
        self._warn_if_aux_unused()
        self._aux_watch = None
        if aux.requires_grad:
            watch = [False, False]
            aux.register_hook(lambda grad: watch.__setitem__(0, True))
            self._aux_watch = watch
        self._losses = values
        return aux

    def _warn_if_aux_unused(self) -> None:
        """Warn once if the previous observe's ``aux`` was not back-propagated although a
        backward through the fork used its losses: the learned parameters got no
        gradient from that step and, without ``aux``, never train."""
        watch = self._aux_watch
        if watch is None or watch[0] or not watch[1] or self._aux_warned:
            return
        self._aux_warned = True
        warnings.warn(
            f"rule {self.rule.name!r}: the learned parameters ({', '.join(self._param_names)}) "
            f"got no gradient from the last backward: add the tensor bal.observe(losses) "
            f"returns to the loss that is back-propagated (aux = bal.observe(losses); "
            f"(sum(losses) + aux).backward()); without it they do not train",
            stacklevel=3,
        )

    def discard_observed(self) -> None:
        """Drop the losses given to :meth:`observe` that no balancing step has used yet
        (e.g. after a forward that was not back-propagated); nothing else changes."""
        self._losses = None

    def _parameter_aux(self, values: Tensor, dtype: torch.dtype) -> Tensor:
        """``term - term.detach()`` of the weighting's :meth:`parameter_term
        <mbkernels.weightings.LossWeighting.parameter_term>`, in ``dtype`` on ``values``'
        device (a zero without grad where there is no term)."""
        rule = self.rule
        assert isinstance(rule, LossWeighting)
        params = {name: getattr(self, name) for name in self._param_names}
        term = None
        if any(p.requires_grad for p in params.values()) and torch.is_grad_enabled():
            term = rule.parameter_term(values.to(self._param_device()), params)
        if term is None or not term.requires_grad:
            return torch.zeros((), dtype=dtype, device=values.device)
        return (term - term.detach()).to(device=values.device, dtype=dtype)

    def _param_device(self) -> torch.device:
        return getattr(self, self._param_names[0]).device

    def _check_param_device(self, device: torch.device, what: str) -> None:
        """Learned parameters stay where they are (the optimiser holds them): refuse a
        step on another device rather than read or move them there."""
        if self._param_names and self._param_device() != device:
            raise ValueError(
                f"{what} are on {device}, but the learned parameters of rule "
                f"{self.rule.name!r} ({', '.join(self._param_names)}) are on "
                f"{self._param_device()}: move the balancer there (bal.to(device), or with "
                f"the model) before building the optimiser; nothing was changed"
            )

    def update(self, losses: Sequence[Tensor | float] | Tensor) -> None:
        """After the optimiser step: let the weighting learn from the losses recomputed on
        the same batch (FAMO's ``update``); a weighting without such an update ignores it.
        ``losses`` as for :meth:`observe`. If a balancing step since the last update was
        refused (a GradScaler overflow, which also skips the optimiser step, or a
        non-finite step under ``nonfinite``), there is nothing to learn from: it does
        nothing (FAMO forgets the pending step). Without any balancing step since the last
        update, FAMO raises ``ValueError``."""
        self._require_loss_rule("update")
        assert isinstance(self.rule, LossWeighting)
        values, _ = self._loss_vector(losses)
        state = {name: getattr(self, name) for name in self._state_names}
        refused = self._refused_since_update
        if refused is not None and bool(refused):
            self._write_state(self.rule.after_refused_step(state), "update")
        else:
            self._write_state(self.rule.after_step(values.to(self.step.device), state), "update")
        self._refused_since_update = None

    def end_epoch(self) -> None:
        """At the end of each epoch: let the weighting close the epoch (DWA's epoch-average
        losses); a weighting without epochs ignores it."""
        self._require_loss_rule("end_epoch")
        assert isinstance(self.rule, LossWeighting)
        state = {name: getattr(self, name) for name in self._state_names}
        self._write_state(self.rule.end_epoch(state), "end_epoch")

    def _require_loss_rule(self, method: str) -> None:
        if not self._loss_rule:
            raise ValueError(
                f"Balancer.{method} is for the loss-aware weightings (mbkernels.weightings, "
                f"e.g. make_rule('uw', T)); rule {self.rule.name!r} weighs the tasks from "
                f"the Gram matrix alone"
            )

    def _loss_vector(self, losses: Sequence[Tensor | float] | Tensor) -> tuple[Tensor, torch.dtype]:
        """``losses`` as a detached float64 ``[num_tasks]`` tensor, checked (finite, the
        weighting's domain) on one host read, and their dtype (promoted over the
        tensors; float64 for plain numbers)."""
        t = self.num_tasks
        if isinstance(losses, Tensor):
            if losses.shape != (t,):
                raise ValueError(
                    f"losses must be a [{t}] tensor (num_tasks={t}) or {t} scalars, "
                    f"got a tensor of shape {tuple(losses.shape)}"
                )
            values = losses.detach()
            dtype = losses.dtype
        else:
            if isinstance(losses, (str, bytes)) or not isinstance(losses, Sequence):
                raise ValueError(
                    f"losses must be a [{t}] tensor or a sequence of {t} scalars, "
                    f"got {type(losses).__name__}"
                )
            if len(losses) != t:
                raise ValueError(
                    f"losses must hold num_tasks={t} losses, one per task, got {len(losses)}"
                )
            items = []
            dtypes = []
            for i, loss in enumerate(losses):
                if isinstance(loss, Tensor):
                    if loss.numel() != 1:
                        raise ValueError(
                            f"losses[{i}] must be a scalar (one loss per task), got a tensor "
                            f"of shape {tuple(loss.shape)}"
                        )
                    items.append(loss.detach().reshape(()))
                    dtypes.append(loss.dtype)
                elif isinstance(loss, (int, float)) and not isinstance(loss, bool):
                    items.append(torch.tensor(float(loss), dtype=torch.float64))
                else:
                    raise ValueError(f"losses[{i}] must be a tensor or a number, got {loss!r}")
            device = next((v.device for v in items if v.device.type != "cpu"), items[0].device)
            values = torch.stack([v.to(device=device, dtype=torch.float64) for v in items])
            dtype = dtypes[0] if dtypes else torch.float64
            for other in dtypes[1:]:
                dtype = torch.promote_types(dtype, other)
        if values.is_complex() or values.dtype == torch.bool:
            raise ValueError(f"losses must be real numbers, got dtype {values.dtype}")
        if _holds_no_data(values):
            raise ValueError("losses must hold values, got a meta or fake tensor")
        values = values.to(torch.float64)
        if not dtype.is_floating_point:
            dtype = torch.float64
        host = values.tolist()  # the one host read: every check below is on these floats
        bad = [i for i, v in enumerate(host) if not math.isfinite(v)]
        if bad:
            raise ValueError(
                f"losses must be finite, got {host} (inf/NaN at task index(es) "
                f"{bad}); the balancer state was not changed"
            )
        assert isinstance(self.rule, LossWeighting)
        self.rule.check_losses(host)
        return values.clone(), dtype

    def _write_state(self, new_state: dict[str, Tensor] | None, method: str) -> None:
        """Copy a weighting's new state into the buffers, if it has one and it is finite."""
        if new_state is None:
            return
        floats = [v for v in new_state.values() if v.is_floating_point()]
        if floats and not bool(all_finite(*floats)):
            raise FloatingPointError(
                f"Balancer.{method}: rule {self.rule.name!r} computed a non-finite state; "
                f"the balancer state was not changed"
            )
        for name in self._state_names:
            buffer = getattr(self, name)
            buffer.copy_(new_state[name].to(device=buffer.device, dtype=buffer.dtype))

    # ----------------------------------------------------------------- backward
    def combine(self, grads: Sequence[Tensor | None]) -> Tensor | None:
        """One balancing step on the task gradients: what the fork's backward returns for
        them (``sum_t w_t grads[t]``; ``None`` entries are unused tasks). The fork calls it;
        it is public for benchmarks that time a step without a model around it.
        ``grads`` are ``num_tasks`` tensors of one shape, dtype and device."""
        return self._combine(grads)

    def _combine(self, grads: Sequence[Tensor | None]) -> Tensor | None:
        gs = [g for g in grads if g is not None]
        if not gs:
            return None
        if _holds_no_data(gs[0]):
            # meta or fake tensors (FLOP counters, memory estimators): there are no values to
            # balance or learn from. The plain sum has the right shape, dtype and device,
            # and the state is not touched.
            return _plain_sum(gs)
        if self._device_rule and len(gs) == self.num_tasks:
            state = _device.buffers(self, gs[0])
            if state is not None:
                combined = _device.combine(self, gs, state)
                if combined is not None:
                    return combined
        fast = None  # pass 1 of a host-path step that could not finish there
        views = self._host_ready(gs[0]) if len(gs) == self.num_tasks else None
        if views is not None:
            combined, fast = self._combine_host(gs, views)
            if combined is not None:
                return combined
        present = [i for i, g in enumerate(grads) if g is not None]
        device = gs[0].device
        cross_terms = self._computes_full_gram(gs[0])
        if fast is not None:  # the same pass 1 (CPU, PyTorch path): not computed twice
            exact = gram_float64 if cross_terms else sq_norms_float64
            gram_local = _range_safe(fast, gs, exact, self.range_check)
            if not cross_terms:
                gram_local = torch.diag(gram_local)
        elif cross_terms:
            gram_local = range_safe_gram(gs, self.backend, self.range_check)  # float64
        else:  # the rule reads only the norms: T dot products, zeros off the diagonal
            gram_local = torch.diag(range_safe_sq_norms(gs, self.backend, self.range_check))
        gram = self._reduce(_fill_unused(gram_local, present, self.num_tasks))
        scale = current_scale(self.grad_scaler)
        gram = unscale_gram(gram, scale)
        # With a GradScaler, an overflow is the scaler's business whatever the policy: the
        # whole step is skipped and the inf flows on, so the scaler skips optimizer.step()
        # and backs off. Dropping the task instead ("skip_task") would leave a finite
        # gradient, the scale would never shrink, and the task would be dropped forever.
        policy = "skip_update" if scale is not None else self.nonfinite
        proposal = self._propose(gram.to(device), off_diagonal_known=cross_terms, policy=policy)
        if proposal.dropped is not None:
            # Dropped tasks have weight 0, but 0 * inf is NaN: leave them out of pass 2.
            keep = [k for k, i in enumerate(present) if not proposal.dropped[i]]
            if len(keep) < len(present):
                gs = [gs[k] for k in keep]
                present = [present[k] for k in keep]
        weights = proposal.applied
        w_present = weights if len(present) == self.num_tasks else weights[present]
        combined = ops.weighted_sum(gs, w_present, self.backend)
        self._commit(proposal)  # last: an error anywhere above leaves the state as it was
        if self._loss_rule and self._aux_watch is not None:
            self._aux_watch[1] = True  # this backward used the losses aux came with
        return combined

    def _host_ready(self, grad: Tensor) -> dict[str, Any] | None:
        """The buffers' NumPy views if this step may take the host path
        (:mod:`mbkernels._host`): CPU gradients and buffers, the PyTorch backend, a rule
        with a host implementation, no Gram reduction, loss scale or ``"skip_task"``
        policy, the buffers in their own dtypes; else ``None``."""
        if not self._host_rule or not grad.is_cpu or self.backend == "triton":
            return None
        rule_attrs = self.rule.__dict__
        if "weights" in rule_attrs and "host_weights" not in rule_attrs:
            return None  # weights replaced on the instance (a spy), host_weights not
        if self.nonfinite == "skip_task" or self.gram_reduce is not None:
            return None
        if self.grad_scaler is not None and current_scale(self.grad_scaler) is not None:
            return None
        if self.process_group is not None and active_group(self.process_group)[0]:
            return None
        return self._host_buffers()

    def _host_buffers(self) -> dict[str, Any] | None:
        """NumPy views of the buffers the host path reads and writes, or ``None`` when one
        is not a CPU tensor of the dtype it writes. Cached while every buffer is the same
        object with the same memory (``.to()``, ``load_state_dict(assign=True)``, a deep
        copy, ``share_memory_()``: views made afresh)."""
        buffers = self._buffers
        cached = self._host_views
        if cached is not None:
            tensors, pointers, views = cached
            current = [buffers.get(name) for name in views]
            # the same buffer objects, over the same memory
            if all(map(operator.is_, current, tensors)) and pointers == [
                buf.data_ptr() for buf in tensors
            ]:
                return views
        found = []
        for name, dtype in self._host_dtypes.items():
            buf = buffers[name]
            if buf is None or buf.device.type != "cpu" or buf.dtype != dtype:
                self._host_views = None
                return None
            found.append(buf)
        views = {name: buf.detach().numpy() for name, buf in zip(self._host_dtypes, found)}
        self._host_views = (found, [buf.data_ptr() for buf in found], views)
        return views

    def _combine_host(
        self, gs: list[Tensor], buffer_views: dict[str, Any]
    ) -> tuple[Tensor | None, Tensor | None]:
        """One balancing step with the statistics and the rule on host floats. Returns
        ``(combined, pass 1)``; ``combined`` is ``None`` when the step is not the plain
        finite case (out of float32's range, non-finite statistics or weights): then
        nothing was changed and the general path takes the step from pass 1's result."""
        cross = self.full_gram  # the rule reads only the norms (_host_rule)
        fast: Tensor | None = None
        values: Any = None if cross else _host.norms_small(gs)
        if values is None:
            fast = _host.pass1(gs, cross)
            values = fast.tolist()
        t = self.num_tasks
        if cross:
            diag = [values[i][i] for i in range(t)]
            entries = [x for row in values for x in row]
        else:
            diag = entries = values
        dtype = gs[0].dtype
        if not all(map(math.isfinite, entries)):
            return None, _pass1_tensor(fast, values)
        if self.range_check and dtype != torch.float16 and dtype != torch.float64:
            if not _host.in_float32_range(diag, _host.underflow_bound(gs[0].numel())):
                return None, _pass1_tensor(fast, values)
        names = self._state_names
        state = {name: buffer_views[name].tolist() for name in names}
        step_view = buffer_views["step"]
        step = int(step_view) + 1
        result = self.rule.host_weights(diag, state, step)
        if result is None:
            return None, _pass1_tensor(fast, values)
        weights, new_state = result
        floats = [new_state[name] for name in self._host_float_state]
        if not all(map(math.isfinite, itertools.chain(weights, *floats))):
            return None, _pass1_tensor(fast, values)
        combined = _host.pass2(gs, weights)
        # commit, last (as in the general path): in place, through NumPy views
        for name in names:
            buffer_views[name][...] = new_state[name]
        step_view[...] = step
        buffer_views["weights"][...] = weights
        streak_view = buffer_views["refused_streak"]
        if int(streak_view) != 0:
            streak_view[...] = 0
        # plain attributes, set without nn.Module.__setattr__'s checks (~1 µs each)
        self.__dict__["_stats"] = None
        self.__dict__["_host_record"] = (values, cross, weights, new_state, step)
        self.__dict__["_device_record"] = None
        if self._warned:  # a streak of refused steps ended
            self.__dict__["_warned"] = False
        return combined, None

    def _computes_full_gram(self, grad: Tensor) -> bool:
        """Whether pass 1 computes the off-diagonal (see ``full_gram``)."""
        if self.full_gram or self.rule.uses_cross_terms:
            return True
        return ops.resolve_backend(self.backend, grad.device, grad.dtype) == "triton"

    def _reduce(self, gram: Tensor) -> Tensor:
        if self.gram_reduce is not None:
            return self.gram_reduce(gram)
        reduce, group = active_group(self.process_group)
        return all_reduce_gram(gram, group) if reduce else gram

    def step_weights(self, gram: Tensor) -> Tensor:
        """One balancing step from a global ``[T, T]`` Gram matrix: run the rule under the
        non-finite policy, commit its state if the statistics are finite, record
        :attr:`stats`; return the weights applied this step (``[T]``, on ``gram``'s device).

        The fork's backward runs the same steps between the two kernel passes (after the
        all-reduce and the loss-scale correction). It is public for code that computes the
        Gram matrix itself (parameter-level experiments, benchmarks, teaching) and wants
        the same state handling. The rule runs in float64 on a detached copy of ``gram``,
        on ``gram``'s device (the state moves there when the step commits): no gradient
        flows into the weights or the state. A loss-aware weighting uses (and consumes)
        the losses given to :meth:`observe` before it.
        """
        if not isinstance(gram, Tensor) or gram.shape != (self.num_tasks, self.num_tasks):
            got = tuple(gram.shape) if isinstance(gram, Tensor) else type(gram).__name__
            raise ValueError(
                f"gram must be a [{self.num_tasks}, {self.num_tasks}] tensor "
                f"(num_tasks={self.num_tasks}), got {got}"
            )
        if _holds_no_data(gram):
            raise ValueError(
                f"gram must hold values, got a tensor on device {gram.device.type!r} without "
                f"data (meta or fake); the balancer state was not changed"
            )
        proposal = self._propose(gram, off_diagonal_known=True, policy=self.nonfinite)
        self._commit(proposal)
        return proposal.applied

    def weigh_each(self, grads: Sequence[Tensor | None]) -> tuple[Tensor | None, ...]:
        """One balancing step on ``num_tasks`` gradients of one shape, each weighted
        separately: returns ``w_t * grads[t]`` (``None`` stays ``None``) instead of the
        sum the fork's backward returns.

        For models where each task has its own representation (the per-task expert
        mixtures of an MMoE model): pair it with :func:`mbkernels.fork.fork_each`. The
        Gram matrix is pass 1's with its float64 range fallback (``range_check``), an
        unused task's row and column are zero, and the step is :meth:`step_weights`'s.
        The Gram matrix is this process's: no all-reduce, no loss-scale correction.
        """
        if len(grads) != self.num_tasks:
            raise ValueError(
                f"grads must hold num_tasks={self.num_tasks} entries, got {len(grads)}"
            )
        present = [i for i, g in enumerate(grads) if g is not None]
        gs = [g for g in grads if g is not None]
        if not gs:
            return tuple(None for _ in grads)
        gram_local = range_safe_gram(gs, self.backend, self.range_check)
        weights = self.step_weights(_fill_unused(gram_local, present, self.num_tasks))
        out: list[Tensor | None] = [None] * self.num_tasks
        for i, g in zip(present, gs):
            out[i] = g * weights[i].to(g.dtype)
        return tuple(out)

    def _propose(self, gram: Tensor, *, off_diagonal_known: bool, policy: str) -> _Proposal:
        """Run the rule on ``gram``'s device and return what the step would commit, without
        changing anything (a function of the state and ``gram`` only); :meth:`_commit`
        applies it. With ``off_diagonal_known=False`` (norms-only pass 1, zeros off the
        diagonal) the recorded ``stats.gram`` says NaN there instead of a misleading 0."""
        gram = gram.detach().to(dtype=torch.float64)
        device = gram.device
        if policy == "raise":
            bad = nonfinite_tasks(gram)
            if bool(bad.any()):
                raise NonFiniteGradientError(bad.nonzero().flatten().tolist())
        # The state is read on the step's device; the module's buffers move there only when
        # the step commits (a failed step on another device leaves them where they were).
        # On the same device (every step but the first after a move) no copies, no ops.
        same = self.step.device == device

        def here(buffer: Tensor) -> Tensor:
            return buffer if same else buffer.to(device)

        old_state = {name: here(getattr(self, name)) for name in self._state_names}
        old_step = here(self.step)
        old_streak = here(self.refused_streak)
        step = old_step + 1
        # Rules never see inf/NaN (some factorise the Gram matrix and would raise): a
        # non-finite step runs on a zeroed copy, and its result is discarded below.
        clean = gram.nan_to_num(0.0, 0.0, 0.0)
        dropped = None
        if policy == "skip_task":
            bad = nonfinite_tasks(gram)
            active = ~bad
        if self._loss_rule:
            weights, new_state = self._loss_step(clean, old_state, step)
            if policy == "skip_task":
                weights, new_state = self._hold_inactive(old_state, weights, new_state, active)
        elif policy == "skip_task":
            weights, new_state = self.rule.weights_subset(clean, old_state, step, active)
        else:
            weights, new_state = self.rule.weights(clean, old_state, step)
        weights = weights.to(self.weights.dtype)
        # integer state (counters) is always finite: leave it out of the check's concatenation
        results = (weights, *(v for v in new_state.values() if v.is_floating_point()))
        if policy == "skip_task":
            # dropped tasks' inf/NaN are expected; some task must be left
            finite = active.any() & all_finite(*results)
            dropped = (bad & active.any()).tolist()
            accepted = finite & active.all()  # a dropped task counts as a refusal
        else:
            finite = all_finite(gram, *results)
            accepted = finite
        if policy == "raise" and not bool(finite):
            raise FloatingPointError(
                "the balancing weights or rule state are not finite although every task "
                "gradient is; the balancer state was not changed"
            )
        # Without a host sync: torch.where on device. The committed tensors are fresh, so
        # the stats keep them without a clone (the commit copies them into the buffers).
        committed = {
            name: torch.where(finite, new_state[name].to(old.dtype), old)
            for name, old in old_state.items()
        }
        new_step = torch.where(finite, step, old_step)
        applied = torch.where(finite, weights, here(self.weights))
        streak = torch.where(accepted, 0, old_streak + 1)
        stats = BalanceStats(
            gram=gram if off_diagonal_known else _unknown_off_diagonal(gram),
            norms=gram.diagonal().clamp_min(0).sqrt(),
            weights=applied.clone(),  # the caller gets `applied`: stats stay a record
            state=committed,
            step=new_step,
            finite=finite,
            refused_streak=streak,
        )
        return _Proposal(applied, committed, new_step, streak, stats, dropped)

    def _loss_step(
        self,
        gram: Tensor,
        state: dict[str, Tensor],
        step: Tensor,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """A loss-aware weighting's step on this step's observed losses."""
        rule = self.rule
        assert isinstance(rule, LossWeighting)
        if self._losses is None:
            raise ValueError(
                f"rule {rule.name!r} weighs the tasks by their losses, and no losses were "
                f"observed for this step: call bal.observe(losses) with the "
                f"{self.num_tasks} task losses before backward (once per backward); the "
                f"balancer state was not changed"
            )
        self._check_param_device(gram.device, "this step's task gradients")
        losses = self._losses.to(gram.device)
        params = {
            name: getattr(self, name).detach().to(torch.float64) for name in self._param_names
        }
        out = rule.loss_step(losses, gram.diagonal(), params, state, step)
        return out.weights, dict(out.state)

    def _hold_inactive(
        self,
        old_state: dict[str, Tensor],
        weights: Tensor,
        new_state: dict[str, Tensor],
        active: Tensor,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """A loss-aware weighting's step under ``nonfinite="skip_task"``: the inactive tasks
        get weight 0 and keep their per-task state (first dimension ``num_tasks``, as
        :meth:`Rule.weights_subset <mbkernels.rules.Rule.weights_subset>`), except the
        entries computed from the losses alone (the weighting's ``loss_state``): every
        task's loss was observed and finite, so those take the step for every task."""
        assert isinstance(self.rule, LossWeighting)
        from_losses = self.rule.loss_state
        held = {}
        for name, value in new_state.items():
            if name not in from_losses and value.dim() >= 1 and value.shape[0] == self.num_tasks:
                keep = active.reshape(-1, *([1] * (value.dim() - 1)))
                value = torch.where(keep, value, old_state[name].to(value.dtype))
            held[name] = value
        return torch.where(active, weights, torch.zeros_like(weights)), held

    def _commit(self, proposal: _Proposal) -> None:
        """Write a proposed step into the buffers: in place on the same device; on another
        device the buffers move there (the state follows the gradients, so forgetting the
        balancer in ``model.to(device)`` costs nothing). A loss-aware weighting's learned
        parameters are not moved: the optimiser holds them, and :meth:`_loss_step` has
        refused a step on another device than theirs."""
        values = {
            **proposal.state,
            "step": proposal.step,
            "weights": proposal.applied,
            "refused_streak": proposal.streak,
        }
        if self.step.device == proposal.step.device:
            for name, value in values.items():
                getattr(self, name).copy_(value)
        else:
            for name, value in values.items():
                self._buffers[name] = value.clone()
        self._stats = proposal.stats
        self._host_record = None
        self._device_record = None
        if self._loss_rule:
            self._losses = None  # used once
        if self._tracks_refusals:
            refused = ~proposal.stats.finite
            before = self._refused_since_update
            self._refused_since_update = (
                refused if before is None else before.to(refused.device) | refused
            )
        self._watch_refusals(proposal.streak)

    def _watch_refusals(self, streak: Tensor) -> None:
        """Warn once per streak of refused steps longer than ``warn_after_refused``.

        A CPU count is read directly (host memory, no device sync). A CUDA count is
        copied to pinned host memory without waiting and read on the next step, when its
        event has completed: the warning comes a step late, and no step waits for it."""
        if self.warn_after_refused is None:
            return
        if streak.device.type != "cuda":
            self._check_refusals(int(streak))
            return
        pending = self._pending_streak
        stream = torch.cuda.current_stream(streak.device)  # where the copy below is queued
        if pending is not None and pending[1].query():
            self._check_refusals(int(pending[0]))
            host, event, device = pending  # read and done: reused (the copy is queued after)
            if host.dtype != streak.dtype or device != streak.device:
                host = torch.empty((), dtype=streak.dtype, pin_memory=True)
                event = torch.cuda.Event()  # an event belongs to the device it first records on
        else:  # no conversion on the way: the pinned copy has the count's dtype
            host = torch.empty((), dtype=streak.dtype, pin_memory=True)
            event = torch.cuda.Event()
        host.copy_(streak, non_blocking=True)
        event.record(stream)
        self.__dict__["_pending_streak"] = (host, event, streak.device)

    def _check_refusals(self, count: int) -> None:
        assert self.warn_after_refused is not None
        if count < self.warn_after_refused:
            if self._warned:  # the streak ended (nn.Module attribute writes are not free)
                self._warned = False
            return
        if self._warned:
            return
        self._warned = True
        warnings.warn(RefusedStepsWarning(self._refusal_reason(count)), stacklevel=2)

    def _refusal_reason(self, count: int) -> str:
        """The warning's text: how many, why the latest was refused, which tasks."""
        stats = self.stats
        head = (
            f"{type(self).__name__} (rule {self.rule.name!r}): {count} balancing steps in a "
            f"row were refused; "
        )
        if stats is None:
            return head + "no statistics recorded"
        bad = nonfinite_tasks(stats.gram).nonzero().flatten().tolist()
        if not bad:
            return head + (
                "the latest because the rule's weights or state were not finite although "
                "every task gradient was (the last finite weights were applied)"
            )
        reason = f"the latest because of a non-finite (inf/NaN) gradient on task index(es) {bad}"
        if current_scale(self.grad_scaler) is not None:
            return (
                head
                + reason
                + (
                    "; with the GradScaler every such step is skipped so that it backs off, and "
                    "a long streak means the gradient is not finite at any scale (a NaN loss?)"
                )
            )
        if self.nonfinite == "skip_task" and len(bad) < self.num_tasks:
            return head + reason + " (nonfinite='skip_task': those tasks are not training)"
        return head + reason + " (the balancer state is held; the last finite weights apply)"

    # ------------------------------------------------------------------- state
    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Balancer:
        """``.to()``, ``.cuda()``, ``.half()``, ``.double()``... move the state but never
        change its dtype: the statistics are optimizer-like state, and in float16 an EMA
        above 65504 would become inf and freeze the balancer. The device is taken from
        what ``fn`` does to each buffer, the values and dtype from the buffer itself."""

        def keep_dtype(t: Tensor) -> Tensor:
            moved = fn(t)
            if moved.dtype == t.dtype:
                return moved
            return t.to(device=moved.device)

        return super()._apply(keep_dtype, recurse)

    @property
    def stats(self) -> BalanceStats | None:
        """Statistics of the latest backward (``None`` before the first one)."""
        if self._stats is None and self._host_record is not None:
            self._stats = self._host_stats(*self._host_record)
        if self._stats is None and self._device_record is not None:
            self._stats = _device.stats(self._device_record, self.num_tasks)
        return self._stats

    def _host_stats(
        self,
        values: Any,
        cross: bool,
        weights: list[float],
        state: dict[str, list[Any]],
        step: int,
    ) -> BalanceStats:
        """The :class:`BalanceStats` the general path records for a finite step, from a
        host-path step's numbers (built when first read)."""
        gram = torch.tensor(values, dtype=torch.float64)
        if not cross:
            gram = _unknown_off_diagonal(torch.diag(gram))
        buffers = self._buffers
        return BalanceStats(
            gram=gram,
            norms=gram.diagonal().clamp_min(0).sqrt(),
            weights=torch.tensor(weights, dtype=torch.float64),
            state={
                name: torch.tensor(state[name], dtype=buffers[name].dtype)  # type: ignore[union-attr]
                for name in self._state_names
            },
            step=torch.tensor(step, dtype=torch.int64),
            finite=torch.tensor(True),
            refused_streak=torch.tensor(0, dtype=torch.int64),
        )

    def reset(self) -> None:
        """Forget all history: fresh rule state, step 0, unit weights."""
        device = self.step.device
        for name, value in self.rule.init_state(device).items():
            getattr(self, name).copy_(value)
        self.step.zero_()
        self.weights.fill_(1.0)
        self.refused_streak.zero_()
        if isinstance(self.rule, LossWeighting):
            with torch.no_grad():
                for name, value in self.rule.init_parameters(device).items():
                    getattr(self, name).copy_(value)
        self._losses = None
        self._refused_since_update = None
        self._aux_watch = None
        self._stats = None
        self._host_record = None
        self._device_record = None
        self._warned = False
        self._pending_streak = None

    def get_extra_state(self) -> dict[str, Any]:
        return {"rule": self.rule.name, "config": self.rule.config()}

    def set_extra_state(self, state: Any) -> None:
        pass  # validated in _load_from_state_dict, before anything is copied

    def _load_from_state_dict(
        self,
        state_dict: Mapping[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # PyTorch passes strict=True here whatever the caller asked (it sorts missing and
        # unexpected keys out at the top, after copying); so: no entry of this balancer at
        # all is PyTorch's missing-keys case, a partial or broken one is refused here.
        # Balancer.load_state_dict and mbk.load_state_dict check the caller's strict first.
        self._check_loadable(state_dict, prefix, strict=False)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self._warned = False
        self._pending_streak = None
        self._refused_since_update = None

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """``nn.Module.load_state_dict`` after :meth:`check_state_dict`: a state that does
        not fit raises ``ValueError`` and changes nothing."""
        self.check_state_dict(state_dict, strict=strict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def check_state_dict(
        self, state_dict: Mapping[str, Any], prefix: str = "", strict: bool = True
    ) -> None:
        """Raise ``ValueError`` (changing nothing) if ``state_dict`` (entries under
        ``prefix``) does not fit this balancer: a missing or (``strict``) unexpected entry,
        another ``num_tasks``, rule or rule configuration, a wrong shape or kind of dtype,
        a non-finite or out-of-range value. ``load_state_dict`` runs this before copying.

        A saved configuration that differs from this balancer's (``beta``, ``relax``,
        ...) is refused rather than silently continued with the new settings. To resume
        with other hyperparameters on purpose, edit the saved configuration
        (``sd["_extra_state"]["config"]["beta"] = 0.95``) before loading.
        """
        self._check_loadable(state_dict, prefix, strict)

    def _check_loadable(self, state_dict: Mapping[str, Any], prefix: str, strict: bool) -> bool:
        """Raise ``ValueError`` (changing nothing) if the state does not fit this balancer;
        return whether there is anything to load."""
        names = (*self._state_names, *self._param_names, *_OWN_STATE, "_extra_state")
        present = [name for name in names if prefix + name in state_dict]
        if not present and not strict:
            return False
        if strict:
            unexpected = [
                k for k in state_dict if k.startswith(prefix) and k[len(prefix) :] not in names
            ]
            if unexpected:
                raise ValueError(
                    f"state_dict has unexpected entries {unexpected} under prefix {prefix!r} "
                    f"(this balancer has {', '.join(repr(prefix + n) for n in names)}); "
                    f"nothing was loaded"
                )
        if "_extra_state" in present:
            self._check_extra_state(state_dict[prefix + "_extra_state"], prefix + "_extra_state")
        for name in (*self._state_names, *self._param_names, *_OWN_STATE):
            if name in present:
                buffer = getattr(self, name)
                self._check_state_entry(prefix + name, state_dict[prefix + name], buffer)
        missing = [prefix + name for name in names if name not in present]
        if missing:
            raise ValueError(
                f"state_dict has no entry {', '.join(repr(k) for k in missing)} for this "
                f"balancer (it needs {', '.join(repr(prefix + n) for n in names)}); "
                f"nothing was loaded"
            )
        self.rule.check_state(
            {name: state_dict[prefix + name] for name in self._state_names}, prefix
        )
        step, streak = int(state_dict[prefix + "step"]), int(state_dict[prefix + "refused_streak"])
        for key, value in ((prefix + "step", step), (prefix + "refused_streak", streak)):
            if value < 0:
                raise ValueError(f"state_dict entry {key!r} must be in [0, inf), got {value}")
        return True

    def _check_extra_state(self, extra: Any, key: str) -> None:
        if not (isinstance(extra, Mapping) and isinstance(extra.get("config"), Mapping)):
            raise ValueError(
                f"state_dict entry {key!r} must be a mapping with 'rule' and 'config' "
                f"(what Balancer.state_dict saves), got {type(extra).__name__}"
            )
        config = extra["config"]
        saved_t = config.get("num_tasks")
        if saved_t != self.num_tasks:
            raise ValueError(
                f"state_dict was saved for num_tasks={saved_t}, but this balancer has "
                f"num_tasks={self.num_tasks}; num_tasks must match to load it"
            )
        if extra.get("rule") != self.rule.name:
            raise ValueError(
                f"state_dict was saved for rule {extra.get('rule')!r}, "
                f"this balancer uses rule {self.rule.name!r}"
            )
        ours = self.rule.config()
        differ = [
            f"{k}: saved {config.get(k, '<missing>')!r}, this balancer {ours.get(k, '<none>')!r}"
            for k in sorted(set(ours) | set(config))
            if config.get(k, _MISSING) != ours.get(k, _MISSING)
        ]
        if differ:
            raise ValueError(
                f"state_dict was saved with another {self.rule.name!r} configuration "
                f"({'; '.join(differ)}); resuming would silently continue with other "
                f"settings. Build the balancer with the saved ones, or edit "
                f"{key!r}['config'] to change them on purpose"
            )

    @staticmethod
    def _check_state_entry(key: str, value: Any, buffer: Tensor) -> None:
        """Type, shape, kind of dtype and finiteness of one saved state tensor."""
        if not isinstance(value, Tensor):
            raise ValueError(f"state_dict entry {key!r} must be a tensor, got {type(value)}")
        if _holds_no_data(value):
            raise ValueError(f"state_dict entry {key!r} is a {value.device.type} tensor: no data")
        if value.shape != buffer.shape:
            raise ValueError(
                f"state_dict entry {key!r} has shape {tuple(value.shape)}, expected "
                f"{tuple(buffer.shape)}: it was saved for a different num_tasks or is corrupt"
            )
        floating = buffer.is_floating_point()
        integer = not floating and value.dtype != torch.bool and not value.is_complex()
        kind_ok = (
            value.is_floating_point() if floating else integer and not value.is_floating_point()
        )
        if not kind_ok:
            kind = "floating-point" if floating else "integer"
            raise ValueError(
                f"state_dict entry {key!r} must have an {kind} dtype (this balancer stores "
                f"{buffer.dtype}), got {value.dtype}"
            )
        if floating and not torch.isfinite(value.to(buffer.dtype)).all():
            raise ValueError(
                f"state_dict entry {key!r} must be finite (in {buffer.dtype}), got {value}"
            )

    def extra_repr(self) -> str:
        full = ", full_gram=True" if self.full_gram else ""
        return f"rule={self.rule!r}, backend={self.backend!r}, nonfinite={self.nonfinite!r}{full}"


#: Buffers of the balancer itself (rule state may not use these names).
_OWN_STATE = ("step", "weights", "refused_streak")
_MISSING = object()


class _ParamAnchor(torch.autograd.Function):
    """The identity on a fork output that also takes the learned parameters as inputs and
    gives them no gradient (their gradient comes from ``observe``'s ``aux``). It puts
    them in the forward pass's graph, where DDP with ``find_unused_parameters=True``
    looks for the parameters a backward will reach; otherwise DDP would mark them unused
    after the forward and fail when ``aux``'s gradient reaches them."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, *params: Tensor) -> Tensor:
        ctx.num_params = len(params)
        return z.view_as(z)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        return (grad, *([None] * ctx.num_params))


class _Proposal(NamedTuple):
    """What one balancing step would commit (see :meth:`Balancer._propose`)."""

    applied: Tensor  # the weights applied this step
    state: dict[str, Tensor]  # the rule state after the step
    step: Tensor
    streak: Tensor  # steps refused in a row, this one included
    stats: BalanceStats
    dropped: list[bool] | None  # "skip_task": the tasks left out of pass 2


def _holds_no_data(t: Tensor) -> bool:
    """A meta tensor or a FakeTensor: shape, dtype and device, but no values."""
    if t.is_meta:
        return True
    if type(t) is Tensor and not _wraps_another(t):
        return False  # a plain tensor: what is_fake would find, in a fraction of its ~8 µs
    return _is_fake(t)


_functorch = getattr(torch._C, "_functorch", None)


def _wraps_another(t: Tensor) -> bool:
    """A plain-class tensor that wraps another (functionalization, functorch), which
    ``is_fake`` unwraps; the fake tensors themselves are subclasses."""
    if torch._is_functional_tensor(t):
        return True
    return _functorch is not None and bool(_functorch.is_functorch_wrapped_tensor(t))


def _has_host_weights(rule: Rule) -> bool:
    """Whether ``rule``'s :meth:`~Rule.host_weights` computes what its ``weights`` does: it
    reads only the norms, and ``host_weights`` is defined where ``weights`` is or in a
    subclass (a subclass that overrides only ``weights`` gets the general path)."""
    if rule.uses_cross_terms:
        return False
    mro = type(rule).__mro__
    host = next(c for c in mro if "host_weights" in c.__dict__)
    weights = next(c for c in mro if "weights" in c.__dict__)
    return host is not Rule and issubclass(host, weights)


def _pass1_tensor(fast: Tensor | None, values: list[float]) -> Tensor:
    """Pass 1's result as the tensor the general path starts from (the host path's small
    norms are host floats: float32 values, exactly)."""
    return fast if fast is not None else torch.tensor(values, dtype=torch.float32)


def _fill_unused(gram: Tensor, present: Sequence[int], num_tasks: int) -> Tensor:
    """The ``[num_tasks, num_tasks]`` Gram matrix from that of the ``present`` tasks'
    gradients: an unused task's row and column are zero (it contributes nothing)."""
    if len(present) == num_tasks:
        return gram
    full = gram.new_zeros(num_tasks, num_tasks)
    idx = torch.tensor(present, device=gram.device)
    full[idx[:, None], idx[None, :]] = gram
    return full


def _plain_sum(grads: Sequence[Tensor]) -> Tensor:
    out = grads[0]
    for g in grads[1:]:
        out = out + g
    return out


def _unknown_off_diagonal(gram: Tensor) -> Tensor:
    """``gram`` with NaN off the diagonal: those inner products were not computed.
    (Built afresh each time: a cached device tensor could belong to a CUDA graph's pool.)"""
    return torch.full_like(gram, float("nan")).diagonal_scatter(gram.diagonal())
