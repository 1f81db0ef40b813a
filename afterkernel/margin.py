"""Hard-margin linear SVM (no bias) on kernel features, by dual acceleration.

A kernel is scored by the normalized margin of the maximum-margin linear
classifier (no bias) on its features phi(x_i):

  gamma* = max_{||w|| = 1} min_i y_i <w, phi(x_i)>
         = min_{p in simplex} ||Z^T p||          (separable data),

with z_i = y_i phi(x_i) the rows of Z. The solver is Algorithm 1 of
Ji, Srebro & Telgarsky, "Fast margin maximization via dual acceleration",
ICML 2021: with q_t = softmax(-Z w_t), w_0 = 0, g_{-1} = 0,

  g_t     = beta_t (g_{t-1} + Z^T q_t),
  w_{t+1} = w_t + theta_t (g_t + Z^T q_t),   beta_t = t / (t + 1), theta_t = 1,

which maximizes the margin at the rate O~(1/t^2) when ||z_i|| <= 1 (the
paper's analysis; in our measurements a relative gap of 1e-3 took ~100 /
gamma* iterations and 1e-4 took ~300 / gamma*). Features are therefore first
rescaled by
s = mean_i ||phi(x_i)|| = mean_i sqrt(K(x_i, x_i)) so that their average norm
is 1; reported margins are in these rescaled units.

Because w_t stays in the span of the z_i, the 'dual' solver runs the same
recursion on coefficients, w_t = Z^T a_t, g_t = Z^T b_t:

  b_t = beta_t (b_{t-1} + q_t),   a_{t+1} = a_t + b_t + q_t,

and Z w_t = G_y a_t with G_y = diag(y) K diag(y) / s^2, so one Gram mat-vec
per iteration suffices (G_y q_t; G_y a_t and G_y b_t are updated from it).

Stopping uses the duality gap. gamma(w) = min_i (Z w)_i / ||w|| is a lower
bound on gamma*, and ||Z^T p|| is an upper bound for any p in the simplex; we
try p = q_t, p = a_t / |a_t|_1 and p = b_t / |b_t|_1 at every iteration. The run
stops when (best_upper - best_lower) / best_upper <= tolerance (tested every
`check_every` iterations), at `max_iterations`, or after `max_seconds` of wall
clock if the caller asks for it; only the last makes results machine-dependent.

A non-separable problem (0 in the convex hull of the z_i) is not an error: the
margin then stays <= 0 while every upper bound is >= 0, so the relative gap
never drops below 1 and the result has converged=False, stop_reason
'max_iterations' (or 'max_seconds') and a margin <= 0 (how far the data are
from separable, not a max-margin solution).

Solvers (`SOLVERS`), all returning a `MarginResult`:
  'working_set' (default): 'dual' on the full Gram until the relative gap is
    1e-2, then 'dual' on the sub-Gram of a working set (the support of q_t
    and the smallest margins), growing the set with every example its
    solution does not separate, until the FULL problem's gap meets the
    tolerance. The certificate is the same as for 'dual' (a simplex point's
    ||Z^T p|| and the margin of w over all examples), so it is as exact; it
    is faster because the slow O~(1/t) tail of Algorithm 1 runs on |W|^2
    instead of n^2 entries (on a 3,000-example VGG FNTK of MNIST: 545-example
    working set, about 2x fewer Gram reads in total, 2-3x faster).
  'dual': Algorithm 1 on the n x n Gram matrix, one O(n^2) mat-vec per
    iteration (only the rows on the support of q_t once it is sparse).
    Deterministic; the reference the other solvers are tested against. dtype=np.float32 halves memory and runs
    2-3x faster, at some accuracy cost for small margins.
  'primal': Algorithm 1 on an explicit (n, P) feature matrix, O(nP) per
    iteration. Use it when you have features but no Gram (cheaper when P < n),
    and as an independent check of 'dual': both are the same algorithm and
    agree to rounding for a fixed iteration count.
  'stochastic': our reading of the paper's stochastic variant ("adaptive
    non-uniform sampling via the dual variables"): sample i_t ~ q_t and use
    z_{i_t} in place of Z^T q_t in both updates. Each step then needs ONE Gram
    row, O(n) instead of O(n^2). It needs 20-40x more iterations than 'dual'
    for the same gap (q_t concentrates on the few support vectors, so the
    sampling noise is small), so it wins in wall clock for large n: measured
    on an RBF Gram of MNIST 3-vs-5 for a 1e-4 gap, 4.2 s vs 2.5 s ('dual',
    float64) at n = 2000 but 30 s vs ~110 s at n = 8000. Seeded; the stopping
    rule and bounds are the same as for 'dual', so its `converged` is as
    trustworthy.
"""

