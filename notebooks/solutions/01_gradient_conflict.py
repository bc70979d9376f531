"""Solution of the exercise in 01_gradient_conflict.ipynb: a cosine similarity by hand."""

import math

from mbviz.course import check_cosine

g1 = [0.5, -1.0, 2.0]
g2 = [-1.0, 0.5, 0.25]

dot = sum(a * b for a, b in zip(g1, g2))  # -0.5 - 0.5 + 0.5 = -0.5
norm1 = math.sqrt(sum(a * a for a in g1))  # sqrt(5.25)
norm2 = math.sqrt(sum(b * b for b in g2))  # sqrt(1.3125)
my_cosine = dot / (norm1 * norm2)  # = -0.19...: a mild conflict (the gradients disagree)
print(f"cos = {my_cosine:.4f}")

assert check_cosine(my_cosine, g1, g2)
