"""Solution of the exercise in 03_pareto_fronts.ipynb: a Pareto point of round bowls."""

import numpy as np

from mbviz.course import check_pareto_point
from mbviz.problems import QuadraticToy

round_toy = QuadraticToy(scale_ratio=4.0, condition=1.0)
lam = 0.25

# With A_1 = A_2 = I, the gradient of lam f_1 + (1 - lam) f_2 is
#   lam s_1 (x - c_1) + (1 - lam) s_2 (x - c_2) = 0,
# so x* is the average of the centres weighted by lam s_1 and (1 - lam) s_2.
a = lam * round_toy.scales[0]
b = (1 - lam) * round_toy.scales[1]
my_point = ((a * round_toy.centers[0] + b * round_toy.centers[1]) / (a + b)).tolist()
print("Pareto point:", my_point)
assert np.allclose(my_point, round_toy.pareto_point(lam))  # the toy's own closed form agrees

assert check_pareto_point(
    my_point,
    lam=lam,
    scales=round_toy.scales,
    centers=round_toy.centers,
    curvatures=round_toy.curvatures,
)
