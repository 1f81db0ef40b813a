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
(RESULTS.md). Tighten `tolerance` to narrow the interval: `tighten` does
so round by round (each round warm-started from the last) until the
interval is a single value or a floor tolerance is reached. The interval
covers the solver's slack on the Gram it was given, not the rounding of
the Gram itself (float32 features).
"""

import dataclasses
import warnings
from typing import Callable, Optional, Tuple

import numpy as np

from afterkernel import errors
from afterkernel.margin import api
from afterkernel.margin.certificate import relative_gap
from afterkernel.margin.certificate import MarginResult

# Each tightening round divides the tolerance by this.
TIGHTEN_FACTOR = 100.0
# The smallest relative gap `tighten` asks for by default: the radius is
# then ~1.4e-5, and float64 certificates of Grams with margins >= 1e-4 of
# the feature norms still resolve such gaps (RESULTS.md, "How far a
# certified SVM error is pinned down").
DEFAULT_MIN_TOLERANCE = 1e-10

Bounds = Tuple[Optional[float], Optional[float]]


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


def tighten(solve: Callable[[float, Optional[MarginResult], Optional[float]],
                            MarginResult],
            error_bounds: Callable[[MarginResult], Bounds],
            tolerance: float,
            min_tolerance: Optional[float] = DEFAULT_MIN_TOLERANCE,
            log: Optional[Callable[[str], None]] = None,
            max_seconds: Optional[float] = None
            ) -> Tuple[MarginResult, Bounds, int]:
  """Solves, then re-solves tighter until the error bounds meet.

  Round 0 solves at `tolerance`; while the certified interval of the test
  error is not a single value and the last solve converged, the next round
  solves at tolerance / TIGHTEN_FACTOR (not below `min_tolerance`), warm
  started from the last result, except after an interior-point result
  (`api.INTERIOR_SOLVERS`), which goes straight to `min_tolerance`: its warm
  start is weak, so every round costs about a whole solve, and its last
  digits cost only a few Newton steps (BENCHMARKS.md, section 10). A
  tighter round that does not reach its own target (budget, time limit,
  float64's floor) ends the loop; it is kept, marked converged, if its
  certified gap is smaller than the last result's (so it certifies the
  caller's tolerance too), else dropped.

  Args:
    solve: (tolerance, previous result or None, max_seconds or None) -> a
      new result.
    error_bounds: result -> (lower, upper) test error bounds, (None, None)
      when the certificate bounds nothing (e.g. `certified_error_bounds`).
    tolerance: the first round's relative gap.
    min_tolerance: the smallest gap to ask for; None (or >= tolerance)
      never tightens.
    log: optional progress printer.
    max_seconds: optional solver time of all rounds together: each round
      gets what the earlier rounds' `seconds` left (at least 1 ms).

  Returns:
    (result, (lower, upper), total solver iterations over the rounds).
  """
  errors.require(min_tolerance is None or min_tolerance > 0,
                 f'min_tolerance must be > 0 or None, got {min_tolerance}')
  result = solve(tolerance, None, max_seconds)
  bounds = error_bounds(result)
  iterations, seconds = result.iterations, result.seconds
  while (min_tolerance is not None and tolerance > min_tolerance and
         result.converged and bounds[0] is not None and
         bounds[1] > bounds[0]):
    tolerance = (min_tolerance if result.solver in api.INTERIOR_SOLVERS else
                 max(tolerance / TIGHTEN_FACTOR, min_tolerance))
    if log is not None:
      log(f'    test error not pinned down ([{bounds[0]:.4g}, '
          f'{bounds[1]:.4g}]): solving again to a relative gap of '
          f'{tolerance:.0e}')
    with warnings.catch_warnings():
      # An unconverged tighter round is discarded below, not reported.
      warnings.simplefilter('ignore', api.UnconvergedWarning)
      candidate = solve(tolerance, result, None if max_seconds is None else
                        max(max_seconds - seconds, 1e-3))
    iterations += candidate.iterations
    seconds += candidate.seconds
    if not candidate.converged:
      # Missed its own target (budget, time limit, float64's floor). Its
      # certificate is still exact: keep it if it is the better one (it
      # then certifies the caller's tolerance too, hence converged).
      improved = (relative_gap(candidate.margin,
                               candidate.margin_upper_bound) <
                  relative_gap(result.margin, result.margin_upper_bound))
      if log is not None:
        log(f'    tighter solve stopped unconverged '
            f'({candidate.stop_reason}); keeping the '
            f'{"tighter" if improved else "earlier"} result')
      if improved:
        result = dataclasses.replace(candidate, converged=True)
        bounds = error_bounds(result)
      break
    result, bounds = candidate, error_bounds(candidate)
  return result, bounds, iterations
