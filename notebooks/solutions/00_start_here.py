"""Solution of the exercise in 00_start_here.ipynb: MultiBalance weights by hand.

Run it from the repository root: ``python notebooks/solutions/00_start_here.py``.
"""

from mbviz.course import check_multibalance_weights
from mbviz.course.warmup import train_warmup

bal, _ = train_warmup(steps=60, jump_at=30, batch_size=16)  # the notebook's run (SIZE = 1)

# --- the answer ---------------------------------------------------------------
relax = 0.7
m = bal.stats.ema  # EMA of the gradient magnitudes (the bias correction cancels in m_ref / m_t)
my_weights = (relax * m[0] / m + (1 - relax)).tolist()  # task 0 is the target

assert check_multibalance_weights(my_weights, bal)
