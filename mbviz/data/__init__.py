"""Datasets for the course, built offline from packages (no network)."""

from .movielens import MovieLensTasks, load_movielens

__all__ = ["MovieLensTasks", "load_movielens"]
