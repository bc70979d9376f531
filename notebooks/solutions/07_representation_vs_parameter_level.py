"""Solution of the exercise in 07_representation_vs_parameter_level.ipynb: a cost model."""

from mbviz.course import check_throughput_ratio

T, b = 4, 2.0
plain_sum = 1 + b  # one forward, one backward per step
parameter_level = 1 + T * b  # one forward, T backward passes
my_ratio = plain_sum / parameter_level  # throughput = 1 / time per step
print(f"parameter level runs at {my_ratio:.3f}x the plain sum ({1 - my_ratio:.0%} loss)")
# 3 / 9 = 0.333: a 67% throughput loss at T = 4; the paper's 70-80% is this regime.

assert check_throughput_ratio(my_ratio, num_tasks=T, backward_over_forward=b)
