"""Solution of the exercise in 04_stochastic_stability.ipynb: the EMA's noise factor."""

import numpy as np

from mbviz.course import check_ema_noise_factor

beta = 0.9
# m_t = (1 - beta) * sum_k beta^k n_(t-k). For independent n with variance sigma^2:
#   Var(m) = (1 - beta)^2 * sum_k beta^(2k) * sigma^2 = (1 - beta)^2 / (1 - beta^2) * sigma^2
#          = (1 - beta) / (1 + beta) * sigma^2
my_factor = ((1 - beta) / (1 + beta)) ** 0.5  # 0.229: about 4.4x less noise
print(f"factor = {my_factor:.4f}")

# A quick simulation agrees (independent of the derivation):
rng = np.random.default_rng(0)
n = rng.normal(1.0, 1.0, size=200_000)
m, ms = n[0], []
for x in n:
    m = beta * m + (1 - beta) * x
    ms.append(m)
print(f"simulated: {np.std(ms[1000:]):.4f}")
assert abs(np.std(ms[1000:]) - my_factor) < 0.01

assert check_ema_noise_factor(my_factor, beta=beta)
