"""The interior-point max-margin solver: Mehrotra on the simplex problem.

Coordinate descent ('exact') needs more steps the smaller and the worse
conditioned the margin is; on barely separable Grams (CIFAR-10 cats vs dogs,
VGG-like FNTK: gamma* ~ 1e-3, n = 10^4) it does not certify in 10^7 steps.
A primal-dual interior-point method takes a number of Newton steps that
hardly depends on the conditioning (10-17 here), each a dense Cholesky
factorization. It solves the bounded, always feasible simplex form

  min_p  1/2 p^T Q p   s.t.  p >= 0,  1^T p = 1,   Q = diag(y) K diag(y) / s^2,

whose value is gamma*^2 / 2 when the data are separable and 0 when they are
not (no unbounded dual, unlike min_{a >= 0} 1/2 a^T Q a - 1^T a). With
multiplier nu of 1^T p = 1 and slacks t = Q p - nu 1 >= 0, the KKT system
is Q p - nu 1 - t = 0, 1^T p = 1, p_i t_i = 0; Mehrotra's predictor-
corrector follows the central path p_i t_i = mu -> 0. Each step solves

  (Q + D) dp - dnu 1 = r,   1^T dp = r_1,   D = diag(t / p),

by one Cholesky factorization of Q + D (n^3 / 3 flops, `_DenseSystem`)
and a rank-one Schur complement for dnu; when the problem comes as features
Z (n x P, P < n; e.g. conjugate kernels) by Woodbury on the P x P matrix
I + Z^T D^-1 Z (n P^2 flops, `_FeatureSystem`).

Certificate: every iterate p > 0 is a point of the simplex, so the bounds of
`certificate.bounds` hold for a = p: lower = min_i (Q p)_i / sqrt(p^T Q p),
upper = sqrt(p^T Q p). They are evaluated on p and on its support (p_i >
t_i, the examples the path marks as support vectors; often tighter), and
the run stops when the better relative gap meets the tolerance. The result's
`dual_coef` is y * a / s^2 as for every solver, so `certificate.certificate`
recomputes the bounds from it alone. Not separable: the run stops with
'not_separable' once upper(p) <= NOT_SEPARABLE_MARGIN (p is the evidence),
the criterion 'exact' uses.

Memory: the Gram route holds Q and the factor as two float64 n x n arrays
(16 n^2 bytes, 1.6 GB at n = 10^4); `require_dense_memory` refuses problems
above `max_dense_gib` with an error naming n and the GiB needed.

Device (`device.DEVICES`, default 'cpu'): on a TensorFlow device the same
algorithm keeps Q (or Z), the factors and all products there, float64
(`device.cholesky_solver`, `device.woodbury_solver`); the host then holds
only n-vectors. A factorization holds Q, Q + D and the factor (three n x n
arrays) on the device. Failed factorizations raise LinAlgError on both
paths, so the regularization retry is the same.
"""

import math
import time
from typing import Callable, Optional

import numpy as np
import scipy.linalg

from afterkernel import errors
from afterkernel import progress
from afterkernel.margin import certificate
from afterkernel.margin import device as device_lib