import dataclasses
import math
import time
from typing import Callable, Optional

import numpy as np

from afterkernel import errors

SOLVERS = ('dual', 'working_set', 'primal', 'stochastic')
# Algorithm 1 with a working set: the same certified gap, several times fewer
# Gram reads once the support vectors are a small fraction of the examples.
DEFAULT_SOLVER = 'working_set'
# A 1e-4 gap took ~300 / margin iterations: this covers margins >= ~0.015.
DEFAULT_MAX_ITERATIONS = 20_000
# A 1e-4 gap took ~5000-8000 / margin O(n) steps: covers margins >= ~0.01.
DEFAULT_STOCHASTIC_MAX_ITERATIONS = 1_000_000
DEFAULT_TOLERANCE = 1e-4
# A check costs one extra Gram mat-vec ('dual'), i.e. +10% time at this value.
DEFAULT_CHECK_EVERY = 10

# Progress lines (when a `log` is given) at most this often.
LOG_EVERY_SECONDS = 30.0
# q_t entries below this fraction of its largest are left out of G_y q_t:
# their total effect is < n * 1e-20 relative, invisible in float64.
SUPPORT_CUTOFF = 1e-20
# Above this support fraction a dense mat-vec is cheaper than gathering rows.
DENSE_FRACTION = 0.25
# Support rows gathered at a time (at most n / 32): bounds the temporary.
SUPPORT_CHUNK = 64
# The incrementally updated G_y a_t is recomputed exactly this often (one
# dense mat-vec), bounding accumulated rounding.
RESYNC_EVERY = 100
# 'working_set': the full-problem run stops at this gap, then the working
# set takes over.
WORKING_SET_COARSE_TOLERANCE = 1e-2
# 'working_set': rounds of (solve on the set, add violators) at most.
WORKING_SET_MAX_ROUNDS = 30
STOP_TOLERANCE = 'tolerance'
STOP_MAX_ITERATIONS = 'max_iterations'
STOP_MAX_SECONDS = 'max_seconds'


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
    iterations: number of updates w_t -> w_{t+1} performed ('working_set':
      summed over the full problem and all working-set rounds, each of
      which may use up to max_iterations).
    converged: True iff the relative gap (upper - margin) / upper met the
      tolerance.
    stop_reason: 'tolerance', 'max_iterations' or 'max_seconds'.
    history: [(iteration, best margin, best upper bound)] at each check.
    solver: the solver name, one of `SOLVERS`.
    seconds: wall-clock time of the solve.
    weights: 'primal' only: (P,) w in the ORIGINAL feature units, so that
      f(x) = features(x) @ weights; None for Gram-based solvers.
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


# ----------------------------------------------------------------------------
# Input validation.


