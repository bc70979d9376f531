"""Plotly figures; every function returns a ``go.Figure`` with titled axes."""

from .combination import gradient_combination, two_gradients
from .cosine import cosine_heatmap
from .curves import learning_curves
from .magnitudes import magnitudes_and_weights
from .pareto import nondominated, pareto_front
from .stability import stability_traces, variance_heatmap
from .study import paired_bars, sparse_tasks, study_curves, tuning_curve
from .throughput import fixed_cost, throughput_bars, throughput_ratios
from .traffic import traffic_bars
from .trajectories import toy_trajectories

__all__ = [
    "cosine_heatmap",
    "fixed_cost",
    "gradient_combination",
    "learning_curves",
    "magnitudes_and_weights",
    "nondominated",
    "paired_bars",
    "pareto_front",
    "sparse_tasks",
    "stability_traces",
    "study_curves",
    "throughput_bars",
    "throughput_ratios",
    "toy_trajectories",
    "traffic_bars",
    "tuning_curve",
    "two_gradients",
    "variance_heatmap",
]