SOLVER = 'interior_point'
# Newton steps; Mehrotra needed 10-17 on the Grams of BENCHMARKS.md, sec. 9.
DEFAULT_MAX_ITERATIONS = 200
# The two float64 n x n arrays of the Gram route may use at most this much
# (n ~ 27,000 at 10 GiB). Above it, `require_dense_memory` raises.
DEFAULT_MAX_DENSE_GIB = 10.0
# Fraction of the step to the boundary taken (keeps the iterate interior).
STEP_FRACTION = 0.99
# Diagonal added to Q + D, relative to mean(diag Q) = O(1): keeps the
# factorization of a rank-deficient Q (conjugate kernels, float32 rounding)
# defined; multiplied by REGULARIZATION_GROWTH when a factorization fails.
REGULARIZATION = 1e-12
REGULARIZATION_GROWTH = 100.0
MAX_REGULARIZATION = 1e-4
# Stop as stalled when the step length falls below this.
MIN_STEP = 1e-12
# Stop as stalled when the certified gap, once below STALL_BELOW_GAP, has
# not shrunk by STALL_FACTOR within STALL_STEPS Newton steps. (Earlier,
# while the margin is negative or the gap large, the best gap can sit flat
# for 8+ steps and recover: the rule is off there.) Rounding in Q p limits
# the gap float64 can certify (about 1e-16 n^0.5 / margin^2 relative: ~1e-8 on
# CIFAR-10 kernels whose margins are ~1e-3 of the feature norms); without
# this a smaller tolerance spends up to the whole budget of dense
# factorizations (~5.5 s each at n = 10^4; BENCHMARKS.md, section 10).
STALL_STEPS = 8
STALL_FACTOR = 0.5
STALL_BELOW_GAP = 1e-6
# Cap of the barrier's diagonal t_i / p_i (Q is O(1)).
MAX_BARRIER = 1e30


def dense_gib(n: int) -> float:
  """GiB the Gram route needs: Q and its factor, float64 n x n each."""
  return 2 * 8 * n * n / 2**30


def require_dense_memory(n: int, max_dense_gib: float) -> None:
  """Raises unless the dense Gram route of n examples fits `max_dense_gib`."""
  errors.require(
      dense_gib(n) <= max_dense_gib,
      f'the interior-point solver on {n} examples needs {dense_gib(n):.1f} '
      f'GiB for two float64 {n} x {n} matrices, above its limit of '
      f'{max_dense_gib:g} GiB; use solver \'exact\' (coordinate descent, no '
      'n x n copy) or raise max_dense_gib')


class _DenseSystem:
  """Q as a float64 n x n array; Newton systems by dense Cholesky."""

  def __init__(self, gram: np.ndarray, signs: np.ndarray,
               inv_scale_sq: float):
    self.q = np.multiply(gram, inv_scale_sq, dtype=np.float64)
    self.q *= signs[:, None]
    self.q *= signs[None, :]
    if not self.q.flags.f_contiguous:
      self.q = self.q.T  # Q is symmetric: the same matrix, Fortran-ordered
    # Fortran order lets LAPACK factor in place (no third n x n array).
    self.work = np.empty_like(self.q, order='F')

  def matvec(self, vector: np.ndarray) -> np.ndarray:
    return self.q @ vector

  def factor(self, diagonal: np.ndarray) -> Callable[[np.ndarray],
                                                      np.ndarray]:
    """v -> (Q + diag(diagonal))^-1 v; raises LinAlgError if not PD."""
    np.copyto(self.work, self.q)
    self.work.flat[::len(diagonal) + 1] += diagonal
    factor = scipy.linalg.cho_factor(self.work, lower=True, overwrite_a=True,
                                     check_finite=False)
    return lambda v: scipy.linalg.cho_solve(factor, v, check_finite=False)


class _DeviceDenseSystem:
  """`_DenseSystem` on a TensorFlow device (a `device.resolve_device` result
  other than 'cpu'): Q, the factor and the solves live there; vectors cross
  to the host as float64 numpy."""

  def __init__(self, gram: np.ndarray, signs: np.ndarray,
               inv_scale_sq: float, device: str):
    self.device = device
    self.q = device_lib.signed_scaled_gram(gram, signs, inv_scale_sq, device)

  def matvec(self, vector: np.ndarray) -> np.ndarray:
    return device_lib.matvec(self.q, vector, self.device)

  def factor(self, diagonal: np.ndarray) -> Callable[[np.ndarray],
                                                      np.ndarray]:
    return device_lib.cholesky_solver(self.q, diagonal, self.device)


def _dense_system(gram: np.ndarray, signs: np.ndarray, inv_scale_sq: float,
                  device: str):
  """The Gram route's Newton system on `device` ('cpu': numpy / scipy)."""
  if device == 'cpu':
    return _DenseSystem(gram, signs, inv_scale_sq)
  return _DeviceDenseSystem(gram, signs, inv_scale_sq, device)


