"""Ji-Srebro-Telgarsky dual acceleration (ICML 2021, Alg. 1): the JST solvers.

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
from separable, not a max-margin solution). The 'exact' solver (exact.py)
detects this case early.

Solvers here, all returning a `MarginResult`:
  'working_set' (the default up to 0.1.x): 'dual' on the full Gram until the relative gap is
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

import math
import time
from typing import Callable, Optional

import numpy as np

from afterkernel.margin import certificate

# A 1e-4 gap took ~300 / margin iterations: this covers margins >= ~0.015.
DEFAULT_MAX_ITERATIONS = 20_000
# A 1e-4 gap took ~5000-8000 / margin O(n) steps: covers margins >= ~0.01.
DEFAULT_STOCHASTIC_MAX_ITERATIONS = 1_000_000
# A check costs one extra Gram mat-vec ('dual'), i.e. +10% time at this value.
DEFAULT_CHECK_EVERY = 10
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


def _observe(progress, iteration: int, a: np.ndarray, u: np.ndarray,
             b: np.ndarray, v: np.ndarray) -> None:
  """Feeds both JST solvers' bounds to `progress`.

  The lower bound from the iterate a (u = G_y a), the upper bound from the
  averaged dual point b (v = G_y b) when it is not zero.
  """
  progress.observe_iterate(iteration, a, u, math.sqrt(max(a @ u, 0.0)))
  b_sum = b.sum()
  if b_sum > 0:
    progress.observe_upper(math.sqrt(max(b @ v, 0.0)) / b_sum)


def scaled_gram_operator(gram: np.ndarray, labels: np.ndarray, scale: float,
                         gram_matvec: Optional[Callable[[np.ndarray],
                                                        np.ndarray]] = None):
  """Returns (matvec, row, support_matvec) for G_y = diag(y) K diag(y) / s^2.

  Applying the signs and the scale to the vector costs O(n) per product and
  keeps the only n x n array the caller's (converted once to the solver
  dtype). `gram_matvec` (v -> K v in float64, e.g. on a GPU, see `device`)
  replaces the host products when given; then every product is a full one
  (on a device a full product costs less than gathering support rows).
  """
  inv_scale_sq = 1.0 / scale**2
  dtype = gram.dtype
  by_rows = not (gram.flags.f_contiguous and not gram.flags.c_contiguous)

  def matvec(vector: np.ndarray) -> np.ndarray:
    if gram_matvec is not None:
      return labels * gram_matvec(labels * vector) * inv_scale_sq
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
    if gram_matvec is not None or len(keep) > DENSE_FRACTION * len(vector):
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


def run_dual(matvec: Callable[[np.ndarray], np.ndarray],
              support_matvec: Callable[[np.ndarray], np.ndarray], n: int,
              progress: certificate.Progress) -> tuple:
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
      _observe(progress, iteration, a, u, b, v)
    q = certificate.softmax_of_negative(u)
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


def run_stochastic(matvec: Callable[[np.ndarray], np.ndarray],
                    row: Callable[[int], np.ndarray], n: int,
                    progress: certificate.Progress, seed: int) -> tuple:
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
      _observe(progress, iteration, a, u, b, v)
    q = certificate.softmax_of_negative(u)
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


def solve_working_set(gram: np.ndarray, labels: np.ndarray, scale: float,
                       tolerance: float, max_iterations: int,
                       check_every: int, max_seconds: Optional[float],
                       log: Optional[Callable[[str], None]]
                       ) -> certificate.MarginResult:
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
  matvec, _, support_matvec = scaled_gram_operator(gram, labels, scale)
  coarse = certificate.Progress(n, max(tolerance, WORKING_SET_COARSE_TOLERANCE),
                     max_iterations, check_every, max_seconds, log)
  iterations, reason = run_dual(matvec, support_matvec, n, coarse)
  history = list(coarse.history)
  best_coef, best_upper = coarse.best_coef.copy(), coarse.best_upper
  margins = matvec(best_coef)
  norm = math.sqrt(max(best_coef @ margins, 0.0))
  best_lower = margins.min() / norm if norm > 0 else -math.inf

  def gap():
    return ((best_upper - best_lower) / best_upper if best_upper > 0
            else math.inf)

  if reason == certificate.STOP_TOLERANCE and gap() > tolerance and norm > 0:
    q = certificate.softmax_of_negative(margins)
    smallest = np.argsort(margins)[:max(64, int(np.sum(q > 1e-12)))]
    working = np.union1d(np.flatnonzero(q > q.max() * SUPPORT_CUTOFF),
                         smallest)
    reason = certificate.STOP_MAX_ITERATIONS
    for _ in range(WORKING_SET_MAX_ROUNDS):
      remaining = (None if max_seconds is None else
                   max(max_seconds - (time.perf_counter() - start), 1e-3))
      sub_gram = np.ascontiguousarray(gram[np.ix_(working, working)])
      sub_matvec, _, sub_support = scaled_gram_operator(
          sub_gram, labels[working], scale)
      # Each round gets the full iteration budget: its iterations cost
      # |W|^2, not n^2, and the tail needs as many as the full problem.
      sub = certificate.Progress(len(working), tolerance, max_iterations,
                                 check_every,
                      remaining, None)
      sub_iterations, sub_reason = run_dual(sub_matvec, sub_support,
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
        reason = certificate.STOP_TOLERANCE
        break
      if sub_reason != certificate.STOP_TOLERANCE:
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
  return certificate.MarginResult(
      dual_coef=labels * best_coef / scale**2, margin=float(margin),
      margin_upper_bound=float(best_upper), feature_scale=float(scale),
      iterations=iterations, converged=reason == certificate.STOP_TOLERANCE,
      stop_reason=reason, history=history, solver='working_set',
      seconds=time.perf_counter() - start)


def solve_primal(z: np.ndarray, labels: np.ndarray, scale: float,
                 tolerance: float, max_iterations: int, check_every: int,
                 max_seconds: Optional[float],
                 log: Optional[Callable[[str], None]]
                 ) -> certificate.MarginResult:
  """Algorithm 1 on w in R^P for rows z_i = y_i phi_i / s (the 'primal' solver).

  Two (n, P) mat-vecs per iteration (Z w and Z^T q). The coefficients a with
  w = Z^T a are tracked alongside, so the result also carries `dual_coef`
  for use with a cross-Gram.
  """
  n = z.shape[0]
  progress = certificate.Progress(n, tolerance, max_iterations, check_every,
                                  max_seconds,
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
    q = certificate.softmax_of_negative(margins)
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

