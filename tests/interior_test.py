"""Tests for afterkernel.margin.interior: the interior-point solver.

Checked against the certified float64 reference of margin_fixture (scipy
SLSQP on the simplex QP, polished on its support) and against 'exact'; its
certificate is recomputed from `dual_coef` alone. A barely separable,
ill-conditioned problem shows what it is for: coordinate descent does not
certify it within the switch budget, the interior point and the default
('exact', which then switches) do.
"""

import time
import tracemalloc
import warnings
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from afterkernel import errors
from afterkernel import margin
from afterkernel.margin import api
from afterkernel.margin import device as device_lib
from afterkernel.margin import interior
from margin_fixture import certified_optimum as _certified_optimum
from margin_fixture import recomputed_bounds as _recomputed_bounds
from margin_fixture import separable as _separable


def _barely_separable(n, dims, seed, epsilon):
  """Pairs of near-duplicate points with opposite labels, margin ~ epsilon.

  Every point lies within epsilon of the hyperplane x_0 = 0 that separates
  the classes, and minus point i is nearly the mirror image -x of plus
  point i, so z_plus + z_minus nearly cancel: the margin is tiny and Q is
  badly conditioned.
  """
  rng = np.random.default_rng(seed)
  features = rng.normal(size=(n, dims))
  features[:, 0] = np.abs(features[:, 0]) * epsilon * rng.uniform(1, 2, n)
  half = n // 2
  features[half:] *= -1
  features[half:, 1:] = (-features[:half, 1:] +
                         1e-2 * rng.normal(size=(n - half, dims - 1)))
  labels = np.where(np.arange(n) < half, 1.0, 0.0)
  return features, labels


def _xor(n, seed):
  """XOR labels on 2-D points plus a constant feature: not separable."""
  points = np.random.default_rng(seed).normal(size=(n, 2))
  labels = (points[:, 0] * points[:, 1] > 0).astype(np.float64)
  return np.c_[points, np.ones(n)], labels


