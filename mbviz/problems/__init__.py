"""Multi-task problems: a 2-D toy, a synthetic shared-representation model, MovieLens,
and your own table (:class:`TabularProblem`)."""

from .base import Batch, MultiTaskProblem
from .recsys import MovieLensProblem
from .synthetic import SyntheticProblem
from .tabular import TabularProblem
from .toy2d import QuadraticToy

__all__ = [
    "Batch",
    "MovieLensProblem",
    "MultiTaskProblem",
    "QuadraticToy",
    "SyntheticProblem",
    "TabularProblem",
]
