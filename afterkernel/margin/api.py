"""The entry points: max-margin on a Gram or on features, and prediction.

`max_margin_from_gram` checks its input once (shape, labels, finiteness,
symmetry, positive semi-definiteness) and hands the Gram to the chosen
solver; `max_margin_from_features` solves in the primal or, when there are
more features than examples, on their Gram. Every unconverged result is
announced by an `UnconvergedWarning` naming its stop reason.
"""

import math
import warnings
from typing import Callable, Optional

import numpy as np

from afterkernel import errors
from afterkernel.margin import certificate
from afterkernel.margin import checks
from afterkernel.margin import device as device_lib
from afterkernel.margin import exact
from afterkernel.margin import interior
from afterkernel.margin import jst
from afterkernel.margin import libsvm

# 'exact': greedy dual coordinate descent (exact.py), finished by the
# interior-point method on problems it does not certify quickly;
# 'interior_point': Mehrotra's method on the simplex problem (interior.py);
# 'working_set', 'dual', 'stochastic', 'primal': Ji-Srebro-Telgarsky Alg. 1
# and variants (jst.py); 'jst1' / 'jst2': the original script's names of
# Alg. 1 and its stochastic variant (= 'dual' / 'stochastic'); 'sklearn':
# libsvm with a bias, the baseline (libsvm.py).
SOLVERS = ('exact', 'working_set', 'dual', 'primal', 'stochastic', 'jst1',
           'jst2', 'sklearn', interior.SOLVER)
# Certified to a 1e-4 gap at full MNIST scale faster than libsvm
# (BENCHMARKS.md, "Max-margin solvers").
DEFAULT_SOLVER = 'exact'
# The original script's solver names.
SOLVER_ALIASES = {'jst1': 'dual', 'jst2': 'stochastic'}
GRAM_SOLVERS = tuple(name for name in SOLVERS if name != 'primal')


# 'exact' runs coordinate descent for at most this many steps per example
# (and at least MIN_SWITCH_STEPS) before switching to the interior point
# (BENCHMARKS.md, "Hard Grams"): MNIST Grams certify within 3-10 steps per
# example, the CIFAR-10 VGG FNTK not within 1000. At n = 10^4, 2 * 10^6
# steps take about a third of the interior point's own time, so a switched
# run costs at most ~1.3x the interior point alone.
SWITCH_STEPS_PER_EXAMPLE = 200
MIN_SWITCH_STEPS = 100_000
# The solver name of an 'exact' result finished by the interior point.
SWITCHED_SOLVER = 'exact+interior_point'
# The solvers that continue from an earlier result (`warm_start=`).
WARM_START_SOLVERS = ('exact', interior.SOLVER)
# Results whose answer came from the interior point.
INTERIOR_SOLVERS = (interior.SOLVER, SWITCHED_SOLVER)


class UnconvergedWarning(RuntimeWarning):
  """A max-margin solve stopped before its certified gap met the tolerance."""


def default_max_iterations(solver: str) -> int:
  """The iteration budget a solver gets when the caller gives none."""
  solver = SOLVER_ALIASES.get(solver, solver)
  if solver == 'exact':
    return exact.DEFAULT_MAX_ITERATIONS
  if solver == 'stochastic':
    return jst.DEFAULT_STOCHASTIC_MAX_ITERATIONS
  if solver == interior.SOLVER:
    return interior.DEFAULT_MAX_ITERATIONS
  return jst.DEFAULT_MAX_ITERATIONS


def _warn_if_unconverged(result: certificate.MarginResult) -> None:
  if result.converged:
    return
  warnings.warn(
      f'max-margin solver {result.solver!r} stopped unconverged '
      f'(stop_reason={result.stop_reason!r}) after {result.iterations} '
      f'iterations: margin {result.margin:.6g}, upper bound '
      f'{result.margin_upper_bound:.6g}; the classifier is not certified to '
      'be the max-margin one', UnconvergedWarning, stacklevel=3)


