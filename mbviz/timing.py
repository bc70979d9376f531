"""Interleaved timing: every candidate runs once per round, in a rotating order.

Timing candidates one after the other lets a burst of load from another process
hit one of them and not the others. Here round ``r`` runs every candidate once
(starting at candidate ``r mod k``), so slow phases of the machine are shared
out evenly, and ratios between candidates of one run are fair. Each sample
times ``repeat`` calls (chosen so that a sample lasts at least ``min_sample_s``)
and records the time per call. Reported: median (typical) and fastest (least
disturbed) time per call.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from mbkernels.validation import check_float, check_int


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one candidate, one value per round."""

    name: str
    seconds: tuple[float, ...]
    repeat: int

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)

    def as_dict(self) -> dict[str, object]:
        return {
            "median_s": self.median,
            "best_s": self.best,
            "rounds": len(self.seconds),
            "repeat": self.repeat,
            "samples_s": list(self.seconds),
        }


def paired_ratio(base: Timing, other: Timing) -> float:
    """Median over rounds of ``base / other`` time, round by round.

    The samples of one round are taken back to back, so a slow phase of the
    machine inflates both; the per-round ratio cancels much of it (a paired
    design), where the ratio of two medians does not.
    """
    return statistics.median(_round_ratios(base, other, "paired_ratio"))


def _round_ratios(base: Timing, other: Timing, caller: str) -> list[float]:
    """``base / other`` round by round (both from one interleaved run)."""
    if len(base.seconds) != len(other.seconds):
        raise ValueError(f"{caller} needs timings from the same interleaved run")
    return [b / o for b, o in zip(base.seconds, other.seconds)]


def paired_ratio_interval(
    base: Timing, other: Timing, *, level: float = 0.9, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of :func:`paired_ratio`: how precisely one run
    pins the median ratio down (rounds resampled with replacement, fixed seed).

    It is as honest as the rounds are independent: slow drifts of the machine that
    last longer than a run are not in it, so two runs can still differ by more.
    """
    ratios = _round_ratios(base, other, "paired_ratio_interval")
    return median_interval(ratios, level=level, resamples=resamples, seed=seed)


def paired_difference(base: Timing, other: Timing) -> float:
    """Median over rounds of ``other - base`` seconds per call, round by round: the
    extra time per step of ``other``, paired like :func:`paired_ratio`."""
    return statistics.median(_round_differences(base, other, "paired_difference"))


def paired_difference_interval(
    base: Timing, other: Timing, *, level: float = 0.9, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of :func:`paired_difference` (as
    :func:`paired_ratio_interval`)."""
    diffs = _round_differences(base, other, "paired_difference_interval")
    return median_interval(diffs, level=level, resamples=resamples, seed=seed)


def _round_differences(base: Timing, other: Timing, caller: str) -> list[float]:
    if len(base.seconds) != len(other.seconds):
        raise ValueError(f"{caller} needs timings from the same interleaved run")
    return [o - b for b, o in zip(base.seconds, other.seconds)]


def median_interval(
    values: Sequence[float], *, level: float = 0.9, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median of ``values`` (resampled with
    replacement, fixed seed)."""
    check_float("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    check_int("resamples", resamples, low=1)
    values = list(values)
    rng = random.Random(seed)
    medians = sorted(
        statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples)
    )
    tail = (1.0 - level) / 2.0
    lo = medians[round(tail * (resamples - 1))]
    hi = medians[round((1.0 - tail) * (resamples - 1))]
    return lo, hi


def format_interval(interval: Sequence[float] | None) -> str:
    """``"0.955-0.978"``; ``"-"`` for results recorded before intervals were."""
    return f"{interval[0]:.3f}-{interval[1]:.3f}" if interval else "-"


def _no_sync() -> None:
    return None


def _sample(fn: Callable[[], object], repeat: int, sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync()
    return (time.perf_counter() - start) / repeat


def interleaved(
    candidates: Mapping[str, Callable[[], object]],
    *,
    rounds: int = 5,
    warmup: int = 1,
    min_sample_s: float = 0.0,
    sync: Callable[[], None] | None = None,
) -> dict[str, Timing]:
    """Time each candidate over ``rounds`` interleaved rounds; return ``{name: Timing}``.

    ``warmup`` untimed calls per candidate come first (compilation, caches,
    allocator). ``sync`` is called around each sample (``torch.cuda.synchronize``
    on GPU). ``min_sample_s`` > 0 repeats fast candidates within one sample.
    """
    check_int("rounds", rounds, low=1)
    check_int("warmup", warmup, low=0)
    check_float("min_sample_s", min_sample_s, low=0.0, high=60.0)
    if not candidates:
        raise ValueError("candidates must name at least one function to time")
    do_sync = sync or _no_sync
    names = list(candidates)
    repeats: dict[str, int] = {}
    for name in names:
        for _ in range(warmup):
            candidates[name]()
        one = _sample(candidates[name], 1, do_sync)
        repeats[name] = max(1, int(min_sample_s / max(one, 1e-9)) + 1) if min_sample_s else 1
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            samples[name].append(_sample(candidates[name], repeats[name], do_sync))
    return {name: Timing(name, tuple(samples[name]), repeats[name]) for name in names}