class _FeatureSystem:
  """Q = Z Z^T for features Z (n x P); Newton systems by Woodbury."""

  def __init__(self, z: np.ndarray):
    self.z = z

  def matvec(self, vector: np.ndarray) -> np.ndarray:
    return self.z @ (self.z.T @ vector)

  def factor(self, diagonal: np.ndarray) -> Callable[[np.ndarray],
                                                      np.ndarray]:
    """(D + Z Z^T)^-1 v = D^-1 v - D^-1 Z C^-1 Z^T D^-1 v, C = I + Z^T D^-1 Z."""
    inverse = 1.0 / diagonal
    scaled = self.z * inverse[:, None]
    # C's upper triangle by one rank-n update (syrk: half a product's flops);
    # (Z D^-1/2)^T is Fortran-ordered as it is, so BLAS copies nothing.
    root = self.z * np.sqrt(inverse)[:, None]
    inner = scipy.linalg.blas.dsyrk(1.0, root.T)
    inner.flat[::inner.shape[0] + 1] += 1.0
    factor = scipy.linalg.cho_factor(inner, lower=False, overwrite_a=True,
                                     check_finite=False)

    def solve(v):
      first = inverse * v
      return first - scaled @ scipy.linalg.cho_solve(
          factor, self.z.T @ first, check_finite=False)
    return solve


class _DeviceFeatureSystem:
  """`_FeatureSystem` on a TensorFlow device: Z, C and its factor live
  there (see `_DeviceDenseSystem`)."""

  def __init__(self, z: np.ndarray, device: str):
    self.device = device
    self.z = device_lib.to_device(z, device)

  def matvec(self, vector: np.ndarray) -> np.ndarray:
    return device_lib.feature_matvec(self.z, vector, self.device)

  def factor(self, diagonal: np.ndarray) -> Callable[[np.ndarray],
                                                      np.ndarray]:
    return device_lib.woodbury_solver(self.z, 1.0 / diagonal, self.device)


def _support_bounds(system, p: np.ndarray, slack: np.ndarray) -> tuple:
  """Bounds of p restricted to its apparent support (p_i > t_i), and it."""
  support = np.where(p > slack, p, 0.0)
  if not support.any() or support.all():
    return -math.inf, math.inf, support
  return (*certificate.bounds(system.matvec(support), support), support)


def _better(candidate: tuple, best: Optional[tuple]) -> bool:
  """Whether (lower, upper, ...) certifies more than `best` does."""
  if best is None:
    return True
  if candidate[1] <= certificate.NOT_SEPARABLE_MARGIN:
    return candidate[1] < best[1]
  return certificate.relative_gap(*candidate[:2]) < certificate.relative_gap(
      *best[:2])


def _newton(solve, r: np.ndarray, r_sum: float, solve_ones: np.ndarray,
            ones_inv_ones: float) -> tuple:
  """(dp, dnu) with (Q + D) dp - dnu 1 = r, 1^T dp = r_sum."""
  base = solve(r)
  dnu = (r_sum - base.sum()) / ones_inv_ones
  return base + dnu * solve_ones, dnu


def _log_progress(log, last_log: float, now: float, iteration: int,
                  best: tuple, gap: float, tolerance: float, eta) -> float:
  """Logs the best bounds if LOG_EVERY_SECONDS passed; the last log time."""
  if log is None or now - last_log < certificate.LOG_EVERY_SECONDS:
    return last_log
  log(f'    interior point step {iteration}: margin {best[0]:.6g}, upper '
      f'bound {best[1]:.6g}, relative gap {gap:.2e} (target '
      f'{tolerance:.0e}){eta.text(gap)}')
  return now


def _max_step(x: np.ndarray, dx: np.ndarray) -> float:
  """Largest alpha <= 1 with x + alpha dx >= 0."""
  negative = dx < 0
  if not negative.any():
    return 1.0
  return min(1.0, float(np.min(-x[negative] / dx[negative])))


