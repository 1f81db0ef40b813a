"""The certificate shared by every max-margin solver: bounds and stopping.

For rows z_i = y_i phi(x_i) / s (features rescaled to mean norm 1) and any
coefficients a >= 0, a != 0, with w = Z^T a and Q = Z Z^T = G_y:

  lower(a) = min_i (Q a)_i / sqrt(a^T Q a)   (the margin of w over ALL
                                              examples: <= gamma*)
  upper(a) = sqrt(a^T Q a) / sum(a)          (||Z^T p|| for the simplex point
                                              p = a / sum(a): >= gamma*)

so lower(a) <= gamma* <= upper(a) (the second for separable data), and the
relative gap (upper - lower) / upper bounds how far `margin` is from the
optimum. Both are invariant to scaling a, so they can be rechecked from a
result's `dual_coef` alone (`certificate`): a = y * dual_coef (>= 0).
"""

import dataclasses
import math
import time
from typing import Callable, Optional

import numpy as np

from afterkernel import errors
from afterkernel import progress
from afterkernel.margin import checks
from afterkernel.margin import device as device_lib

DEFAULT_TOLERANCE = 1e-4
# Progress lines (when a `log` is given) at most this often.
LOG_EVERY_SECONDS = 30.0
# A simplex point with ||Z^T p|| at most this (features of mean norm 1)
# shows that no direction separates the data by more: their squared margin
# would be 1e-12, at the rounding level of float64 Gram entries. The data
# are then called (numerically) not separable.
NOT_SEPARABLE_MARGIN = 1e-6
STOP_TOLERANCE = 'tolerance'
STOP_MAX_ITERATIONS = 'max_iterations'
STOP_MAX_SECONDS = 'max_seconds'
STOP_NOT_SEPARABLE = 'not_separable'
STOP_LIBSVM = 'libsvm'
# No step makes progress in float64 ('exact', 'interior_point').
STOP_STALLED = 'stalled'

@dataclasses.dataclass
class MarginResult:
  """The outcome of a max-margin solve.

  Attributes:
    dual_coef: (n,) float64 with decision f(x) = sum_i dual_coef[i] K(x, x_i)
      for the ORIGINAL (unscaled) kernel K; equals y_i a_i / s^2 for the best
      iterate w = Z^T a.
    margin: best normalized margin min_i y_i f(x_i) / ||w|| found, in units of
      the rescaled features (average norm 1). A lower bound on the optimum.
    margin_upper_bound: best dual upper bound min_p ||Z^T p|| over the tried
      p in the simplex (same units). An upper bound on the optimum when the
      data are separable.
    feature_scale: s = mean_i ||phi(x_i)||, the rescale applied to features.
    iterations: number of updates performed: w_t -> w_{t+1} for the JST
      solvers ('working_set': summed over the full problem and all
      working-set rounds, each of which may use up to max_iterations);
      coordinate updates for 'exact'; Newton steps for 'interior_point';
      both summed for 'exact+interior_point'; libsvm's iterations for
      'sklearn'.
    converged: True iff the relative gap (upper - margin) / upper met the
      tolerance ('sklearn': iff libsvm met its own stopping rule).
    stop_reason: 'tolerance', 'max_iterations', 'max_seconds', 'stalled',
      'not_separable' (a simplex point p with ||Z^T p|| <=
      NOT_SEPARABLE_MARGIN was found: `dual_coef` is proportional to it) or
      'libsvm' ('sklearn').
    history: [(iteration, best margin, best upper bound)] at each check.
    solver: the solver name, one of `SOLVERS`, or 'exact+interior_point'
      when 'exact' switched to the interior point (`api.switch_steps`).
    seconds: wall-clock time of the solve.
    weights: 'primal' only: (P,) w in the ORIGINAL feature units, so that
      f(x) = features(x) @ weights; None for Gram-based solvers.
    intercept: the bias b of f(x) + b; 0 except for 'sklearn' (libsvm fits
      a bias, the other solvers solve the no-bias problem).
  """
  dual_coef: np.ndarray
  margin: float
  margin_upper_bound: float
  feature_scale: float
  iterations: int
  converged: bool
  stop_reason: str
  history: list
  solver: str
  seconds: float
  weights: Optional[np.ndarray] = None
  intercept: float = 0.0



