"""Solution of the exercise in 08_does_it_pay.ipynb: the sign test by hand."""

import math

from mbviz.course import check_sign_test
from mbviz.study import load_results

imb_runs = load_results("imbalance", "movielens")
at_k3 = imb_runs[imb_runs["value"] == 3.0]
by_seed = at_k3.pivot(index="seed", columns="method", values="delta_m")
differences = (by_seed["multibalance"] - by_seed["equal"]).tolist()

nonzero = [d for d in differences if d == d and d != 0.0]  # ties (and gaps) carry no sign
n, wins = len(nonzero), sum(d > 0 for d in nonzero)
extreme = min(wins, n - wins)  # counts at least this far from n/2, on either side
tail = sum(math.comb(n, i) for i in range(extreme + 1)) / 2**n
my_p = min(1.0, 2 * tail)
print(f"MultiBalance wins {wins} of {n} seeds: two-sided sign-test p = {my_p:.4f}")

assert check_sign_test(my_p, differences=differences)