def max_margin_from_gram(
    gram: np.ndarray,
    labels: np.ndarray,
    solver: str = DEFAULT_SOLVER,
    max_iterations: Optional[int] = None,
    tolerance: float = certificate.DEFAULT_TOLERANCE,
    check_every: Optional[int] = None,
    max_seconds: Optional[float] = None,
    seed: int = 0,
    dtype=np.float64,
    log: Optional[Callable[[str], None]] = None,
    device: str = device_lib.DEFAULT_DEVICE,
    warm_start: Optional[certificate.MarginResult] = None,
) -> certificate.MarginResult:
  """Hard-margin SVM (no bias) on a Gram matrix, certified by a duality gap.

  Solves max_{||w|| = 1} min_i y_i <w, phi_i / s> (s = mean_i sqrt(K_ii))
  from K alone; see the package docstring for the solvers and
  `certificate` for the bounds.

  Args:
    gram: (n, n) symmetric PSD kernel matrix K(x_i, x_j) on training inputs.
      Not modified; copied once only if its dtype differs from `dtype`.
    labels: (n,) in {0, 1} or {-1, +1} (0 means -1).
    solver: one of `SOLVERS` except 'primal'; default 'exact'.
    max_iterations: iteration budget; None means `default_max_iterations`.
    tolerance: stop once (upper - margin) / upper <= tolerance; in [0, 1).
    check_every: test the gap every this many iterations; None means the
      solver's default (10 for the JST solvers, 200 steps for 'exact').
    max_seconds: optional wall-clock limit, tested at checks (the original
      script's time limit). Setting it makes results machine-dependent.
    seed: seed of np.random.default_rng for 'stochastic' sampling.
    dtype: np.float64 (default) or np.float32 for the Gram products; float32
      halves memory and time for very large n but limits the relative
      accuracy of the margin to roughly 1e-7 / margin^2.
    log: if given, called with progress lines at most every
      LOG_EVERY_SECONDS.
    device: where the full Gram-vector products run (`device.DEVICES`):
      'auto' (default: a GPU if TensorFlow is loaded and sees one, else
      the CPU), 'cpu', 'gpu' or a TensorFlow device name. Used by 'exact'
      (its exact gradients and certificate checks; the coordinate steps stay
      on the CPU; after its switch, the interior point's), by
      'interior_point' (Q, its Cholesky factors and every product) and by
      'dual' / 'stochastic' (every product); 'sklearn' and 'working_set'
      always run on the CPU.
    warm_start: an earlier result on this Gram and labels to continue from
      (`WARM_START_SOLVERS`): coordinate descent continues from it, the
      interior point starts from it (mixed with the uniform point) after an
      `INTERIOR_SOLVERS` result; its iterations are not counted again.

  Returns:
    A `MarginResult`; `margin` is recomputed exactly for the returned
    coefficients. Unconverged results also raise an `UnconvergedWarning`.

  Raises:
    AfterKernelError: non-square, asymmetric or indefinite gram, length
      mismatch, NaN/inf entries, negative diagonal, labels not binary or of
      one class, unknown solver or bad iteration arguments.
  """
  errors.require(
      solver in GRAM_SOLVERS,
      f'solver {solver!r} is unknown for a Gram matrix: use one of '
      f'{", ".join(GRAM_SOLVERS)} (for \'primal\', call '
      'max_margin_from_features)')
  solver = SOLVER_ALIASES.get(solver, solver)
  if max_iterations is None:
    max_iterations = default_max_iterations(solver)
  if check_every is None:
    check_every = (exact.DEFAULT_CHECK_EVERY if solver == 'exact' else
                   jst.DEFAULT_CHECK_EVERY)
  checks.require_iteration_args(max_iterations, tolerance, check_every,
                                max_seconds)
  device = device_lib.resolve_device(device)
  dtype = np.dtype(dtype)
  errors.require(dtype in (np.float64, np.float32),
                 f'dtype must be float64 or float32, got {dtype}')
  gram = np.asarray(gram)
  errors.require(
      gram.ndim == 2 and gram.shape[0] == gram.shape[1],
      f'gram must be a square (n, n) matrix, got shape {gram.shape}')
  n = gram.shape[0]
  labels = checks.signed_labels(labels, n, 'labels', need_two_classes=True)
  errors.require(np.issubdtype(gram.dtype, np.number),
                 f'gram must be numeric, got dtype {gram.dtype}')
  checks.require_finite(gram, 'gram')
  diagonal = np.diagonal(gram).astype(np.float64)
  errors.require(
      diagonal.min() >= 0,
      f'gram has {int(np.sum(diagonal < 0))} negative diagonal entries; a '
      'kernel Gram matrix must be positive semidefinite')
  scale = float(np.mean(np.sqrt(diagonal)))
  errors.require(scale > 0, 'gram is all zero on its diagonal: every feature '
                 'vector is zero, so no margin exists')
  if not (solver == 'exact' and gram.dtype == np.float32):
    # 'exact' reads a float32 Gram as is (its arithmetic is float64).
    gram = np.asarray(gram, dtype=dtype)
  if not (gram.flags.c_contiguous or gram.flags.f_contiguous):
    # BLAS would otherwise copy a strided view on every product.
    gram = np.ascontiguousarray(gram)
  checks.require_symmetric(gram, float(diagonal.mean()))
  checks.require_positive_semidefinite(gram, float(diagonal.mean()))
  start = _warm_start_coef(warm_start, solver, labels, scale)
  if solver == 'exact':
    # K is symmetric: a Fortran-ordered K's transpose is C-ordered and equal.
    rows = gram if gram.flags.c_contiguous else gram.T
    result = _solve_exact(rows, labels, scale, tolerance, max_iterations,
                          check_every, max_seconds, log, device, start,
                          warm_start is not None and
                          warm_start.solver in INTERIOR_SOLVERS)
  elif solver == interior.SOLVER:
    result = interior.solve_interior_point(gram, labels, scale, tolerance,
                                           max_iterations, max_seconds, log,
                                           device=device, start_point=start)
  elif solver == 'sklearn':
    result = libsvm.solve_sklearn(gram, labels, scale, max_iterations)
  elif solver == 'working_set':
    result = jst.solve_working_set(gram, labels, scale, tolerance,
                                   max_iterations, check_every, max_seconds,
                                   log)
  else:
    result = _solve_jst_gram(gram, labels, scale, solver, tolerance,
                             max_iterations, check_every, max_seconds, seed,
                             log, device_lib.gram_matvec(gram, device, None))
  _warn_if_unconverged(result)
  return result