def softmax_of_negative(margins: np.ndarray) -> np.ndarray:
  """softmax(-margins) in float64, stabilized by subtracting the max."""
  q = np.exp(margins.min() - margins)
  q /= q.sum()
  return q


class Progress:
  """Tracks the best iterate and bounds, and decides when to stop."""

  def __init__(self, n: int, tolerance: float, max_iterations: int,
               check_every: int, max_seconds: Optional[float],
               log: Optional[Callable[[str], None]] = None):
    self.log = log
    self.last_log = time.perf_counter()
    self.eta = progress.GapEta(tolerance)
    self.tolerance = tolerance
    self.max_iterations = max_iterations
    self.check_every = check_every
    self.max_seconds = max_seconds
    self.start = time.perf_counter()
    self.best_lower = -math.inf
    self.best_upper = math.inf
    self.best_coef = np.zeros(n)  # the a of the best-margin iterate
    self.history = []

  def observe_iterate(self, iteration: int, coef: np.ndarray,
                      margins: np.ndarray, norm: float) -> bool:
    """Records w = Z^T coef with Z w = margins and ||w|| = norm.

    Its normalized margin is a lower bound on gamma*; as coef >= 0,
    norm / |coef|_1 = ||Z^T (coef / |coef|_1)|| is an upper bound.

    Returns:
      True if this iterate has the best margin so far (the caller may then
      save more state, e.g. primal weights).
    """
    coef_sum = coef.sum()
    if not (norm > 0 and coef_sum > 0):
      return False
    self.observe_upper(norm / coef_sum)
    margin = margins.min() / norm
    if margin > self.best_lower:
      self.best_lower = float(margin)
      self.best_coef[:] = coef
      return True
    return False

  def observe_upper(self, value: float) -> None:
    """Records ||Z^T p|| for some p in the simplex (an upper bound)."""
    if value < self.best_upper:
      self.best_upper = float(value)

  def gap(self) -> float:
    if not self.best_upper > 0:
      return math.inf
    return (self.best_upper - self.best_lower) / self.best_upper

  def is_check(self, iteration: int) -> bool:
    return iteration > 0 and (iteration % self.check_every == 0 or
                              iteration >= self.max_iterations)

  def stop_reason(self, iteration: int) -> Optional[str]:
    """At a check: records history and returns why to stop, or None."""
    self.history.append((iteration, self.best_lower, self.best_upper))
    now = time.perf_counter()
    if self.log is not None and now - self.last_log >= LOG_EVERY_SECONDS:
      self.last_log = now
      self.log(f'    iteration {iteration}: margin {self.best_lower:.6g}, '
               f'upper bound {self.best_upper:.6g}, relative gap '
               f'{self.gap():.2e} (target {self.tolerance:.0e})'
               f'{self.eta.text(self.gap())}')
    if self.gap() <= self.tolerance:
      return STOP_TOLERANCE
    if iteration >= self.max_iterations:
      return STOP_MAX_ITERATIONS
    if (self.max_seconds is not None and
        time.perf_counter() - self.start >= self.max_seconds):
      return STOP_MAX_SECONDS
    return None

  def result(self, *, labels: np.ndarray, scale: float, margin: float,
             iteration: int, stop_reason: str, solver: str,
             weights: Optional[np.ndarray] = None) -> MarginResult:
    return MarginResult(
        dual_coef=labels * self.best_coef / scale**2,
        margin=float(margin),
        margin_upper_bound=self.best_upper,
        feature_scale=float(scale),
        iterations=iteration,
        converged=stop_reason == STOP_TOLERANCE,
        stop_reason=stop_reason,
        history=self.history,
        solver=solver,
        seconds=time.perf_counter() - self.start,
        weights=weights)


def relative_gap(lower: float, upper: float) -> float:
  """(upper - lower) / upper of two bounds; inf without a finite positive
  upper bound or any lower bound (nothing certified)."""
  if not (upper > 0 and math.isfinite(upper) and lower > -math.inf):
    return math.inf
  return (upper - lower) / upper


