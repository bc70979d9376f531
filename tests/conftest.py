"""Test configuration.

Triton kernels run through the CPU interpreter unless MBK_TRITON_COMPILED=1
(on a CUDA machine). The interpreter must be switched on before triton is
first imported, hence at the top of this file.
"""

from __future__ import annotations

import os

COMPILED = os.environ.get("MBK_TRITON_COMPILED") == "1"
if not COMPILED:
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from mbkernels.ops import triton_available  # noqa: E402

#: Device on which Triton kernels are tested.
KERNEL_DEVICE = torch.device("cuda" if COMPILED else "cpu")

requires_triton = pytest.mark.skipif(not triton_available(), reason="triton is not installed")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
