"""Solution of the exercise in 02_multibalance_step_by_step.ipynb: weights with reference="mean"."""

import torch

import mbkernels as mbk
from mbviz.course import check_multibalance_weights
from mbviz.problems import SyntheticProblem

# The notebook's setting: the same problem, model and five batches.
problem = SyntheticProblem(num_tasks=3, angle=120.0, scale_ratio=100.0, noise=0.5, rep_dim=4)
torch.manual_seed(0)
model = problem.make_model("mlp")
bal_mean = mbk.MultiBalance(num_tasks=3, beta=0.9, relax=0.5, reference="mean")
for seed in range(5):
    b = problem.sample_batch(128, torch.Generator().manual_seed(seed))
    z = model.representation(*b.inputs)
    outs = [tower(z_t).squeeze(-1) for tower, z_t in zip(model.towers, bal_mean(z))]
    sum(problem.task_losses(outs, b)).backward()

# --- the answer ---------------------------------------------------------------
relax = 0.5
m = bal_mean.stats.ema  # the bias correction divides every m_t alike: it cancels in the ratio
m_ref = m.mean()  # reference="mean"
my_weights = (relax * m_ref / m + (1 - relax)).tolist()
print("weights:", my_weights)

assert check_multibalance_weights(my_weights, bal_mean)