def _factor(system, diagonal: np.ndarray, regularization: float) -> tuple:
  """(solve, regularization used), raising it until the factor exists."""
  while True:
    try:
      return system.factor(diagonal + regularization), regularization
    except np.linalg.LinAlgError:
      errors.require(
          regularization < MAX_REGULARIZATION,
          'interior point: Q + D is not positive definite even with '
          f'{regularization:g} added to its diagonal; the Gram is too '
          'indefinite for this solver')
      regularization *= REGULARIZATION_GROWTH


def run_interior_point(system, n: int, tolerance: float, max_iterations: int,
                       max_seconds: Optional[float],
                       log: Optional[Callable[[str], None]],
                       start_point: Optional[np.ndarray] = None) -> tuple:
  """Mehrotra predictor-corrector on min_{p in simplex} 1/2 p^T Q p.

  Args:
    system: `_DenseSystem` or `_FeatureSystem` (Q p and Newton solves).
    n: number of examples.
    tolerance: stop once the relative gap of the better point is <= this.
    max_iterations: Newton steps at most.
    max_seconds: optional wall-clock limit, tested every step.
    log: optional progress printer.
    start_point: optional simplex point to start from (mixed with the
      uniform point so that it is interior).

  Returns:
    (a >= 0, Q a, lower, upper, Newton steps, stop reason, history).
  """
  start = time.perf_counter()
  p = np.full(n, 1.0 / n)
  if start_point is not None:
    p = 0.5 * p + 0.5 * start_point / start_point.sum()
  q_p = system.matvec(p)
  nu = float(q_p.min()) - 1.0
  slack = q_p - nu
  ones = np.ones(n)
  regularization = REGULARIZATION
  history = []
  eta = progress.GapEta(tolerance)
  last_log = start
  best = None
  iteration = 0
  reason = None
  progress_mark = (0, math.inf)  # (step, gap) of the last real progress
  while reason is None:
    lower, upper = certificate.bounds(q_p, p)
    candidates = [(lower, upper, p, q_p)]
    support_lower, support_upper, support = _support_bounds(system, p, slack)
    if support_upper < math.inf:
      candidates.append((support_lower, support_upper, support, None))
    for candidate in candidates:
      if _better(candidate, best):
        best = candidate
    gap = certificate.relative_gap(*best[:2])
    history.append((iteration, best[0], best[1]))
    now = time.perf_counter()
    last_log = _log_progress(log, last_log, now, iteration, best, gap,
                             tolerance, eta)
    if gap <= tolerance:
      reason = certificate.STOP_TOLERANCE
      break
    if best[1] <= certificate.NOT_SEPARABLE_MARGIN:
      reason = certificate.STOP_NOT_SEPARABLE
      break
    if (gap <= progress_mark[1] * STALL_FACTOR or
        not 0 <= gap < STALL_BELOW_GAP):
      progress_mark = (iteration, gap)
    elif iteration - progress_mark[0] >= STALL_STEPS:
      reason = certificate.STOP_STALLED
      break
    if iteration >= max_iterations:
      reason = certificate.STOP_MAX_ITERATIONS
      break
    if max_seconds is not None and now - start >= max_seconds:
      reason = certificate.STOP_MAX_SECONDS
      break
    iteration += 1
    # Residuals of Q p - nu 1 - t = 0 and 1^T p = 1; mu = p^T t / n.
    dual_residual = q_p - nu - slack
    primal_residual = 1.0 - p.sum()
    mu = float(p @ slack) / n
    with np.errstate(divide='ignore', over='ignore', invalid='ignore'):
      # p_i underflowing at tiny gaps: a huge finite diagonal pins p_i.
      # fmin: a 0 / 0 (NaN) is pinned too, not passed to the factorization.
      barrier = np.fmin(slack / p, MAX_BARRIER)
    solve, regularization = _factor(system, barrier, regularization)
    solve_ones = solve(ones)
    ones_inv_ones = float(solve_ones.sum())

    def direction(complementarity, dual_residual=dual_residual,
                  primal_residual=primal_residual, solve=solve,
                  solve_ones=solve_ones, ones_inv_ones=ones_inv_ones):
      # T dp + P dt = -complementarity eliminates dt.
      dp, dnu = _newton(solve, -dual_residual - complementarity / p,
                        primal_residual, solve_ones, ones_inv_ones)
      return dp, dnu, (-complementarity - slack * dp) / p

    dp, dnu, dt = direction(p * slack)
    step = min(_max_step(p, dp), _max_step(slack, dt))
    affine_mu = float((p + step * dp) @ (slack + step * dt)) / n
    sigma = (affine_mu / mu)**3 if mu > 0 else 0.0
    dp, dnu, dt = direction(p * slack + dp * dt - sigma * mu)
    step = STEP_FRACTION * min(_max_step(p, dp), _max_step(slack, dt))
    if step < MIN_STEP:
      reason = certificate.STOP_STALLED
      break
    p = p + step * dp
    nu += step * dnu
    slack = slack + step * dt
    # Keep Q p exact (the iterate's bounds are certificates).
    q_p = system.matvec(p)
  lower, upper, coef, q_coef = best
  if q_coef is None:
    q_coef = system.matvec(coef)
  return coef, q_coef, lower, upper, iteration, reason, history


