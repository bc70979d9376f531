"""Peak memory allocated during one training step, above what was live before it.

On CUDA the caching allocator counts it (``torch.cuda.max_memory_allocated``).
The CPU allocator keeps no statistics, so :class:`StorageTracker` counts
instead: a ``TorchDispatchMode`` that sees every operator (backward ones too),
records each new output storage with a weak reference, drops it when the
storage is freed, and keeps the maximum of the live total at operator
boundaries. It counts tensor storages created inside the step only (not
Python objects, not the allocator's own caching), which is what "extra memory
of the step" means here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class StorageTracker(TorchDispatchMode):
    """Count bytes of live tensor storages created while active; ``peak`` is the maximum."""

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = 0
        self.peak = 0

    def _sweep(self) -> None:
        dead = [key for key, (ref, _) in self._live.items() if ref.expired()]
        for key in dead:
            self.current -= self._live.pop(key)[1]

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        # Sweep first: a storage freed inside this op may share its key with a new one.
        self._sweep()
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.layout == torch.strided:
                storage = t.untyped_storage()
                key = storage._cdata
                if key not in self._live:
                    nbytes = storage.nbytes()
                    self._live[key] = (StorageWeakRef(storage), nbytes)
                    self.current += nbytes
        self.peak = max(self.peak, self.current)
        return out


def peak_step_bytes(step: Callable[[], object], device: torch.device | str) -> int:
    """Peak bytes allocated during ``step()`` above the memory live before it."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        step()
        torch.cuda.synchronize(dev)
        return int(torch.cuda.max_memory_allocated(dev) - base)
    with StorageTracker() as tracker:
        step()
    return tracker.peak
