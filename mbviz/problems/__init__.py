"""Multi-task problems: a 2-D toy, a synthetic shared-representation model, MovieLens,
your own table (:class:`TabularProblem`), and a wrapper that rescales any problem's
training losses (:class:`ScaledLossProblem`)."""

from .base import Batch, MultiTaskProblem
from .recsys import MovieLensProblem
from .scaled import ScaledLossProblem, scale_task_loss
from .synthetic import SyntheticProblem
from .tabular import TabularProblem
from .toy2d import QuadraticToy

__all__ = [
    "Batch",
    "MovieLensProblem",
    "MultiTaskProblem",
    "QuadraticToy",
    "ScaledLossProblem",
    "SyntheticProblem",
    "TabularProblem",
    "scale_task_loss",
]