def _signed_labels(labels, n: Optional[int], what: str,
                   need_two_classes: bool) -> np.ndarray:
  """Returns labels as float64 in {-1, +1} (0 -> -1), or raises."""
  labels = np.asarray(labels)
  if labels.ndim == 2 and labels.shape[1] == 1:
    labels = labels[:, 0]
  errors.require(labels.ndim == 1,
                 f'{what} must be 1-D, got shape {labels.shape}')
  if n is not None:
    errors.require(
        labels.shape[0] == n,
        f'{what} has {labels.shape[0]} entries but the data has {n} '
        'examples; pass one label per row')
  errors.require(labels.shape[0] > 0, f'{what} is empty')
  errors.require(
      np.issubdtype(labels.dtype, np.number) or labels.dtype == bool,
      f'{what} must be numeric in {{0, 1}} or {{-1, +1}}, got dtype '
      f'{labels.dtype}')
  values = np.unique(labels)
  errors.require(
      set(values.tolist()) <= {0.0, 1.0} or set(values.tolist()) <= {-1.0, 1.0},
      f'{what} must be in {{0, 1}} or {{-1, +1}}, got values '
      f'{values[:5].tolist()}{"..." if values.size > 5 else ""}')
  if need_two_classes:
    errors.require(
        values.size == 2,
        f'training data has one class: every label is {values[0]:g}; a margin '
        'needs examples of both classes')
  return np.where(labels > 0, 1.0, -1.0)


def _count_nonfinite(array: np.ndarray, block_rows: int = 1024) -> int:
  """Counts NaN/inf entries, in row blocks so no n x n bool temporary."""
  if np.isfinite(array.sum(dtype=np.float64)):
    return 0  # NaN or inf anywhere would make the sum non-finite.
  count = 0
  for start in range(0, array.shape[0], block_rows):
    count += int(np.count_nonzero(~np.isfinite(array[start:start + block_rows])))
  return count


def _require_finite(array: np.ndarray, what: str) -> None:
  bad = _count_nonfinite(array)
  errors.require(
      bad == 0,
      f'{what} has {bad} NaN/inf entries of {array.size}; the network may have '
      'diverged (check its loss), recompute it from a finite model')


def _require_iteration_args(max_iterations, tolerance, check_every,
                            max_seconds) -> None:
  errors.require_positive(max_iterations, 'max_iterations')
  errors.require_positive(check_every, 'check_every')
  errors.require(
      tolerance is not None and 0 <= tolerance < 1,
      f'tolerance is a relative duality gap and must be in [0, 1), got '
      f'{tolerance!r}')
  if max_seconds is not None:
    errors.require_positive(max_seconds, 'max_seconds')


# ----------------------------------------------------------------------------
# Shared bookkeeping: best lower / upper bounds, checks and stopping.


def _softmax_of_negative(margins: np.ndarray) -> np.ndarray:
  """softmax(-margins) in float64, stabilized by subtracting the max."""
  q = np.exp(margins.min() - margins)
  q /= q.sum()
  return q


class _Progress:
  """Tracks the best iterate and bounds, and decides when to stop."""

  def __init__(self, n: int, tolerance: float, max_iterations: int,
               check_every: int, max_seconds: Optional[float],
               log: Optional[Callable[[str], None]] = None):
    self.log = log
    self.last_log = time.perf_counter()
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
               f'{self.gap():.2e} (target {self.tolerance:.0e})')
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


# ----------------------------------------------------------------------------
# Gram-based solvers.