class InteriorPointTest(parameterized.TestCase):

  def assert_certified(self, result, gram, labels, optimum, slack=1e-9):
    """Converged, bounds from dual_coef alone, bracketing the optimum.

    `slack`: the reference optimum's own relative uncertainty.
    """
    self.assertTrue(result.converged)
    self.assertEqual(result.stop_reason, 'tolerance')
    lower, upper, _ = _recomputed_bounds(gram, labels, result.dual_coef)
    np.testing.assert_allclose([lower, upper],
                               [result.margin, result.margin_upper_bound],
                               rtol=1e-6)
    self.assertLessEqual((upper - lower) / upper, margin.DEFAULT_TOLERANCE)
    self.assertLessEqual(lower, optimum * (1 + slack))
    self.assertGreaterEqual(upper, optimum * (1 - slack))

  @parameterized.named_parameters(
      ('wide', 40, 100, 0), ('narrow', 60, 10, 1), ('square', 50, 50, 2))
  def test_matches_the_reference_and_exact(self, n, dims, seed):
    features, labels, _, _ = _separable(n, dims, seed)
    gram = features @ features.T
    optimum, reference_gap = _certified_optimum(gram, labels)
    self.assertLess(reference_gap, 1e-10)
    result = margin.max_margin_from_gram(gram, labels,
                                         solver='interior_point')
    self.assertEqual(result.solver, 'interior_point')
    self.assert_certified(result, gram, labels, optimum)
    # The library's own certificate agrees with the written-out one.
    lower, upper, _ = margin.certificate(gram, labels, result.dual_coef)
    np.testing.assert_allclose([lower, upper],
                               [result.margin, result.margin_upper_bound],
                               rtol=1e-12)
    exact = margin.max_margin_from_gram(gram, labels)
    np.testing.assert_allclose(result.margin, exact.margin, rtol=2e-4)

  def test_features_route_equals_the_gram_route(self):
    features, labels, _, _ = _separable(120, 15, seed=3)
    gram = features @ features.T
    by_gram = margin.max_margin_from_gram(gram, labels,
                                          solver='interior_point')
    by_features = margin.max_margin_from_features(
        features, labels, solver='interior_point')
    self.assertEqual(by_features.solver, 'interior_point')
    self.assertTrue(by_features.converged)
    np.testing.assert_allclose(by_features.margin, by_gram.margin, rtol=1e-6)
    np.testing.assert_allclose(by_features.dual_coef, by_gram.dual_coef,
                               rtol=1e-4, atol=1e-8 * by_gram.dual_coef.max())
    # Primal weights in feature units: f = features @ weights.
    np.testing.assert_allclose(features @ by_features.weights,
                               gram @ by_features.dual_coef, rtol=1e-9)

  def test_barely_separable_needs_the_interior_point(self):
    features, labels = _barely_separable(30, 8, seed=0, epsilon=1e-3)
    gram = features @ features.T
    optimum, reference_gap = _certified_optimum(gram, labels)
    self.assertLess(reference_gap, 1e-6)
    self.assertLess(optimum, 2e-3)
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', margin.UnconvergedWarning)
      # Coordinate descent within the switch budget: not certified.
      plain = margin.max_margin_from_gram(
          gram, labels, max_iterations=api.switch_steps(len(labels)))
    self.assertEqual(plain.solver, 'exact')
    self.assertFalse(plain.converged)
    self.assertEqual(plain.stop_reason, 'max_iterations')
    result = margin.max_margin_from_gram(gram, labels,
                                         solver='interior_point')
    self.assert_certified(result, gram, labels, optimum, reference_gap)
    self.assertLess(result.iterations, 60)
    lines = []
    default = margin.max_margin_from_gram(gram, labels, log=lines.append)
    self.assertEqual(default.solver, 'exact+interior_point')
    self.assert_certified(default, gram, labels, optimum, reference_gap)
    self.assertTrue(any('switching to interior point' in line
                        for line in lines))
    # Coordinate steps and Newton steps both counted; history continues.
    self.assertGreater(default.iterations, api.switch_steps(len(labels)))
    steps = [entry[0] for entry in default.history]
    self.assertEqual(steps, sorted(steps))

  def test_no_switch_when_the_dense_matrices_do_not_fit(self):
    features, labels = _barely_separable(30, 8, seed=0, epsilon=1e-3)
    budget = 2 * api.switch_steps(len(labels))
    with mock.patch.object(interior, 'DEFAULT_MAX_DENSE_GIB', 0.0):
      with warnings.catch_warnings():
        warnings.simplefilter('ignore', margin.UnconvergedWarning)
        result = margin.max_margin_from_gram(features @ features.T, labels,
                                             max_iterations=budget)
    # Coordinate descent keeps the whole budget instead.
    self.assertEqual(result.solver, 'exact')
    self.assertEqual(result.stop_reason, 'max_iterations')
    self.assertEqual(result.iterations, budget)

  def test_exact_results_unchanged_below_the_switch(self):
    # A problem coordinate descent certifies quickly: bit-identical to a
    # run whose budget stops before the switch could happen.
    features, labels, _, _ = _separable(80, 30, seed=5)
    gram = features @ features.T
    default = margin.max_margin_from_gram(gram, labels)
    capped = margin.max_margin_from_gram(
        gram, labels, max_iterations=api.switch_steps(len(labels)))
    self.assertEqual(default.solver, 'exact')
    np.testing.assert_array_equal(default.dual_coef, capped.dual_coef)
    self.assertEqual(default.iterations, capped.iterations)

  @parameterized.named_parameters(('gram', False), ('features', True))
  def test_not_separable_quickly(self, use_features):
    features, labels = _xor(300, seed=0)
    start = time.perf_counter()
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', margin.UnconvergedWarning)
      if use_features:
        result = margin.max_margin_from_features(features, labels,
                                                 solver='interior_point')
      else:
        result = margin.max_margin_from_gram(features @ features.T, labels,
                                             solver='interior_point')
    self.assertLess(time.perf_counter() - start, 5.0)
    self.assertEqual(result.stop_reason, 'not_separable')
    self.assertFalse(result.converged)
    self.assertLess(result.iterations, 30)
    # The evidence: a simplex point p with ||Z^T p|| that small.
    gram = features @ features.T
    _, upper, coef = _recomputed_bounds(gram, labels, result.dual_coef)
    self.assertGreaterEqual(coef.min(), 0.0)
    self.assertLessEqual(upper, margin.NOT_SEPARABLE_MARGIN)

  def test_holds_two_dense_matrices_at_most(self):
    # Q and the factor (Fortran-ordered, factored in place): the
    # `dense_gib` the memory limit is about, and no third n x n array.
    features, labels, _, _ = _separable(400, 50, seed=10)
    gram = features @ features.T
    tracemalloc.start()
    try:
      result = margin.max_margin_from_gram(gram, labels,
                                           solver='interior_point')
      _, peak = tracemalloc.get_traced_memory()
    finally:
      tracemalloc.stop()
    self.assertTrue(result.converged)
    self.assertLess(peak, 2.2 * gram.nbytes)
    self.assertEqual(interior.dense_gib(400), 2 * gram.nbytes / 2**30)

  def test_memory_limit_names_n_and_gib(self):
    with self.assertRaisesRegex(errors.AfterKernelError,
                                r'30000 examples needs 13\.4 GiB'):
      interior.require_dense_memory(30_000, interior.DEFAULT_MAX_DENSE_GIB)
    features, labels, _, _ = _separable(40, 10, seed=0)
    with self.assertRaisesRegex(errors.AfterKernelError, '40 examples'):
      interior.solve_interior_point(
          features @ features.T, np.where(labels > 0, 1.0, -1.0), 1.0,
          1e-4, 10, None, None, max_dense_gib=1e-6)

  def test_unknown_solver_lists_interior_point(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'interior_point'):
      margin.max_margin_from_gram(np.eye(4), np.array([0, 1, 0, 1]),
                                  solver='newton')


