"""The validators under the name :mod:`mbkernels.bench` imports them by; the one
implementation is :mod:`mbkernels.validation`."""

from .validation import check_choice, check_float, check_int

__all__ = ["check_choice", "check_float", "check_int"]