def _warm_start_coef(warm_start, solver, labels, scale
                     ) -> Optional[np.ndarray]:
  """The a >= 0 (scaled-feature units) of `warm_start`, checked; or None."""
  if warm_start is None:
    return None
  _require_warm_start_solver(solver)
  coef = certificate.scaled_coefficients(warm_start, labels, scale,
                                         'warm_start')
  return coef if coef.sum() > 0 else None


def _require_warm_start_solver(solver: str) -> None:
  errors.require(
      solver in WARM_START_SOLVERS,
      f'warm_start is supported by the solvers '
      f'{", ".join(WARM_START_SOLVERS)}, not {solver!r}')


def switch_steps(n: int) -> int:
  """Coordinate steps after which 'exact' switches to the interior point."""
  return max(SWITCH_STEPS_PER_EXAMPLE * n, MIN_SWITCH_STEPS)


def _solve_exact(gram, labels, scale, tolerance, max_iterations, check_every,
                 max_seconds, log, device, start=None,
                 interior_only=False) -> certificate.MarginResult:
  """'exact': coordinate descent, finished by the interior point if slow.

  Coordinate descent runs first, with at most `switch_steps(n)` steps; when
  it has not stopped by then (certified, or not separable) and the budget
  allows more, the interior-point method (dense Cholesky, needs
  `interior.dense_gib(n)` GiB) solves the problem, starting from coordinate
  descent's point mixed with the uniform one; the result
  with the smaller certified gap is returned, named 'exact+interior_point'
  when it is the interior point's. Runs that stop within the switch budget
  are those of coordinate descent alone, bit for bit.

  `start` (a >= 0 or None) warm-starts coordinate descent, or with
  `interior_only` (coordinate descent already ran out) the interior point.
  """
  n = len(labels)
  switch = switch_steps(n)
  fits = interior.dense_gib(n) <= interior.DEFAULT_MAX_DENSE_GIB
  if interior_only and fits:
    return interior.solve_interior_point(
        gram, labels, scale, tolerance, interior.DEFAULT_MAX_ITERATIONS,
        max_seconds, log, start_point=start, solver=SWITCHED_SOLVER,
        device=device)
  first = exact.solve_exact(
      gram, labels, scale, tolerance,
      min(max_iterations, switch) if fits else max_iterations, check_every,
      max_seconds, log, matvec=device_lib.gram_matvec(gram, device, None),
      initial_coef=start)
  if not (fits and max_iterations > switch and
          first.stop_reason == certificate.STOP_MAX_ITERATIONS):
    return first
  if log is not None:
    log(f'    switching to interior point: coordinate descent not certified '
        f'after {first.iterations} steps ({switch // n} per example; margin '
        f'{first.margin:.6g}, upper bound {first.margin_upper_bound:.6g}); '
        f'dense Cholesky of {n} x {n} ({interior.dense_gib(n):.1f} GiB)')
  remaining = None if max_seconds is None else max(
      max_seconds - first.seconds, 0.0)
  # Starting from coordinate descent's point (mixed with the uniform one)
  # saved 1-2 of 12-14 Newton steps on the CIFAR-10 Grams.
  coef = labels * first.dual_coef
  second = interior.solve_interior_point(
      gram, labels, scale, tolerance, interior.DEFAULT_MAX_ITERATIONS,
      remaining, log, start_point=coef if coef.sum() > 0 else None,
      solver=SWITCHED_SOLVER, device=device)
  if second.stop_reason not in (certificate.STOP_TOLERANCE,
                                certificate.STOP_NOT_SEPARABLE) and (
                                    _gap_of(first) <= _gap_of(second)):
    return first
  second.iterations += first.iterations
  second.history = first.history + [
      (step + first.iterations, lower, upper)
      for step, lower, upper in second.history]
  second.seconds += first.seconds
  return second