# TensorFlow's path against numpy's: both are float64 and differ only in
# summation order and in the Cholesky routine (Eigen vs LAPACK), i.e. by
# ~1e-16 relative per product; a Mehrotra run of <= 20 Newton steps on these
# well-conditioned problems amplifies that to ~1e-12 at most (measured:
# 2e-16 separable, 1e-12 the XOR dense case). 1e-9 leaves room for other
# BLAS builds and still fails on any real difference (a wrong sign, scale
# or diagonal changes the first digits).
DEVICE_RTOL = 1e-9


class StallTest(absltest.TestCase):

  def test_unreachable_tolerance_stops_as_stalled_not_at_the_budget(self):
    # A zero gap cannot be certified in float64: the run must stop once the
    # gap stops shrinking, with the best certified point, instead of
    # spending all DEFAULT_MAX_ITERATIONS dense factorizations.
    features, labels, _, _ = _separable(120, 40, seed=3)
    gram = features @ features.T
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter('always')
      result = margin.max_margin_from_gram(gram, labels,
                                           solver='interior_point',
                                           tolerance=0.0)
    self.assertEqual(result.stop_reason, margin.STOP_STALLED)
    self.assertFalse(result.converged)
    self.assertTrue(any(issubclass(w.category, margin.UnconvergedWarning)
                        for w in caught))
    self.assertLess(result.iterations, interior.DEFAULT_MAX_ITERATIONS // 4)
    # What it returns is still certified, and tight.
    lower, upper, _ = _recomputed_bounds(gram, labels, result.dual_coef)
    np.testing.assert_allclose([lower, upper],
                               [result.margin, result.margin_upper_bound],
                               rtol=1e-9)
    self.assertLess((upper - lower) / upper, 1e-9)
    # The last STALL_STEPS steps did not halve the best gap.
    gaps = [(u - l) / u for _, l, u in result.history]
    self.assertGreater(gaps[-1], gaps[-1 - interior.STALL_STEPS] *
                       interior.STALL_FACTOR)


  def test_flat_early_phase_is_not_a_stall(self):
    # Ill-scaled features: the best gap sits flat for 8+ Newton steps while
    # the margin is still negative, then the run converges (a reviewer's
    # case: an earlier stall rule stopped it after 10 steps, uncertified).
    from margin_fixture import separable_problem  # pylint: disable=g-import-not-at-top
    features, labels, _, _ = separable_problem(300, 50, seed=0, gap=1e-4)
    features = features * np.logspace(0, -3, 50)
    result = margin.max_margin_from_gram(features @ features.T, labels,
                                         solver='interior_point',
                                         tolerance=1e-4)
    self.assertEqual(result.stop_reason, 'tolerance')
    self.assertGreater(result.margin, 0)


class DeviceTest(parameterized.TestCase):
  """device='/CPU:0' runs the TensorFlow path (no GPU here): same results."""

  def solve(self, features, labels, use_features, device):
    signs = np.where(labels > 0, 1.0, -1.0)
    gram = features @ features.T
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', margin.UnconvergedWarning)
      return interior.solve_interior_point(
          None if use_features else gram, signs,
          float(np.mean(np.sqrt(np.diag(gram)))), margin.DEFAULT_TOLERANCE,
          interior.DEFAULT_MAX_ITERATIONS, None, None,
          features=features if use_features else None, device=device)

  @parameterized.named_parameters(
      ('gram_separable', False, True), ('features_separable', True, True),
      ('gram_xor', False, False), ('features_xor', True, False))
  def test_tensorflow_path_equals_numpy(self, use_features, separable):
    if separable:
      features, labels, _, _ = _separable(60, 10, seed=1)
    else:
      features, labels = _xor(120, seed=0)
    wrapped = mock.patch.object(
        device_lib, 'woodbury_solver' if use_features else 'cholesky_solver',
        wraps=getattr(device_lib, 'woodbury_solver' if use_features else
                      'cholesky_solver'))
    host = self.solve(features, labels, use_features, 'cpu')
    with wrapped as on_device_solver:
      tf_run = self.solve(features, labels, use_features, '/CPU:0')
    self.assertTrue(on_device_solver.called)
    self.assertEqual(tf_run.stop_reason, host.stop_reason)
    self.assertEqual(tf_run.stop_reason,
                     'tolerance' if separable else 'not_separable')
    self.assertEqual(tf_run.iterations, host.iterations)
    np.testing.assert_allclose(
        tf_run.dual_coef, host.dual_coef, rtol=0,
        atol=DEVICE_RTOL * np.abs(host.dual_coef).max())
    # Not separable, upper = sqrt(p^T Q p) ~ 1e-7 and margin = min_i (Q p)_i
    # / upper come from sums of O(1) terms that cancel to ~1e-14 / 1e-7:
    # relative rounding is amplified by up to 1e7 there. Their well-
    # conditioned forms upper^2 = p^T Q p and margin * upper = min_i (Q p)_i
    # are compared, relative to the O(1) scale of Q's entries (atol 1e-12).
    for value in (lambda r: r.margin_upper_bound**2,
                  lambda r: r.margin * r.margin_upper_bound):
      np.testing.assert_allclose(value(tf_run), value(host), rtol=DEVICE_RTOL,
                                 atol=DEVICE_RTOL * 1e-3)
    if separable:
      np.testing.assert_allclose(
          [tf_run.margin, tf_run.margin_upper_bound],
          [host.margin, host.margin_upper_bound], rtol=DEVICE_RTOL)
    # The certificate, recomputed from dual_coef alone on the host (not
    # separable: sqrt(a^T Q a) ~ 1e-7 is itself rounding-limited, so only
    # the evidence bound is checked, as in test_not_separable_quickly).
    gram = features @ features.T
    for result in (host, tf_run):
      lower, upper, _ = _recomputed_bounds(gram, labels, result.dual_coef)
      if separable:
        np.testing.assert_allclose([lower, upper], [
            result.margin, result.margin_upper_bound], rtol=1e-6)
      else:
        self.assertLessEqual(upper, margin.NOT_SEPARABLE_MARGIN)

  @parameterized.named_parameters(('cpu', 'cpu'), ('tensorflow', '/CPU:0'))
  def test_regularization_retry_is_the_same(self, device):
    # Q has eigenvalue -1e-9: 1e-12 and 1e-10 fail, 1e-8 factors.
    gram = np.diag([1.0, 2.0, -1e-9])
    system = interior._dense_system(gram, np.ones(3), 1.0, device)
    solve, used = interior._factor(system, np.zeros(3),
                                   interior.REGULARIZATION)
    self.assertAlmostEqual(used / 1e-8, 1.0)
    np.testing.assert_allclose(solve(np.ones(3)),
                               1.0 / (np.diag(gram) + used), rtol=1e-12)
    indefinite = interior._dense_system(-np.eye(3), np.ones(3), 1.0, device)
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'not positive definite'):
      interior._factor(indefinite, np.zeros(3), interior.REGULARIZATION)

  def test_exact_switch_runs_the_interior_point_on_the_device(self):
    features, labels = _barely_separable(30, 8, seed=0, epsilon=1e-3)
    gram = features @ features.T
    host = margin.max_margin_from_gram(gram, labels, device='cpu')
    with mock.patch.object(device_lib, 'cholesky_solver',
                           wraps=device_lib.cholesky_solver) as solver:
      tf_run = margin.max_margin_from_gram(gram, labels, device='/CPU:0')
    self.assertTrue(solver.called)
    self.assertEqual(tf_run.solver, 'exact+interior_point')
    self.assertEqual(host.solver, 'exact+interior_point')
    self.assertTrue(tf_run.converged)
    np.testing.assert_allclose(tf_run.margin, host.margin, rtol=1e-6)
    lower, upper, _ = _recomputed_bounds(gram, labels, tf_run.dual_coef)
    np.testing.assert_allclose([lower, upper],
                               [tf_run.margin, tf_run.margin_upper_bound],
                               rtol=1e-6)

  def test_invisible_device_is_one_error(self):
    features, labels, _, _ = _separable(20, 5, seed=0)
    with self.assertRaisesRegex(errors.AfterKernelError,
                                "'/GPU:3' is not visible"):
      margin.max_margin_from_gram(features @ features.T, labels,
                                  solver='interior_point', device='/GPU:3')
    with self.assertRaisesRegex(errors.AfterKernelError,
                                "'/GPU:3' is not visible"):
      self.solve(features, labels, True, '/GPU:3')


if __name__ == '__main__':
  absltest.main()
