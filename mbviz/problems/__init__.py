"""Multi-task problems: a 2-D toy, a synthetic shared-representation model, MovieLens."""

from .base import Batch, MultiTaskProblem
from .recsys import MovieLensProblem
from .synthetic import SyntheticProblem
from .toy2d import QuadraticToy

__all__ = ["Batch", "MovieLensProblem", "MultiTaskProblem", "QuadraticToy", "SyntheticProblem"]
