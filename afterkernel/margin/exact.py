"""The exact hard-margin solver: greedy dual coordinate descent (the default).

The no-bias hard-margin SVM on features z_i = y_i phi(x_i) / s (mean norm 1)
has the dual

  min_{a >= 0}  D(a) = 1/2 a^T Q a - 1^T a,   Q = diag(y) K diag(y) / s^2,

whose solution a* gives the max-margin direction w* = Z^T a* and the margin
gamma* = 1 / ||w*|| (at a*, (Q a*)_i >= 1 with equality on the support
vectors, and a*^T Q a* = sum(a*)). As in liblinear's dual coordinate descent
and libsvm's SMO, one coordinate moves at a time to its exact minimizer,

  a_i <- max(0, a_i - g_i / Q_ii),   g = Q a - 1 (kept up to date: one Gram
                                                  row, O(n), per step),

and the coordinate is chosen greedily: the one whose projected Newton step
decreases D the most (libsvm's second-order working-set selection for one
variable; without a bias there is no equality constraint, so a single
coordinate suffices). The selection scan is fused with the gradient update,
so a step is one pass over one Gram row; steps run compiled by numba.

Certificate: every `check_every` steps the bounds of `certificate.bounds`
are evaluated on the current a (O(n) from g): lower = min_i (Q a)_i /
sqrt(a^T Q a), the margin of w = Z^T a over all examples, and upper =
sqrt(a^T Q a) / sum(a). The run stops when (upper - lower) / upper <=
tolerance, after recomputing g exactly (one Gram mat-vec) so the reported
bounds carry no accumulated rounding; the returned `dual_coef` is
y * a / s^2, from which `certificate.certificate` recomputes both bounds.

Non-separable data (0 in the convex hull of the z_i): D is unbounded below,
a grows without limit, and upper(a) -> 0. The run stops with stop_reason
'not_separable' as soon as upper(a) <= NOT_SEPARABLE_MARGIN (a simplex
point p = a / sum(a) with ||Z^T p|| that small is the evidence;
`dual_coef` is proportional to it).

When coordinate descent is too slow: its number of steps grows with the
conditioning of Q and with 1 / margin. On barely separable Grams (CIFAR-10
cats vs dogs, VGG-like FNTK, gamma* ~ 1e-3) it does not certify in 10^7
steps, and on low-rank non-separable ones (conjugate kernels) it needs
10^6-10^8. The solver 'exact' of `api.max_margin_from_gram` therefore runs
this coordinate descent for at most `api.switch_steps(n)` = max(200 n,
100,000) steps; if it has neither certified the gap nor found the data not
separable by then (and the caller's budget is larger, and two float64 n x n
matrices fit `interior.DEFAULT_MAX_DENSE_GIB`), it logs 'switching to
interior point: ...' and solves the problem with `interior` (Mehrotra's
method, 12-20 Newton steps, each a dense Cholesky); such results carry the
solver name 'exact+interior_point'. Problems certified within the switch
budget (every MNIST Gram measured: 3-10 steps per example) are solved by
this module alone, bit for bit as before (BENCHMARKS.md, "Hard Grams").
"""

import functools
import math
import time
from typing import Callable, Optional

import numpy as np

from afterkernel import progress
from afterkernel.margin import certificate

# Coordinate steps are cheap (one Gram row); a check is O(n) numpy work, so
# this keeps checks at a few percent of the time.
DEFAULT_CHECK_EVERY = 200
# Measured on MNIST 3-vs-8 FNTK Grams: ~3-10 steps per example to a 1e-4
# gap; the budget covers far harder problems (and non-separable data stop
# on their own, see NOT_SEPARABLE_MARGIN).
DEFAULT_MAX_ITERATIONS = 10_000_000
# g is recomputed exactly (one mat-vec with the current Gram block) every
# this many checks, bounding the rounding accumulated by its O(n) updates;
# on all examples whenever the gap may have met the tolerance.
RESYNC_EVERY_CHECKS = 64
# Separability probe (MDM steps on the simplex problem from the current
# p = a / sum(a)): every this many checks while the margin is still <= 0;
# steps per probe (each ~2 coordinate steps).
PROBE_EVERY_CHECKS = 8
PROBE_STEPS = 100
# Shrinking copies the active block of the Gram once the active set falls
# below this fraction of the current problem (the copy is then at most 1/16
# of its bytes).
COMPACT_FRACTION = 0.25
# Shrinking starts after this many steps per example (before, gradients are
# still far from their final signs).
SHRINK_AFTER_STEPS_PER_EXAMPLE = 0.1
STOP_STALLED = certificate.STOP_STALLED


