"""Solution of the exercise in 00_start_here.ipynb: MultiBalance weights by hand.

Run it from the repository root: ``python notebooks/solutions/00_start_here.py``.
"""

import torch
from torch import nn

import mbkernels as mbk
from mbviz.course import check_multibalance_weights

# The same tiny loop as in the notebook (three tasks, loss scales 1, 10, 100).
torch.manual_seed(0)
bottom = nn.Sequential(nn.Linear(16, 8), nn.Tanh())
towers = nn.ModuleList(nn.Linear(8, 1) for _ in range(3))
bal = mbk.MultiBalance(num_tasks=3, beta=0.9, relax=0.7, reference="target", target=0)
for _ in range(30):
    x, y = torch.randn(64, 16), torch.randn(64, 3)
    zs = bal(bottom(x))
    losses = [
        s * nn.functional.mse_loss(t(z).squeeze(-1), y[:, i])
        for i, (s, t, z) in enumerate(zip([1.0, 10.0, 100.0], towers, zs))
    ]
    sum(losses).backward()

# --- the answer ---------------------------------------------------------------
relax = 0.7
m = bal.stats.ema  # EMA of the gradient magnitudes (the bias correction cancels in m_ref / m_t)
my_weights = (relax * m[0] / m + (1 - relax)).tolist()

assert check_multibalance_weights(my_weights, bal)
