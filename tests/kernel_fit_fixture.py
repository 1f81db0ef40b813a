"""A random kernel problem with explicit features, for the kernel_fit tests.

Random features phi, labels from a noisy linear rule; a test computes the
Grams phi phi^T itself, so every fit can be checked against the primal.
"""

import numpy as np


def random_problem(seed=0, n=30, m=25, width=12):
  """Random features, labels from a noisy linear rule, and their Grams."""
  rng = np.random.default_rng(seed)
  phi = rng.standard_normal((n, width))
  phi_test = rng.standard_normal((m, width))
  direction = rng.standard_normal(width)
  y = np.where(phi @ direction + 0.5 * rng.standard_normal(n) > 0, 1.0, -1.0)
  y_test = np.where(phi_test @ direction > 0, 1.0, -1.0)
  return phi, y, phi_test, y_test
