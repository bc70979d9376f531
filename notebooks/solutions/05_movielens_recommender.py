"""Solution of the exercise in 05_movielens_recommender.ipynb: Δm% against equal weighting."""

from mbviz import runner
from mbviz.course import check_delta_m
from mbviz.data.movielens import load_movielens
from mbviz.metrics import HIGHER_IS_BETTER, PRIMARY_METRIC
from mbviz.problems import MovieLensProblem

# The notebook's runs, shortened: the formula is what matters here.
problem = MovieLensProblem(load_movielens(max_users=150))
config = runner.RunConfig(steps=30, batch_size=512, progress=False)
equal_metrics = runner.train(problem, config, rule="equal").primary("test")
balanced_metrics = runner.train(problem, config, rule="multibalance").primary("test")
primary = {t: PRIMARY_METRIC[k] for t, k in zip(problem.task_names, problem.task_kinds)}
higher_is_better = {t: HIGHER_IS_BETTER[m] for t, m in primary.items()}

# --- the answer ---------------------------------------------------------------
terms = []
for task, base in equal_metrics.items():
    change = (balanced_metrics[task] - base) / base
    terms.append(change if higher_is_better[task] else -change)  # RMSE: lower is better
my_delta_m = 100 * sum(terms) / len(terms)
print(f"Δm% of MultiBalance against equal weighting: {my_delta_m:+.3f}")

assert check_delta_m(
    my_delta_m, method=balanced_metrics, baseline=equal_metrics, higher_is_better=higher_is_better
)