def solve_interior_point(gram: Optional[np.ndarray], labels: np.ndarray,
                         scale: float, tolerance: float, max_iterations: int,
                         max_seconds: Optional[float],
                         log: Optional[Callable[[str], None]],
                         features: Optional[np.ndarray] = None,
                         max_dense_gib: float = DEFAULT_MAX_DENSE_GIB,
                         start_point: Optional[np.ndarray] = None,
                         solver: str = SOLVER,
                         device: str = 'cpu') -> certificate.MarginResult:
  """The interior-point solve of a Gram, or of features (P < n, Woodbury).

  Args:
    gram: (n, n) symmetric PSD Gram (any float dtype; copied to float64),
      or None when `features` are given.
    labels: (n,) float64 in {-1, +1}.
    scale: s = mean_i sqrt(K_ii) > 0.
    tolerance: stop once the certified relative gap is <= this.
    max_iterations: Newton steps at most.
    max_seconds: optional wall-clock limit.
    log: optional progress printer.
    features: (n, P) phi(x_i) instead of the Gram (K = Phi Phi^T).
    max_dense_gib: memory limit of the Gram route (`require_dense_memory`).
    start_point: optional simplex point to start from (`run_interior_point`).
    solver: the name the result carries.
    device: where Q (or Z), the Cholesky factors and the products live
      (`device.DEVICES`); default 'cpu', the numpy / scipy path. A
      TensorFlow device runs the same algorithm in float64 there.

  Returns:
    A `MarginResult` whose bounds are those of its own `dual_coef`.
  """
  start = time.perf_counter()
  device = device_lib.resolve_device(device)
  n = len(labels)
  signs = np.asarray(labels, dtype=np.float64)
  if features is not None:
    z = np.asarray(features, dtype=np.float64) * (signs / scale)[:, None]
    system = (_FeatureSystem(z) if device == 'cpu' else
              _DeviceFeatureSystem(z, device))
  else:
    require_dense_memory(n, max_dense_gib)
    system = _dense_system(gram, signs, 1.0 / scale**2, device)
  coef, _, lower, upper, iterations, reason, history = run_interior_point(
      system, n, tolerance, max_iterations, max_seconds, log, start_point)
  return certificate.MarginResult(
      dual_coef=signs * coef / scale**2, margin=float(lower),
      margin_upper_bound=float(upper), feature_scale=float(scale),
      iterations=int(iterations),
      converged=reason == certificate.STOP_TOLERANCE, stop_reason=reason,
      history=history, solver=solver, seconds=time.perf_counter() - start)