def _gap_of(result: certificate.MarginResult) -> float:
  return certificate.relative_gap(result.margin, result.margin_upper_bound)


def _solve_jst_gram(gram, labels, scale, solver, tolerance, max_iterations,
                    check_every, max_seconds, seed, log,
                    gram_matvec) -> certificate.MarginResult:
  """'dual' or 'stochastic' (Algorithm 1 on coefficients)."""
  n = len(labels)
  matvec, row, support_matvec = jst.scaled_gram_operator(gram, labels, scale,
                                                         gram_matvec)
  progress = certificate.Progress(n, tolerance, max_iterations, check_every,
                                  max_seconds, log)
  if solver == 'dual':
    iteration, reason = jst.run_dual(matvec, support_matvec, n, progress)
  else:
    iteration, reason = jst.run_stochastic(matvec, row, n, progress, seed)
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
    max_iterations: Optional[int] = None,
    tolerance: float = certificate.DEFAULT_TOLERANCE,
    check_every: Optional[int] = None,
    max_seconds: Optional[float] = None,
    log: Optional[Callable[[str], None]] = None,
    solver: Optional[str] = None,
    warm_start: Optional[certificate.MarginResult] = None,
) -> certificate.MarginResult:
  """Hard-margin SVM (no bias) on explicit features phi(x_i).

  With P features and n examples, solver None picks the cheaper route: for
  P <= n, Algorithm 1 in the primal ('primal', O(nP) per iteration); for
  P > n the Gram Phi Phi^T (float64, formed once) and `DEFAULT_SOLVER` on
  it, since every solver then touches n^2 < nP numbers per pass. An
  explicit 'primal' forces the primal recursion; 'interior_point' with
  P < n solves its Newton systems on the P x P side (Woodbury, n P^2 per
  step, no n x n matrix); any other name of `SOLVERS` goes through the
  Gram.

  Args:
    features: (n, P) feature matrix phi(x_i), one row per training example.
    labels: (n,) in {0, 1} or {-1, +1} (0 means -1).
    max_iterations: iteration budget; None means the solver's default.
    tolerance: stop once (upper - margin) / upper <= tolerance; in [0, 1).
    check_every: test the gap every this many iterations (None: the
      solver's default).
    max_seconds: optional wall-clock limit (makes results machine-dependent).
    log: optional progress printer, as for `max_margin_from_gram`.
    solver: None (automatic, see above) or one of `SOLVERS`.
    warm_start: an earlier result on these features to continue from
      (`max_margin_from_gram`); the solvers of `WARM_START_SOLVERS` only.

  Returns:
    A `MarginResult` with `weights` (P,) in original feature units:
    decision f(x) = phi(x) @ weights (+ intercept for 'sklearn').

  Raises:
    AfterKernelError: features not 2-D, length mismatch, NaN/inf entries,
      labels not binary or of one class, unknown solver, or bad iteration
      arguments.
  """
  errors.require(solver is None or solver in SOLVERS,
                 f'unknown solver {solver!r}; choose one of '
                 f'{", ".join(SOLVERS)}')
  features = np.asarray(features)
  errors.require(features.ndim == 2,
                 f'features must be a 2-D (n, P) matrix, got shape '
                 f'{features.shape}')
  n, width = features.shape
  if solver is None:
    solver = 'primal' if width <= n else DEFAULT_SOLVER
  if solver != 'primal':
    labels = checks.signed_labels(labels, n, 'labels', need_two_classes=True)
    errors.require(np.issubdtype(features.dtype, np.number),
                   f'features must be numeric, got dtype {features.dtype}')
    checks.require_finite(features, 'features')
    features = features.astype(np.float64, copy=False)
    errors.require(np.any(features), 'features are all zero, so no margin '
                   'exists')
    if solver == interior.SOLVER and width < n:
      return _solve_interior_features(features, labels, max_iterations,
                                      tolerance, max_seconds, log, warm_start)
    result = max_margin_from_gram(
        features @ features.T, labels, solver=solver,
        max_iterations=max_iterations, tolerance=tolerance,
        check_every=check_every, max_seconds=max_seconds, log=log,
        warm_start=warm_start)
    result.weights = features.T @ result.dual_coef
    return result
  if warm_start is not None:
    _require_warm_start_solver('primal')
  if max_iterations is None:
    max_iterations = jst.DEFAULT_MAX_ITERATIONS
  if check_every is None:
    check_every = jst.DEFAULT_CHECK_EVERY
  checks.require_iteration_args(max_iterations, tolerance, check_every,
                                max_seconds)
  labels = checks.signed_labels(labels, n, 'labels', need_two_classes=True)
  errors.require(np.issubdtype(features.dtype, np.number),
                 f'features must be numeric, got dtype {features.dtype}')
  checks.require_finite(features, 'features')
  features = features.astype(np.float64, copy=False)
  scale = float(np.mean(np.linalg.norm(features, axis=1)))
  errors.require(scale > 0, 'features are all zero, so no margin exists')
  z = features * (labels / scale)[:, None]  # rows z_i = y_i phi_i / s
  result = jst.solve_primal(z, labels, scale, tolerance, max_iterations,
                            check_every, max_seconds, log)
  _warn_if_unconverged(result)
  return result


