"""Solution of the exercise in 02_multibalance_step_by_step.ipynb: MultiBalance as a rule.

Run it from the repository root: ``python notebooks/solutions/02_multibalance_step_by_step.py``.
"""

import torch

import mbkernels as mbk
from mbviz.course import check_multibalance_rule


class MyMultiBalance(mbk.rules.Rule):
    """MultiBalance with a target task, from the formulas at the top of notebook 02."""

    name = "my_multibalance"
    uses_cross_terms = False  # reads only the Gram diagonal

    def __init__(self, num_tasks, beta=0.9, relax=0.7, target=0, eps=1e-8):
        super().__init__(num_tasks)
        self.beta, self.relax, self.target, self.eps = beta, relax, target, eps

    def init_state(self, device=None):
        return {"ema": torch.zeros(self.num_tasks, device=device)}

    def weights(self, gram, state, step):
        norms = gram.diagonal().clamp_min(0).sqrt()  # ||g_t|| from the Gram diagonal
        # --- the answer -------------------------------------------------------
        ema = self.beta * state["ema"].to(norms.dtype) + (1 - self.beta) * norms
        m = ema / (1 - self.beta ** step.to(ema.dtype))  # bias correction (cancels in the ratio)
        weights = self.relax * m[self.target] / (m + self.eps) + (1 - self.relax)
        return weights, {"ema": ema.to(state["ema"].dtype)}


assert check_multibalance_rule(MyMultiBalance)

# It is a rule like the library's: any balancer can run it.
bal = mbk.Balancer(MyMultiBalance(3))
z = torch.randn(8, 4, requires_grad=True)
sum((s * z_t).square().mean() for s, z_t in zip((1.0, 10.0, 100.0), bal(z))).backward()
print("weights after one step:", bal.stats.weights.tolist())
