"""Which test predictions a max-margin certificate pins down.

A solver returns a classifier w (from `dual_coef` or `weights`) with a
certified normalized margin gamma <= gamma* <= U (`margin`,
`margin_upper_bound`). The test error users quote is that of the
maximum-margin classifier w*, but it is measured with w. How far apart can
they be? Scale w to min_i y_i <w, phi_i> = 1 (feasible for the hard-margin
primal min 1/2 ||v||^2 s.t. y_i <v, phi_i> >= 1): ||w|| = 1/gamma, while
||w*|| = 1/gamma* >= 1/U. Optimality of w* over the convex feasible set
gives <w*, w - w*> >= 0, hence

  ||w - w*||^2 <= ||w||^2 - ||w*||^2 <= 1/gamma^2 - 1/U^2,

(units of the rescaled features; the ratios below are unit-free). For a
test point x, sign <w*, x> = sign <w, x> whenever

  |<w, x>| / (||w|| ||x||) > sqrt(1 - (gamma / U)^2)  (~ sqrt(2 gap)).

So the max-margin classifier's test error lies in [lower, upper]: lower
counts the test points w misclassifies with a cosine above that radius,
upper adds every point below it. At the default relative gap 1e-4 the
radius is ~0.014; kernels whose certified margins are ~1e-3 of the feature
norms (CIFAR-10 at full data) have many test points inside it, so two
certified solves of one Gram can score differently by whole points
(RESULTS.md). Tighten `tolerance` to narrow the interval. The interval
covers the solver's slack on the Gram it was given, not the rounding of
the Gram itself (float32 features).
"""

from typing import Optional, Tuple

import numpy as np

from afterkernel import errors
from afterkernel.margin.certificate import MarginResult


def prediction_radius(result: MarginResult) -> Optional[float]:
  """sqrt(1 - (margin / upper)^2): the cosine below which a prediction of
  `result`'s classifier may differ from the max-margin classifier's.

  Args:
    result: a solve with a positive margin and a finite upper bound.

  Returns:
    The radius in [0, 1], or None when the certificate bounds nothing
    (not separable, no positive margin, no finite upper bound, or a
    classifier with a bias).
  """
  lower, upper = float(result.margin), float(result.margin_upper_bound)
  if (result.intercept or not np.isfinite(upper) or not lower > 0 or
      upper < lower):
    return None
  return float(np.sqrt(max(0.0, 1.0 - (lower / upper)**2)))


def gram_weight_norm(result: MarginResult,
                     train_gram: np.ndarray,
                     block_rows: int = 2048) -> float:
  """||w|| = sqrt(a^T K a) of f(x) = sum_i a_i K(x, x_i) (a = dual_coef),
  in the kernel's original units, accumulated in float64 by row blocks (a
  float32 Gram is not copied whole)."""
  coef = np.asarray(result.dual_coef, dtype=np.float64)
  errors.require(
      train_gram.shape == (coef.size, coef.size),
      f'train_gram must be ({coef.size}, {coef.size}) for these dual '
      f'coefficients, got shape {train_gram.shape}')
  total = 0.0
  for start in range(0, coef.size, block_rows):
    rows = np.asarray(train_gram[start:start + block_rows], dtype=np.float64)
    total += float(coef[start:start + block_rows] @ (rows @ coef))
  return float(np.sqrt(max(total, 0.0)))


def certified_error_bounds(result: MarginResult,
                           decisions: np.ndarray,
                           weight_norm: float,
                           test_norms: np.ndarray,
                           labels: np.ndarray
                           ) -> Tuple[Optional[float], Optional[float]]:
  """Bounds on the max-margin classifier's test error (module docstring).

  Args:
    result: the solve whose classifier gave `decisions`.
    decisions: (m,) f(x) = <w, phi(x)> on the test points.
    weight_norm: ||w|| in the same units as `decisions` (e.g.
      `gram_weight_norm`, or the norm of `result.weights`).
    test_norms: (m,) ||phi(x)||, same units.
    labels: (m,) test labels, {0, 1} or +-1.

  Returns:
    (lower, upper), fractions of the test set; (None, None) when
    `prediction_radius` is None.

  Raises:
    AfterKernelError: mismatched shapes or a non-finite norm.
  """
  decisions = np.asarray(decisions, dtype=np.float64).ravel()
  test_norms = np.asarray(test_norms, dtype=np.float64).ravel()
  labels = np.asarray(labels).ravel()
  errors.require(
      decisions.shape == test_norms.shape == labels.shape,
      f'decisions, test_norms and labels must have one entry per test '
      f'point, got {decisions.shape}, {test_norms.shape}, {labels.shape}')
  errors.require(
      np.isfinite(weight_norm) and np.all(np.isfinite(test_norms)),
      'weight_norm and test_norms must be finite')
  radius = prediction_radius(result)
  if radius is None or decisions.size == 0:
    return None, None
  # Zero-norm points get decision 0 from every classifier: never uncertain.
  uncertain = ((np.abs(decisions) <= radius * weight_norm * test_norms) &
               (test_norms > 0))
  wrong = (decisions > 0) != (labels > 0.5)
  lower = float(np.mean(wrong & ~uncertain))
  return lower, lower + float(np.mean(uncertain))
