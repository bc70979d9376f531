"""Solution of the exercise in 09_your_own_model.ipynb: the fork in an MMoE training step."""

import torch
from torch import nn

from mbviz.course import check_fork_step
from mbviz.problems import SyntheticProblem

# The notebook's setting: its data, masked losses and dense MMoE.
problem = SyntheticProblem(num_tasks=3, angle=90.0, scale_ratio=30.0, noise=0.5, rep_dim=2)
LOSS_SCALES = problem.loss_scales
LABELLED = torch.tensor([1.0, 1.0, 0.1])


def get_batch(step, batch_size=64):
    gen = torch.Generator().manual_seed(step)
    b = problem.sample_batch(batch_size, gen)
    mask = torch.rand(b.targets.shape, generator=gen) < LABELLED
    return b.inputs[0], b.targets, mask


def task_losses(preds, y, mask):
    losses = []
    for t, (pred, scale) in enumerate(zip(preds, LOSS_SCALES)):
        m = mask[:, t].float()
        losses.append(scale * ((pred - y[:, t]) ** 2 * m).sum() / m.sum().clamp_min(1.0))
    return losses


class DenseMMoE(nn.Module):
    def __init__(self, in_dim=8, num_experts=3, expert_dim=8, num_tasks=3):
        super().__init__()
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(in_dim, expert_dim), nn.ReLU()) for _ in range(num_experts)
        )
        self.gates = nn.ModuleList(nn.Linear(in_dim, num_experts) for _ in range(num_tasks))
        self.towers = nn.ModuleList(nn.Linear(expert_dim, 1) for _ in range(num_tasks))


exercise_batch = get_batch(10_000, batch_size=128)


# --- the answer ---------------------------------------------------------------
def my_step(model, bal, optimizer, batch):
    x, y, mask = batch
    experts = torch.stack([e(x) for e in model.experts], dim=1)  # E: [B, K, D], shared
    views = bal(experts)  # the fork on E: one view per task
    preds = []
    for gate, tower, e_t in zip(model.gates, model.towers, views):
        g = torch.softmax(gate(x), dim=-1)
        h = torch.einsum("bk,bkd->bd", g, e_t)  # task t mixes ITS view of E
        preds.append(tower(h).squeeze(-1))
    losses = task_losses(preds, y, mask)
    optimizer.zero_grad()
    sum(losses).backward()  # one backward: E receives sum_t w_t dL_t/dE
    optimizer.step()
    return losses


assert check_fork_step(my_step, make_model=DenseMMoE, batch=exercise_batch, num_tasks=3)