def _solve_interior_features(features, labels, max_iterations, tolerance,
                             max_seconds, log, warm_start=None
                             ) -> certificate.MarginResult:
  """'interior_point' on features with P < n: Woodbury on P x P systems."""
  if max_iterations is None:
    max_iterations = interior.DEFAULT_MAX_ITERATIONS
  checks.require_iteration_args(max_iterations, tolerance, 1, max_seconds)
  scale = float(np.mean(np.linalg.norm(features, axis=1)))
  result = interior.solve_interior_point(
      None, labels, scale, tolerance, max_iterations, max_seconds, log,
      features=features,
      start_point=_warm_start_coef(warm_start, interior.SOLVER, labels,
                                   scale))
  result.weights = features.T @ result.dual_coef
  _warn_if_unconverged(result)
  return result


def decision_function(result: certificate.MarginResult,
                      cross_gram: np.ndarray) -> np.ndarray:
  """Decision values f(x) = sum_i dual_coef[i] K(x, x_i) + intercept.

  Args:
    result: a `MarginResult` from this package.
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
  checks.require_finite(cross_gram, 'cross_gram')
  if cross_gram.dtype == np.float32:
    # Keep a float32 product: mixing dtypes would copy the whole matrix.
    decision = (cross_gram @ result.dual_coef.astype(np.float32)).astype(
        np.float64)
  else:
    decision = np.asarray(cross_gram, dtype=np.float64) @ result.dual_coef
  if result.intercept:
    decision += result.intercept
  return decision


def predict_labels(result: certificate.MarginResult,
                   cross_gram: np.ndarray) -> np.ndarray:
  """Predicted labels in {0, 1} as float32 (1 where the decision is > 0).

  Args:
    result: a `MarginResult` from this package.
    cross_gram: (n_test, n_train) K(x_test, x_train), original kernel.

  Returns:
    (n_test,) float32 in {0, 1}.
  """
  return (decision_function(result, cross_gram) > 0).astype(np.float32)


def test_error(result: certificate.MarginResult, cross_gram: np.ndarray,
               test_labels: np.ndarray) -> float:
  """Fraction of test examples misclassified (a decision of exactly 0 = minus).

  Args:
    result: a `MarginResult` from this package.
    cross_gram: (n_test, n_train) K(x_test, x_train), original kernel.
    test_labels: (n_test,) in {0, 1} or {-1, +1}; one class is allowed.

  Returns:
    The error rate in [0, 1].

  Raises:
    AfterKernelError: shape mismatch or labels not binary.
  """
  decision = decision_function(result, cross_gram)
  signs = checks.signed_labels(test_labels, decision.shape[0], 'test_labels',
                         need_two_classes=False)
  return float(np.mean(np.where(decision > 0, 1.0, -1.0) != signs))
