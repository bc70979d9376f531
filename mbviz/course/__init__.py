"""Course-specific helpers: exercise self-checks and the notebook map.

The notebooks import from here (and from the rest of :mod:`mbviz`); they never
carry copies of library code. ``checks`` holds one function per exercise: it
prints a verdict with a hint and returns ``True``/``False``, never raises, so a
notebook with an unanswered exercise still runs top to bottom under nbval.
"""

from .checks import (
    check_cosine,
    check_delta_m,
    check_ema_noise_factor,
    check_fork_step,
    check_mgda_endpoint,
    check_multibalance_rule,
    check_multibalance_weights,
    check_sign_test,
    check_throughput_ratio,
    check_weighted_sum_kernel,
)
from .syllabus import NOTEBOOKS, course_map

__all__ = [
    "NOTEBOOKS",
    "check_cosine",
    "check_delta_m",
    "check_ema_noise_factor",
    "check_fork_step",
    "check_mgda_endpoint",
    "check_multibalance_rule",
    "check_multibalance_weights",
    "check_sign_test",
    "check_throughput_ratio",
    "check_weighted_sum_kernel",
    "course_map",
]