def bounds(gram_y_coef: np.ndarray, coef: np.ndarray) -> tuple:
  """(lower, upper) of the module docstring from a >= 0 and Q a.

  Args:
    gram_y_coef: (n,) Q a.
    coef: (n,) a >= 0.

  Returns:
    (lower, upper); (-inf, inf) when a = 0, (-inf, 0) when a^T Q a <= 0.
  """
  norm_sq = float(coef @ gram_y_coef)
  total = float(coef.sum())
  if not total > 0:
    return -math.inf, math.inf
  if not norm_sq > 0:
    # Z^T a = 0: p = a / sum(a) shows gamma* <= 0, and w = 0 has no margin.
    return -math.inf, 0.0
  norm = math.sqrt(norm_sq)
  return float(gram_y_coef.min()) / norm, norm / total


def scaled_coefficients(result: MarginResult, signs: np.ndarray,
                        scale: float, name: str = 'result') -> np.ndarray:
  """The a >= 0 (features rescaled by `scale`) of a no-bias `result` on
  the problem with labels `signs` (+-1), inverting dual_coef = y a / s^2.

  Raises:
    AfterKernelError: a result with a bias, of another size or non-finite,
      or fitted on a Gram of another scale (the message says `name`).
  """
  coef = np.asarray(result.dual_coef, dtype=np.float64)
  errors.require(
      coef.shape == signs.shape and np.all(np.isfinite(coef)),
      f'{name} must be a finite result on these {len(signs)} examples, '
      f'got dual_coef of shape {coef.shape}')
  errors.require(not result.intercept,
                 f'{name} must be a no-bias result (not sklearn\'s)')
  errors.require(
      math.isclose(result.feature_scale, scale, rel_tol=1e-6),
      f'{name} is a result on another Gram (feature scale '
      f'{result.feature_scale:.6g}, this one {scale:.6g})')
  # Rounding may leave tiny negative entries on examples of the other sign.
  return np.maximum(signs * coef * scale**2, 0.0)


def certificate(gram: np.ndarray, labels: np.ndarray,
                dual_coef: np.ndarray, device: str = 'cpu') -> tuple:
  """Rechecks a result's bounds from its `dual_coef` alone.

  With a = y * dual_coef and Q = diag(y) K diag(y) / s^2,
  s = mean_i sqrt(K_ii): lower = min_i (Q a)_i / sqrt(a^T Q a) is the
  normalized margin of f(x) = sum_i dual_coef_i K(x, x_i) over all
  examples, and upper = sqrt(a^T Q a) / sum(a) bounds the optimal margin
  from above (separable data). Units: features rescaled to mean norm 1, as
  `MarginResult.margin`.

  Args:
    gram: (n, n) kernel matrix K the result was fitted on.
    labels: (n,) in {0, 1} or {-1, +1}.
    dual_coef: (n,) `MarginResult.dual_coef`.
    device: where K dual_coef is computed (`device.DEVICES`; default the
      host, float64 numpy).

  Returns:
    (lower, upper, relative gap (upper - lower) / upper).

  Raises:
    AfterKernelError: shapes disagree, or y * dual_coef has a negative
      entry (then it is not a certificate of this problem).
  """
  gram = np.asarray(gram, dtype=np.float64)
  dual_coef = np.asarray(dual_coef, dtype=np.float64)
  n = dual_coef.shape[0]
  errors.require(gram.shape == (n, n),
                 f'gram must be ({n}, {n}) for {n} coefficients, got '
                 f'{gram.shape}')
  signs = checks.signed_labels(labels, n, 'labels', need_two_classes=False)
  coef = signs * dual_coef
  errors.require(coef.min() >= 0,
                 f'y * dual_coef has {int(np.sum(coef < 0))} negative entries:'
                 ' not a certificate of the no-bias hard-margin problem')
  scale_sq = float(np.mean(np.sqrt(np.diagonal(gram))))**2
  # Q a = y * (K (y * a)) / s^2 = y * (K dual_coef) / s^2.
  product = device_lib.gram_matvec(gram, device_lib.resolve_device(device),
                                   lambda v: gram @ v)(dual_coef)
  lower, upper = bounds(signs * product / scale_sq, coef)
  gap = (upper - lower) / upper if upper > 0 else math.inf
  return lower, upper, gap
