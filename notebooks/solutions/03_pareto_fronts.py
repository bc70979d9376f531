"""Solution of the exercise in 03_pareto_fronts.ipynb: where MGDA-UB stops, by hand.

Run it from the repository root: ``python notebooks/solutions/03_pareto_fronts.py``.
"""

import numpy as np

from mbviz.course import check_mgda_endpoint
from mbviz.course.setups import PARETO_STARTS, pareto_path, pareto_toy

toy = pareto_toy()  # the notebook's toy and path (SIZE = 1)
start, path = PARETO_STARTS[0], pareto_path(1)

# The prediction: the min-norm point of the segment between g1 and g2 lies nearer the
# SHORTER gradient, task 1's (task 2's loss is 10x louder), so MGDA-UB leans toward task 1
# and stops at the first Pareto-stationary point on that side.
my_prediction = "c1"


def min_norm_weights(G):
    # ||w g1 + (1 - w) g2||^2 = w^2 G11 + 2 w (1 - w) G12 + (1 - w)^2 G22; its derivative
    # 2 w (G11 - 2 G12 + G22) - 2 (G22 - G12) vanishes at w = (G22 - G12) / (G11 + G22 - 2 G12),
    # and the simplex clips w to [0, 1]. Parallel equal gradients (denominator 0): any w.
    denom = G[0, 0] + G[1, 1] - 2 * G[0, 1]
    w = 0.5 if denom <= 0 else float(np.clip((G[1, 1] - G[0, 1]) / denom, 0.0, 1.0))
    return [w, 1.0 - w]


assert check_mgda_endpoint(
    min_norm_weights, my_prediction, toy=toy, start=start, **path
)
