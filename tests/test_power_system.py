"""The Newton solver of ``G w = w^(-p)`` (mbkernels.rules._power_system) on its own: its
iteration count, which the cost stated in docs/rules.md rests on."""

from __future__ import annotations

import numpy as np

from mbkernels.rules._power_system import solve_scaled


def test_solver_iterations_are_few() -> None:
    """Newton's method stops within a few iterations on solvable systems (the cost the docs
    state), also with six orders of magnitude between the tasks' norms; with twelve, the
    equations still hold to 1e-6."""
    rng = np.random.default_rng(1)
    for t in (2, 8, 32):
        for spread, tol in ((0.0, 1e-9), (1.5, 1e-9), (3.0, 1e-6)):
            m = rng.standard_normal((t, 64)) * np.logspace(-spread, spread, t)[:, None]
            g = m @ m.T
            g = g / g.diagonal().mean()
            for p in (0.5, 1.0, 2.0):
                v, iterations = solve_scaled(g, p)
                assert iterations <= 20
                np.testing.assert_allclose((g @ v) * v**p, 1.0, rtol=0, atol=tol)