class _Compiled:
  """A function numba compiles on its first call.

  numba is imported then, not with afterkernel: importing it takes about
  0.5 s, which every `import afterkernel` would pay for a solver it may not
  use. `cache=True` keeps the compiled code on disk between processes.
  """

  def __init__(self, function, **options):
    self._function = function
    self._options = options
    self._compiled = None
    functools.update_wrapper(self, function)

  def _compile(self):
    import numba  # pylint: disable=g-import-not-at-top
    self._compiled = numba.njit(**self._options)(self._function)

  def __call__(self, *args):
    if self._compiled is None:
      self._compile()
    try:
      return self._compiled(*args)
    except OSError:
      if not self._options.get('cache'):
        raise
      # The on-disk cache could not be written (full disk, file-size limit,
      # read-only install): compile in memory; the results are the same.
      self._options = dict(self._options, cache=False)
      self._compile()
      return self._compiled(*args)


def _jit(**options):
  return lambda function: _Compiled(function, **options)


@_jit(cache=True, nogil=True)
def _coordinate_steps(gram, signs, inv_scale_sq, diagonal, inverse_diagonal,
                      coef, grad, active, index,
                      steps):  # pragma: no cover (compiled)
  """Up to `steps` greedy coordinate updates on the `active` coordinates.

  Returns:
    (the next coordinate to update, steps done, the largest projected
    gradient |PG_j| over the active set at the last scan). Fewer steps than
    asked means the best step was zero: no single-coordinate move decreases
    D in float64 (the KKT conditions hold to rounding on the active set).
  """
  violation = 0.0
  for step in range(steps):
    new = coef[index] - grad[index] / diagonal[index]
    if new < 0.0:
      new = 0.0
    delta = new - coef[index]
    if delta == 0.0:
      return index, step, violation
    coef[index] = new
    scale = delta * signs[index] * inv_scale_sq
    row = gram[index]
    best_gain = -1.0
    best = index
    violation = 0.0
    for k in range(active.shape[0]):
      j = active[k]
      g = grad[j] + scale * signs[j] * row[j]
      grad[j] = g
      a = coef[j]
      if a > 0.0:
        # The projected Newton step on coordinate j and its decrease of D.
        move = -g * inverse_diagonal[j]
        if move < -a:
          move = -a
        gain = -(g * move + 0.5 * diagonal[j] * move * move)
        if abs(g) > violation:
          violation = abs(g)
      elif g < 0.0:
        gain = 0.5 * g * g * inverse_diagonal[j]  # the unclipped step
        if -g > violation:
          violation = -g
      else:
        continue  # at 0 with g >= 0: no move decreases D
      if gain > best_gain:
        best_gain = gain
        best = j
    index = best
  return index, steps, violation


class _Problem:
  """The examples the coordinate steps run on: all, or a compacted subset.

  Attributes:
    members: global indices of the examples (None: all, then the arrays
      below are the caller's own).
    gram, signs, diagonal, inverse_diagonal, coef, grad: the Gram block and
      per-example arrays restricted to `members` (Q_ii on the diagonal).
  """

  def __init__(self, gram, signs, diagonal, coef, grad, members=None):
    self.members = members
    self.gram = gram
    self.signs = signs
    self.diagonal = diagonal
    self.inverse_diagonal = 1.0 / diagonal
    self.coef = coef
    self.grad = grad

  def compact(self, full_gram: np.ndarray, keep: np.ndarray) -> '_Problem':
    """The sub-problem of local examples `keep` (sorted), Gram block copied."""
    members = keep if self.members is None else self.members[keep]
    return _Problem(
        np.ascontiguousarray(full_gram[np.ix_(members, members)]),
        self.signs[keep], self.diagonal[keep], self.coef[keep].copy(),
        self.grad[keep].copy(), members)

  def scatter(self, coef: np.ndarray) -> None:
    """Writes the sub-problem's a into the full a (0 outside members)."""
    if self.members is not None:
      coef[self.members] = self.coef


def _gain(coef: np.ndarray, grad: np.ndarray, diagonal: np.ndarray,
          index) -> np.ndarray:
  """Decrease of D by the projected Newton step on coordinate(s) `index`."""
  move = np.maximum(-grad[index] / diagonal[index], -coef[index])
  return -(grad[index] * move + 0.5 * diagonal[index] * move * move)