def _scaled_gram_operator(gram: np.ndarray, labels: np.ndarray, scale: float):
  """Returns (matvec, row) for G_y = diag(y) K diag(y) / s^2 without forming it.

  Applying the signs and the scale to the vector costs O(n) per product and
  keeps the only n x n array the caller's (converted once to the solver
  dtype).
  """
  inv_scale_sq = 1.0 / scale**2
  dtype = gram.dtype
  by_rows = not (gram.flags.f_contiguous and not gram.flags.c_contiguous)

  def matvec(vector: np.ndarray) -> np.ndarray:
    product = gram @ (labels * vector).astype(dtype, copy=False)
    return labels * product.astype(np.float64, copy=False) * inv_scale_sq

  def row(index: int) -> np.ndarray:
    # K is symmetric: row i is column i; read whichever is contiguous.
    entries = gram[index] if by_rows else gram[:, index]
    return (labels * (labels[index] * inv_scale_sq)) * entries

  def support_matvec(vector: np.ndarray) -> np.ndarray:
    # For a nonnegative vector (q_t): entries below SUPPORT_CUTOFF * max add
    # at most n * SUPPORT_CUTOFF relative to the product, far below float64
    # rounding, so only the rows of the remaining support are read. q_t
    # concentrates on the few examples near the margin, so late iterations
    # touch a small fraction of the Gram.
    keep = np.flatnonzero(vector > vector.max() * SUPPORT_CUTOFF)
    if len(keep) > DENSE_FRACTION * len(vector):
      return matvec(vector)
    weights = (labels[keep] * vector[keep]).astype(dtype)
    product = np.zeros(len(vector), np.float64)
    # K symmetric: sum_k w_k K[k, :] reads whole rows (or columns), gathered
    # in chunks so the temporary copy stays small.
    step = max(1, min(SUPPORT_CHUNK, len(vector) // 32))
    for start in range(0, len(keep), step):
      chunk = keep[start:start + step]
      rows = gram[chunk] if by_rows else gram[:, chunk].T
      product += weights[start:start + step] @ rows
    return labels * product * inv_scale_sq

  return matvec, row, support_matvec


def _run_dual(matvec: Callable[[np.ndarray], np.ndarray],
              support_matvec: Callable[[np.ndarray], np.ndarray], n: int,
              progress: _Progress) -> tuple:
  """Algorithm 1 on coefficients; returns (iterations, stop_reason)."""
  a = np.zeros(n)      # w_t = Z^T a_t
  b = np.zeros(n)      # g_{t-1} = Z^T b_{t-1}
  u = np.zeros(n)      # Z w_t = G_y a_t
  v = np.zeros(n)      # G_y b_{t-1}
  iteration = 0
  while True:
    check = progress.is_check(iteration)
    if iteration > 0 and (iteration % RESYNC_EVERY == 0 or
                          iteration >= progress.max_iterations):
      # u is updated incrementally below; recompute it exactly so rounding
      # never accumulates over more than RESYNC_EVERY steps.
      u = matvec(a)
    if iteration > 0:
      progress.observe_iterate(iteration, a, u, math.sqrt(max(a @ u, 0.0)))
      b_sum = b.sum()
      if b_sum > 0:
        progress.observe_upper(math.sqrt(max(b @ v, 0.0)) / b_sum)
    q = _softmax_of_negative(u)
    gram_q = support_matvec(q)
    progress.observe_upper(math.sqrt(max(q @ gram_q, 0.0)))
    if check:
      reason = progress.stop_reason(iteration)
      if reason is not None:
        return iteration, reason
    beta = iteration / (iteration + 1.0)
    # b_t = beta_t (b_{t-1} + q_t); a_{t+1} = a_t + b_t + q_t (theta_t = 1).
    b += q
    b *= beta
    v += gram_q
    v *= beta
    a += b
    a += q
    u += v
    u += gram_q
    iteration += 1


def _run_stochastic(matvec: Callable[[np.ndarray], np.ndarray],
                    row: Callable[[int], np.ndarray], n: int,
                    progress: _Progress, seed: int) -> tuple:
  """Algorithm 1 with Z^T q_t replaced by z_{i_t}, i_t ~ q_t.

  In coefficients Z^T q_t -> Z^T e_{i_t}, so G_y a and G_y b change by
  multiples of one Gram row per step: O(n) per iteration. Every n steps
  (amortized O(n)) they are recomputed exactly and ||Z^T q_t|| is evaluated
  as an extra upper bound.
  """
  rng = np.random.default_rng(seed)
  a = np.zeros(n)
  b = np.zeros(n)
  u = np.zeros(n)
  v = np.zeros(n)
  resync_every = max(n, 1)
  iteration = 0
  while True:
    resync = iteration > 0 and iteration % resync_every == 0
    if resync:
      u = matvec(a)
      v = matvec(b)
    if iteration > 0:
      progress.observe_iterate(iteration, a, u, math.sqrt(max(a @ u, 0.0)))
      b_sum = b.sum()
      if b_sum > 0:
        progress.observe_upper(math.sqrt(max(b @ v, 0.0)) / b_sum)
    q = _softmax_of_negative(u)
    if resync:
      progress.observe_upper(math.sqrt(max(q @ matvec(q), 0.0)))
    if progress.is_check(iteration):
      reason = progress.stop_reason(iteration)
      if reason is not None:
        return iteration, reason
    cumulative = np.cumsum(q)
    index = min(int(np.searchsorted(cumulative, rng.random() * cumulative[-1],
                                    side='right')), n - 1)
    column = row(index)
    beta = iteration / (iteration + 1.0)
    b *= beta
    b[index] += beta
    v += column
    v *= beta
    a += b
    a[index] += 1.0
    u += v
    u += column
    iteration += 1


def _solve_working_set(gram: np.ndarray, labels: np.ndarray, scale: float,
                       tolerance: float, max_iterations: int,
                       check_every: int, max_seconds: Optional[float],
                       log: Optional[Callable[[str], None]]) -> MarginResult:
  """Algorithm 1 on the full Gram to a coarse gap, then on working sets.

  The optimal p* of min_{p in simplex} ||Z^T p|| is supported on the support
  vectors, typically a small fraction of the examples. After a coarse run on
  the full problem, Algorithm 1 is run on the sub-Gram of a working set W
  (the support of q_t plus the smallest margins): each iteration costs
  |W|^2 instead of n^2. Its solution p (zero outside W) is feasible for the
  full problem, so ||Z^T p|| is still an upper bound, and the margin of
  w = Z^T p over ALL examples is still a lower bound: the full duality gap
  certifies the result exactly as for 'dual'. Examples outside W whose
  margin falls below W's are added and the set is solved again.
  """
  start = time.perf_counter()
  n = len(labels)
  matvec, _, support_matvec = _scaled_gram_operator(gram, labels, scale)
  coarse = _Progress(n, max(tolerance, WORKING_SET_COARSE_TOLERANCE),
                     max_iterations, check_every, max_seconds, log)
  iterations, reason = _run_dual(matvec, support_matvec, n, coarse)
  history = list(coarse.history)
  best_coef, best_upper = coarse.best_coef.copy(), coarse.best_upper
  margins = matvec(best_coef)
  norm = math.sqrt(max(best_coef @ margins, 0.0))
  best_lower = margins.min() / norm if norm > 0 else -math.inf

  def gap():
    return ((best_upper - best_lower) / best_upper if best_upper > 0
            else math.inf)

  if reason == STOP_TOLERANCE and gap() > tolerance and norm > 0:
    q = _softmax_of_negative(margins)
    smallest = np.argsort(margins)[:max(64, int(np.sum(q > 1e-12)))]
    working = np.union1d(np.flatnonzero(q > q.max() * SUPPORT_CUTOFF),
                         smallest)
    reason = STOP_MAX_ITERATIONS
    for _ in range(WORKING_SET_MAX_ROUNDS):
      remaining = (None if max_seconds is None else
                   max(max_seconds - (time.perf_counter() - start), 1e-3))
      sub_gram = np.ascontiguousarray(gram[np.ix_(working, working)])
      sub_matvec, _, sub_support = _scaled_gram_operator(
          sub_gram, labels[working], scale)
      # Each round gets the full iteration budget: its iterations cost
      # |W|^2, not n^2, and the tail needs as many as the full problem.
      sub = _Progress(len(working), tolerance, max_iterations, check_every,
                      remaining, None)
      sub_iterations, sub_reason = _run_dual(sub_matvec, sub_support,
                                             len(working), sub)
      iterations += sub_iterations
      coef = np.zeros(n)
      coef[working] = sub.best_coef
      margins = matvec(coef)
      norm = math.sqrt(max(coef @ margins, 0.0))
      lower = margins.min() / norm if norm > 0 else -math.inf
      best_upper = min(best_upper, sub.best_upper)
      if lower > best_lower:
        best_lower, best_coef = lower, coef
      history.append((iterations, best_lower, best_upper))
      if log:
        log(f'    working set of {len(working)}: margin {best_lower:.6g}, '
            f'upper bound {best_upper:.6g}, relative gap {gap():.2e}')
      if gap() <= tolerance:
        reason = STOP_TOLERANCE
        break
      if sub_reason != STOP_TOLERANCE:
        reason = sub_reason
        break
      # Examples outside W that the set's solution does not separate as
      # well as W's own worst example: the set is missing support vectors.
      outside = np.setdiff1d(np.arange(n), working)
      set_margin = margins[working].min()
      violators = outside[margins[outside] < set_margin]
      if not len(violators):
        break
      worst = violators[np.argsort(margins[violators])][:max(len(working),
                                                              64)]
      working = np.union1d(working, worst)
  margins = matvec(best_coef)
  norm = math.sqrt(max(best_coef @ margins, 0.0))
  margin = margins.min() / norm if norm > 0 else -math.inf
  return MarginResult(
      dual_coef=labels * best_coef / scale**2, margin=float(margin),
      margin_upper_bound=float(best_upper), feature_scale=float(scale),
      iterations=iterations, converged=reason == STOP_TOLERANCE,
      stop_reason=reason, history=history, solver='working_set',
      seconds=time.perf_counter() - start)


def max_margin_from_gram(
    gram: np.ndarray,
    labels: np.ndarray,
    solver: str = DEFAULT_SOLVER,
    max_iterations: Optional[int] = None,
    tolerance: float = DEFAULT_TOLERANCE,
    check_every: int = DEFAULT_CHECK_EVERY,
    max_seconds: Optional[float] = None,
    seed: int = 0,
    dtype=np.float64,
    log: Optional[Callable[[str], None]] = None,
) -> MarginResult:
  """Hard-margin SVM (no bias) on a Gram matrix, by dual acceleration.

  Runs Algorithm 1 of Ji, Srebro & Telgarsky (ICML 2021) in coefficient space
  on G_y = diag(y) K diag(y) / s^2 with s = mean_i sqrt(K_ii) (see the module
  docstring), keeping the iterate with the best normalized margin.

  Args:
    gram: (n, n) symmetric PSD kernel matrix K(x_i, x_j) on training inputs.
      Not modified; copied once only if its dtype differs from `dtype`.
    labels: (n,) in {0, 1} or {-1, +1} (0 means -1).
    solver: 'dual' (exact, O(n^2) per iteration) or 'stochastic' (O(n) per
      iteration, noisy); see `SOLVERS`.
    max_iterations: iteration budget; None means DEFAULT_MAX_ITERATIONS for
      'dual' and DEFAULT_STOCHASTIC_MAX_ITERATIONS for 'stochastic'.
    tolerance: stop once (upper - margin) / upper <= tolerance; in [0, 1).
    check_every: test the gap every this many iterations ('dual': each test
      costs one extra Gram mat-vec).
    max_seconds: optional wall-clock limit, tested at checks. Setting it makes
      the result depend on machine speed.
    seed: seed of np.random.default_rng for 'stochastic' sampling.
    dtype: np.float64 (default) or np.float32 for the Gram products; float32
      halves memory and time for very large n but limits the relative accuracy
      of the margin to roughly 1e-7 / margin^2.
    log: if given, called with a progress line (margin, bound, gap) at most
      every LOG_EVERY_SECONDS.

  Returns:
    A `MarginResult`; `margin` is recomputed exactly for the returned iterate.

  Raises:
    AfterKernelError: non-square gram, length mismatch, NaN/inf entries,
      negative diagonal, labels not binary or of one class, unknown solver or
      bad iteration arguments.
  """
  errors.require(
      solver in ('dual', 'working_set', 'stochastic'),
      f"solver {solver!r} is unknown for a Gram matrix: use 'dual', "
      "'working_set' or 'stochastic' (for 'primal', call "
      "max_margin_from_features)")
  if max_iterations is None:
    max_iterations = (DEFAULT_STOCHASTIC_MAX_ITERATIONS
                      if solver == 'stochastic' else DEFAULT_MAX_ITERATIONS)
  _require_iteration_args(max_iterations, tolerance, check_every, max_seconds)
  dtype = np.dtype(dtype)
  errors.require(dtype in (np.float64, np.float32),
                 f'dtype must be float64 or float32, got {dtype}')
  gram = np.asarray(gram)
  errors.require(
      gram.ndim == 2 and gram.shape[0] == gram.shape[1],
      f'gram must be a square (n, n) matrix, got shape {gram.shape}')
  n = gram.shape[0]
  labels = _signed_labels(labels, n, 'labels', need_two_classes=True)
  errors.require(np.issubdtype(gram.dtype, np.number),
                 f'gram must be numeric, got dtype {gram.dtype}')
  _require_finite(gram, 'gram')
  diagonal = np.diagonal(gram).astype(np.float64)
  errors.require(
      diagonal.min() >= 0,
      f'gram has {int(np.sum(diagonal < 0))} negative diagonal entries; a '
      'kernel Gram matrix must be positive semidefinite')
  scale = float(np.mean(np.sqrt(diagonal)))
  errors.require(scale > 0, 'gram is all zero on its diagonal: every feature '
                 'vector is zero, so no margin exists')
  gram = np.asarray(gram, dtype=dtype)
  if not (gram.flags.c_contiguous or gram.flags.f_contiguous):
    # BLAS would otherwise copy a strided view on every product.
    gram = np.ascontiguousarray(gram)
  if solver == 'working_set':
    return _solve_working_set(gram, labels, scale, tolerance, max_iterations,
                              check_every, max_seconds, log)
  matvec, row, support_matvec = _scaled_gram_operator(gram, labels, scale)
  progress = _Progress(n, tolerance, max_iterations, check_every, max_seconds,
                       log)
  if solver == 'dual':
    iteration, reason = _run_dual(matvec, support_matvec, n, progress)
  else:
    iteration, reason = _run_stochastic(matvec, row, n, progress, seed)
  # The tracked margins come from incrementally updated products: recompute
  # the returned iterate's margin exactly.
  best = progress.best_coef
  margins = matvec(best)
  norm = math.sqrt(max(best @ margins, 0.0))
  margin = margins.min() / norm if norm > 0 else -math.inf
  return progress.result(labels=labels, scale=scale, margin=margin,
                         iteration=iteration, stop_reason=reason,
                         solver=solver)


def max_margin_from_features(
    features: np.ndarray,
    labels: np.ndarray,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    tolerance: float = DEFAULT_TOLERANCE,
    check_every: int = DEFAULT_CHECK_EVERY,
    max_seconds: Optional[float] = None,
    log: Optional[Callable[[str], None]] = None,
) -> MarginResult:
  """Hard-margin SVM (no bias) on explicit features: Algorithm 1 in the primal.

  The same recursion as the 'dual' solver, on w in R^P with Z = diag(y) Phi / s
  (s = mean_i ||phi_i||), in float64: two (n, P) mat-vecs per iteration (Z w
  and Z^T q). The coefficients a with w = Z^T a are tracked alongside, so the
  result also carries `dual_coef` for use with a cross-Gram.

  Args:
    features: (n, P) feature matrix phi(x_i), one row per training example.
    labels: (n,) in {0, 1} or {-1, +1} (0 means -1).
    max_iterations: iteration budget.
    tolerance: stop once (upper - margin) / upper <= tolerance; in [0, 1).
    check_every: test the gap every this many iterations.
    max_seconds: optional wall-clock limit (makes results machine-dependent).
    log: optional progress printer, as for `max_margin_from_gram`.

  Returns:
    A `MarginResult` with solver='primal' and `weights` (P,) in original
    feature units: decision f(x) = phi(x) @ weights.

  Raises:
    AfterKernelError: features not 2-D, length mismatch, NaN/inf entries,
      labels not binary or of one class, or bad iteration arguments.
  """
  _require_iteration_args(max_iterations, tolerance, check_every, max_seconds)
  features = np.asarray(features)
  errors.require(features.ndim == 2,
                 f'features must be a 2-D (n, P) matrix, got shape '
                 f'{features.shape}')
  n = features.shape[0]
  labels = _signed_labels(labels, n, 'labels', need_two_classes=True)
  errors.require(np.issubdtype(features.dtype, np.number),
                 f'features must be numeric, got dtype {features.dtype}')
  _require_finite(features, 'features')
  features = features.astype(np.float64, copy=False)
  scale = float(np.mean(np.linalg.norm(features, axis=1)))
  errors.require(scale > 0, 'features are all zero, so no margin exists')
  z = features * (labels / scale)[:, None]  # rows z_i = y_i phi_i / s

  progress = _Progress(n, tolerance, max_iterations, check_every, max_seconds,
                       log)
  w = np.zeros(z.shape[1])
  g = np.zeros(z.shape[1])
  a = np.zeros(n)
  b = np.zeros(n)
  best_w = np.zeros(z.shape[1])
  iteration = 0
  while True:
    margins = z @ w
    if iteration > 0:
      if progress.observe_iterate(iteration, a, margins, np.linalg.norm(w)):
        best_w[:] = w
      b_sum = b.sum()
      if b_sum > 0:
        progress.observe_upper(np.linalg.norm(g) / b_sum)
    q = _softmax_of_negative(margins)
    z_q = z.T @ q
    progress.observe_upper(np.linalg.norm(z_q))
    if progress.is_check(iteration):
      reason = progress.stop_reason(iteration)
      if reason is not None:
        break
    beta = iteration / (iteration + 1.0)
    g += z_q
    g *= beta
    w += g
    w += z_q
    b += q
    b *= beta
    a += b
    a += q
    iteration += 1
  return progress.result(labels=labels, scale=scale,
                         margin=progress.best_lower, iteration=iteration,
                         stop_reason=reason, solver='primal',
                         weights=best_w / scale)


# ----------------------------------------------------------------------------
# Using a result on new data.


def decision_function(result: MarginResult,
                      cross_gram: np.ndarray) -> np.ndarray:
  """Decision values f(x) = sum_i dual_coef[i] K(x, x_i) on new inputs.

  Args:
    result: a `MarginResult` from this module.
    cross_gram: (n_test, n_train) K(x_test, x_train) for the ORIGINAL
      (unscaled) kernel the result was fitted on.

  Returns:
    (n_test,) float64 decision values; > 0 predicts the plus class.

  Raises:
    AfterKernelError: wrong shape or NaN/inf entries in cross_gram.
  """
  cross_gram = np.asarray(cross_gram)
  n_train = result.dual_coef.shape[0]
  errors.require(
      cross_gram.ndim == 2 and cross_gram.shape[1] == n_train,
      f'cross_gram must be (n_test, {n_train}) K(x_test, x_train), got shape '
      f'{cross_gram.shape}')
  _require_finite(cross_gram, 'cross_gram')
  if cross_gram.dtype == np.float32:
    # Keep a float32 product: mixing dtypes would copy the whole matrix.
    return (cross_gram @ result.dual_coef.astype(np.float32)).astype(
        np.float64)
  return np.asarray(cross_gram, dtype=np.float64) @ result.dual_coef


def predict_labels(result: MarginResult, cross_gram: np.ndarray) -> np.ndarray:
  """Predicted labels in {0, 1} as float32 (1 where the decision is > 0).

  Args:
    result: a `MarginResult` from this module.
    cross_gram: (n_test, n_train) K(x_test, x_train), original kernel.

  Returns:
    (n_test,) float32 in {0, 1}.
  """
  return (decision_function(result, cross_gram) > 0).astype(np.float32)


def test_error(result: MarginResult, cross_gram: np.ndarray,
               test_labels: np.ndarray) -> float:
  """Fraction of test examples misclassified (a decision of exactly 0 = minus).

  Args:
    result: a `MarginResult` from this module.
    cross_gram: (n_test, n_train) K(x_test, x_train), original kernel.
    test_labels: (n_test,) in {0, 1} or {-1, +1}; one class is allowed.

  Returns:
    The error rate in [0, 1].

  Raises:
    AfterKernelError: shape mismatch or labels not binary.
  """
  decision = decision_function(result, cross_gram)
  signs = _signed_labels(test_labels, decision.shape[0], 'test_labels',
                         need_two_classes=False)
  return float(np.mean(np.where(decision > 0, 1.0, -1.0) != signs))
