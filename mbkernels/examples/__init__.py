"""Runnable examples: ``python -m mbkernels.examples.<name>``."""