def _best_coordinate(coef: np.ndarray, grad: np.ndarray,
                     diagonal: np.ndarray, active: np.ndarray) -> int:
  """The active coordinate whose step decreases D the most."""
  return int(active[np.argmax(_gain(coef, grad, diagonal, active))])


# fastmath lets the row sums vectorize (it reorders the additions, as BLAS
# does); the products and sums stay float64.
@_jit(cache=True, nogil=True, fastmath=True)
def _float64_matvec(gram, vector):  # pragma: no cover (compiled)
  """gram @ vector with every product and sum in float64 (any gram dtype)."""
  n = gram.shape[0]
  out = np.empty(n)
  for i in range(n):
    row = gram[i]
    total = 0.0
    for j in range(gram.shape[1]):
      total += np.float64(row[j]) * vector[j]
    out[i] = total
  return out


@_jit(cache=True, nogil=True)
def _min_norm_steps(gram, signs, inv_scale_sq, diagonal, p, q_p, steps,
                    target_sq):  # pragma: no cover (compiled)
  """Pairwise (MDM) steps on min_{p in simplex} p^T Q p, q_p = Q p kept.

  Mitchell-Demyanov-Malozemov: move mass from the supported example with
  the largest (Q p)_j to the one with the smallest (Q p)_i, by exact line
  search. When 0 is inside the convex hull of the z_i, ||Z^T p|| falls to
  0 in a few steps (where coordinate descent on the unbounded dual needs
  ~1 / ||Z^T p|| steps).

  Returns:
    (steps done, p^T Q p at the end); stops early once p^T Q p <= target_sq.
  """
  n = p.shape[0]
  norm_sq = 0.0
  for step in range(steps):
    low, high = 1e300, -1e300
    i, j = 0, -1
    norm_sq = 0.0
    for k in range(n):
      value = q_p[k]
      norm_sq += p[k] * value
      if value < low:
        low, i = value, k
      if p[k] > 0.0 and value > high:
        high, j = value, k
    if norm_sq <= target_sq or j < 0 or high <= low:
      return step, norm_sq
    row_i = gram[i]
    row_j = gram[j]
    curvature = (diagonal[i] + diagonal[j] -
                 2.0 * signs[i] * signs[j] * row_i[j] * inv_scale_sq)
    move = p[j]
    if curvature > 0.0 and (high - low) / curvature < move:
      move = (high - low) / curvature
    p[i] += move
    p[j] -= move
    scale_i = move * signs[i] * inv_scale_sq
    scale_j = move * signs[j] * inv_scale_sq
    for k in range(n):
      q_p[k] += signs[k] * (scale_i * row_i[k] - scale_j * row_j[k])
  return steps, norm_sq


def _separability_probe(gram, signs, inv_scale_sq, diagonal, p, q_p,
                        matvec=None):
  """MDM steps from the simplex point p (Q p = q_p); returns the evidence.

  Returns:
    p (with p^T Q p recomputed exactly <= NOT_SEPARABLE_MARGIN^2), or None.
  """
  target_sq = certificate.NOT_SEPARABLE_MARGIN**2
  _, norm_sq = _min_norm_steps(gram, signs, inv_scale_sq, diagonal, p, q_p,
                               PROBE_STEPS, target_sq)
  if norm_sq > target_sq:
    return None
  exact_q_p = _exact_gradient(gram, signs, inv_scale_sq, p, matvec) + 1.0
  if p @ exact_q_p > target_sq:
    return None
  return p


def _exact_gradient(gram: np.ndarray, signs: np.ndarray, inv_scale_sq: float,
                    coef: np.ndarray,
                    matvec: Optional[Callable[[np.ndarray], np.ndarray]] = None
                    ) -> np.ndarray:
  """g = Q a - 1 by one Gram mat-vec in float64 (the incremental g's reference).

  A float32 Gram is read as is and multiplied in float64 (float32 -> float64
  is exact), so the certificate is that of the float32 matrix itself,
  without an n x n float64 copy. `matvec` (v -> K v for this very `gram`,
  e.g. on a GPU, see `device`) replaces the host product when given.
  """
  vector = signs * coef
  if matvec is not None:
    product = matvec(vector)
  elif gram.dtype == np.float64:
    product = gram @ vector
  else:
    product = _float64_matvec(gram, vector)
  return signs * product * inv_scale_sq - 1.0


def solve_exact(gram: np.ndarray, labels: np.ndarray, scale: float,
                tolerance: float, max_iterations: int, check_every: int,
                max_seconds: Optional[float],
                log: Optional[Callable[[str], None]],
                shrinking: bool = True,
                matvec: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                initial_coef: Optional[np.ndarray] = None
                ) -> certificate.MarginResult:
  """Greedy dual coordinate descent to a certified relative gap.

  Args:
    gram: (n, n) symmetric PSD Gram, C-contiguous, float64 or float32 (read
      as is: every product is accumulated in float64).
    labels: (n,) float64 in {-1, +1}.
    scale: s = mean_i sqrt(K_ii) > 0.
    tolerance: stop once the current iterate's relative gap is <= this.
    max_iterations: coordinate steps at most.
    check_every: steps between certificate checks.
    max_seconds: optional wall-clock limit, tested at checks.
    log: optional progress printer (every LOG_EVERY_SECONDS).
    shrinking: skip coordinates that are clearly 0 at the optimum between
      exact checks (as libsvm and liblinear do); the certificate is always
      evaluated on all examples.
    matvec: v -> K v on the full Gram (float64), e.g. on a GPU
      (`device.gram_matvec`); None: the host product. The coordinate steps
      and the shrunk problems' resyncs always run on the host.
    initial_coef: optional (n,) a >= 0 to start from instead of 0, e.g.
      an earlier solve's `labels * dual_coef * scale**2` (a warm start).

  Returns:
    A `MarginResult` (solver 'exact') whose `margin` and
    `margin_upper_bound` are the exact bounds of its own `dual_coef`.
  """
  start = time.perf_counter()
  n = len(labels)
  inv_scale_sq = 1.0 / scale**2
  diagonal = np.diagonal(gram).astype(np.float64) * inv_scale_sq
  coef = (np.zeros(n) if initial_coef is None else
          np.array(initial_coef, dtype=np.float64))
  history = []
  zero = np.flatnonzero(diagonal == 0)
  if len(zero):
    # phi_i = 0: every w has margin 0 on example i, and p = e_i is a simplex
    # point with ||Z^T p|| = 0.
    coef = np.zeros(n)
    coef[zero[0]] = 1.0
    return _result(coef, labels, scale, 0.0, 0.0, 0,
                   certificate.STOP_NOT_SEPARABLE, history, start)
  signs = np.ascontiguousarray(labels, dtype=np.float64)
  grad = (-np.ones(n) if initial_coef is None else
          _exact_gradient(gram, signs, inv_scale_sq, coef, matvec))
  problem = _Problem(gram, signs, diagonal, coef, grad)
  active = np.arange(n)
  index = _best_coordinate(coef, grad, diagonal, active)
  iteration = 0
  checks = 0
  best_lower, best_upper = -math.inf, math.inf
  best_coef = coef.copy()
  last_log = start
  eta = progress.GapEta(tolerance)
  reason = None
  while reason is None:
    steps = min(check_every, max_iterations - iteration)
    index, done, violation = _coordinate_steps(
        problem.gram, problem.signs, inv_scale_sq, problem.diagonal,
        problem.inverse_diagonal, problem.coef, problem.grad, active, index,
        steps)
    iteration += done
    stalled = done < steps
    checks += 1
    # a > 0 only on active coordinates, so a^T Q a and sum(a) (the upper
    # bound) are exact; the margin needs (Q a)_i of every example.
    lower, upper = certificate.bounds(problem.grad[active] + 1.0,
                                      problem.coef[active])
    gap = (upper - lower) / upper if upper > 0 else math.inf
    certified = len(active) == n
    if (checks % PROBE_EVERY_CHECKS == 0 and lower <= 0 and
        problem.members is None and coef.sum() > 0):
      # Still no positive margin: look for 0 in the convex hull directly.
      total = coef.sum()
      evidence = _separability_probe(gram, signs, inv_scale_sq, diagonal,
                                     coef / total, (grad + 1.0) / total,
                                     matvec)
      if evidence is not None:
        return _not_separable(gram, signs, inv_scale_sq, evidence, labels,
                              scale, iteration, history, start, matvec)
    if checks % RESYNC_EVERY_CHECKS == 0:
      # Drop the drift of the O(n) updates (on the current examples only).
      problem.grad = _exact_gradient(problem.gram, problem.signs,
                                     inv_scale_sq, problem.coef)
    if (gap <= tolerance or stalled or
        upper <= certificate.NOT_SEPARABLE_MARGIN):
      # Decide on exact numbers over all examples, and bring shrunk
      # coordinates back.
      problem.scatter(coef)
      grad = _exact_gradient(gram, signs, inv_scale_sq, coef, matvec)
      lower, upper = certificate.bounds(grad + 1.0, coef)
      gap = (upper - lower) / upper if upper > 0 else math.inf
      certified = True
      problem = _Problem(gram, signs, diagonal, coef, grad)
      if len(active) < n:
        index = _best_coordinate(coef, grad, diagonal, np.arange(n))
        stalled = stalled and _gain(coef, grad, diagonal, index) <= 0
      active = np.arange(n)
    elif shrinking and iteration >= SHRINK_AFTER_STEPS_PER_EXAMPLE * n:
      # Like liblinear: a coordinate at 0 whose gradient exceeds the largest
      # violation is very likely 0 at the optimum; stop scanning it until
      # the next exact check.
      keep = (problem.coef[active] > 0) | (problem.grad[active] <= violation)
      if not keep.all():
        active = active[keep]
        if len(active) < COMPACT_FRACTION * len(problem.coef):
          # Copy the active block of the Gram: steps then read |A| contiguous
          # entries instead of touching every cache line of a full row.
          position = int(np.searchsorted(active, index))
          found = position < len(active) and active[position] == index
          problem = problem.compact(gram, active)
          index = position if found else -1
          active = np.arange(len(active))
        if index < 0 or (problem.coef[index] == 0 and
                         problem.grad[index] > violation):
          index = _best_coordinate(problem.coef, problem.grad,
                                   problem.diagonal, active)
    if certified and lower > best_lower:
      best_lower, best_coef = lower, coef.copy()
    best_upper = min(best_upper, upper)
    history.append((iteration, best_lower, best_upper))
    now = time.perf_counter()
    if log is not None and now - last_log >= certificate.LOG_EVERY_SECONDS:
      last_log = now
      log(f'    step {iteration}: margin {lower:.6g}, upper bound '
          f'{upper:.6g}, relative gap {gap:.2e} (target {tolerance:.0e}), '
          f'{len(active)} active examples{eta.text(gap)}')
    if certified and gap <= tolerance:
      reason = certificate.STOP_TOLERANCE
    elif certified and upper <= certificate.NOT_SEPARABLE_MARGIN:
      reason = certificate.STOP_NOT_SEPARABLE
    elif certified and stalled:
      reason = STOP_STALLED
    elif iteration >= max_iterations:
      reason = certificate.STOP_MAX_ITERATIONS
    elif max_seconds is not None and now - start >= max_seconds:
      reason = certificate.STOP_MAX_SECONDS
  problem.scatter(coef)
  if reason not in (certificate.STOP_TOLERANCE,
                    certificate.STOP_NOT_SEPARABLE):
    # Unconverged: return the iterate with the best certified margin (the
    # last one if none was certified yet), with its own exact bounds.
    coef = best_coef if best_lower > -math.inf else coef
  if reason != certificate.STOP_TOLERANCE:
    grad = _exact_gradient(gram, signs, inv_scale_sq, coef, matvec)
    lower, upper = certificate.bounds(grad + 1.0, coef)
  return _result(coef, labels, scale, lower, upper, iteration, reason,
                 history, start)


def _not_separable(gram, signs, inv_scale_sq, evidence, labels, scale,
                   iteration, history, start,
                   matvec=None) -> certificate.MarginResult:
  """The result for a simplex point p with ||Z^T p|| <= NOT_SEPARABLE_MARGIN."""
  lower, upper = certificate.bounds(
      _exact_gradient(gram, signs, inv_scale_sq, evidence, matvec) + 1.0,
      evidence)
  history.append((iteration, lower, upper))
  return _result(evidence, labels, scale, lower, upper, iteration,
                 certificate.STOP_NOT_SEPARABLE, history, start)


def _result(coef, labels, scale, lower, upper, iteration, reason, history,
            start) -> certificate.MarginResult:
  return certificate.MarginResult(
      dual_coef=labels * coef / scale**2, margin=float(lower),
      margin_upper_bound=float(upper), feature_scale=float(scale),
      iterations=int(iteration),
      converged=reason == certificate.STOP_TOLERANCE, stop_reason=reason,
      history=history, solver='exact', seconds=time.perf_counter() - start)
