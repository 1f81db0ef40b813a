"""Tests for afterkernel.margin: the JST solvers and the entry points.

The margins computed here are the numbers users quote, so they are checked
against independent computations: the primal recursion on explicit features,
a certified hard-margin optimum (scipy SLSQP on min_{p in simplex} p^T G_y p,
polished on its support by solving the KKT system), and the margin recomputed
from the returned coefficients.
"""

import math
import tracemalloc

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import scipy.optimize

from afterkernel import errors
from afterkernel import margin


def _separable_problem(n, dims, seed, gap, n_test=0):
  """Gaussian features labelled by a random hyperplane through 0, with a gap.

  Points whose normalized distance to the plane is below `gap` are dropped, so
  the data are separable without a bias, whatever n and dims are. Norms vary
  by a random factor in [0.5, 1.5] so that the feature rescale matters.

  Returns:
    (features (n, dims), labels (n,) in {0, 1}, test features, test labels).
  """
  rng = np.random.default_rng(seed)
  direction = rng.normal(size=dims)
  direction /= np.linalg.norm(direction)
  features, labels = [], []
  while len(features) < n + n_test:
    x = rng.normal(size=dims) * rng.uniform(0.5, 1.5)
    cosine = x @ direction / np.linalg.norm(x)
    if abs(cosine) > gap:
      features.append(x)
      labels.append(float(cosine > 0))
  features = np.array(features)
  labels = np.array(labels, dtype=np.float32)
  return features[:n], labels[:n], features[n:], labels[n:]


def _certified_optimum(gram, labels):
  """The optimal margin gamma* = sqrt(min_{p in simplex} p^T G_y p), certified.

  Solves the simplex QP with SLSQP, then re-solves the equality-constrained QP
  on the support found (G_SS p_S = lambda 1, sum p_S = 1) to machine
  precision, and checks the KKT conditions p >= 0, (G_y p)_i >= p^T G_y p: at
  such a p, w = Z^T p / ||Z^T p|| has margin exactly ||Z^T p||, so lower and
  upper bounds coincide.

  Returns:
    (gamma*, relative KKT gap (upper - lower) / upper of the reference).
  """
  signs = np.where(labels > 0, 1.0, -1.0)
  scale = np.mean(np.sqrt(np.diag(gram)))
  gram_y = np.outer(signs, signs) * gram / scale**2
  n = len(signs)
  solution = scipy.optimize.minimize(
      lambda p: p @ gram_y @ p, np.full(n, 1.0 / n),
      jac=lambda p: 2 * gram_y @ p, bounds=[(0, None)] * n,
      constraints=[{'type': 'eq', 'fun': lambda p: p.sum() - 1,
                    'jac': lambda p: np.ones(n)}],
      method='SLSQP', options={'ftol': 1e-16, 'maxiter': 2000})
  p = np.maximum(solution.x, 0)
  support = np.flatnonzero(p > 1e-7 * p.max())
  k = len(support)
  kkt = np.zeros((k + 1, k + 1))
  kkt[:k, :k] = gram_y[np.ix_(support, support)]
  kkt[:k, k] = -1
  kkt[k, :k] = 1
  rhs = np.zeros(k + 1)
  rhs[k] = 1
  polished = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:k]
  if polished.min() >= 0:
    p = np.zeros(n)
    p[support] = polished
  p /= p.sum()
  gram_p = gram_y @ p
  upper = math.sqrt(p @ gram_p)
  lower = gram_p.min() / upper
  return upper, (upper - lower) / upper


def _margin_from_coefficients(result, gram, labels):
  """Normalized margin of f = gram @ dual_coef, in rescaled feature units.

  With w = sum_i c_i phi_i: y_i f(x_i) / ||w|| in original units, and the
  rescaled features phi / s divide it by s.
  """
  signs = np.where(labels > 0, 1.0, -1.0)
  decision = gram @ result.dual_coef
  norm = math.sqrt(result.dual_coef @ gram @ result.dual_coef)
  return (signs * decision).min() / norm / result.feature_scale


class DualMatchesPrimalTest(absltest.TestCase):
  """'dual' (on the Gram) and 'primal' (on features) are the same algorithm."""

  def test_same_margins_coefficients_and_decisions(self):
    features, labels, test_features, _ = _separable_problem(
        60, 200, seed=0, gap=0.05, n_test=25)
    gram = features @ features.T
    iterations = 300
    dual = margin.max_margin_from_gram(
        gram, labels, solver='dual', max_iterations=iterations, tolerance=0)
    primal = margin.max_margin_from_features(
        features, labels, max_iterations=iterations, tolerance=0,
        solver='primal')
    self.assertEqual(dual.iterations, iterations)
    self.assertEqual(primal.iterations, iterations)
    self.assertEqual(dual.stop_reason, 'max_iterations')
    self.assertFalse(dual.converged)
    self.assertGreater(dual.margin, 0)
    np.testing.assert_allclose(dual.margin, primal.margin, rtol=1e-6)
    np.testing.assert_allclose(dual.margin_upper_bound,
                               primal.margin_upper_bound, rtol=1e-6)
    np.testing.assert_allclose(dual.feature_scale, primal.feature_scale,
                               rtol=1e-12)
    np.testing.assert_allclose(dual.dual_coef, primal.dual_coef, rtol=1e-6,
                               atol=1e-9 * np.abs(primal.dual_coef).max())
    cross_gram = test_features @ features.T
    from_dual = margin.decision_function(dual, cross_gram)
    np.testing.assert_allclose(
        from_dual, margin.decision_function(primal, cross_gram), rtol=1e-6,
        atol=1e-9 * np.abs(from_dual).max())
    # The primal weights give the same function as its coefficients.
    np.testing.assert_allclose(
        test_features @ primal.weights, from_dual, rtol=1e-6,
        atol=1e-9 * np.abs(from_dual).max())
    self.assertEqual(
        [h[0] for h in dual.history], [h[0] for h in primal.history])

  def test_reported_margin_is_that_of_returned_coefficients(self):
    features, labels, _, _ = _separable_problem(50, 30, seed=3, gap=0.1)
    gram = features @ features.T
    results = [
        margin.max_margin_from_gram(gram, labels, max_iterations=500),
        margin.max_margin_from_gram(gram, labels, solver='stochastic',
                                    max_iterations=5000),
        margin.max_margin_from_features(features, labels, max_iterations=500),
    ]
    for result in results:
      with self.subTest(result.solver):
        np.testing.assert_allclose(
            result.margin, _margin_from_coefficients(result, gram, labels),
            rtol=1e-9)


class CertifiedOptimumTest(parameterized.TestCase):
  """Against an independent hard-margin solution (scipy + KKT polish)."""

  @parameterized.named_parameters(
      (f'{name}_{solver}', n, dims, seed, solver)
      for name, n, dims, seed in (
          ('wide_seed0', 40, 100, 0), ('wide_seed1', 40, 100, 1),
          ('wide_seed2', 80, 200, 2), ('narrow_seed0', 80, 10, 0),
          ('narrow_seed1', 80, 10, 1), ('narrow_seed2', 60, 5, 2))
      for solver in ('dual', 'working_set', 'exact'))
  def test_converged_margin_matches_optimum(self, n, dims, seed, solver):
    features, labels, _, _ = _separable_problem(n, dims, seed, gap=0.08)
    gram = features @ features.T
    optimum, reference_gap = _certified_optimum(gram, labels)
    self.assertLess(reference_gap, 1e-10, 'reference solution not certified')
    result = margin.max_margin_from_gram(gram, labels, solver=solver)
    self.assertTrue(result.converged)
    self.assertEqual(result.stop_reason, 'tolerance')
    np.testing.assert_allclose(result.margin, optimum, rtol=1e-3)
    self.assertGreaterEqual(result.margin_upper_bound, optimum - 1e-9)
    self.assertLessEqual(result.margin, optimum + 1e-9)
    # The relative gap met the default tolerance, so the margin is that close.
    self.assertLessEqual((optimum - result.margin) / optimum,
                         margin.DEFAULT_TOLERANCE + 1e-9)
    # Every check's bounds bracket the optimum, and improve monotonically.
    history = np.array(result.history)
    self.assertTrue(np.all(history[:, 1] <= optimum + 1e-9))
    self.assertTrue(np.all(history[:, 2] >= optimum - 1e-9))
    self.assertTrue(np.all(np.diff(history[:, 1]) >= 0))
    self.assertTrue(np.all(np.diff(history[:, 2]) <= 0))

  def test_working_set_rounds_match_plain_dual(self):
    # Large enough that the coarse phase stops early and several working
    # set rounds run (the log says so).
    features, labels, test, _ = _separable_problem(300, 400, seed=11,
                                                   gap=0.02, n_test=50)
    gram = features @ features.T
    lines = []
    result = margin.max_margin_from_gram(gram, labels, solver='working_set',
                                         tolerance=1e-5, log=lines.append)
    reference = margin.max_margin_from_gram(gram, labels, solver='dual',
                                            tolerance=1e-6,
                                            max_iterations=200_000)
    self.assertTrue(result.converged)
    self.assertTrue(any('working set of' in line for line in lines))
    np.testing.assert_allclose(result.margin, reference.margin, rtol=2e-5)
    self.assertGreaterEqual(result.margin_upper_bound, reference.margin)
    self.assertLessEqual(result.margin, reference.margin_upper_bound)
    np.testing.assert_array_equal(
        margin.predict_labels(result, test @ features.T),
        margin.predict_labels(reference, test @ features.T))
    # The reported margin is that of the returned coefficients.
    decisions = margin.decision_function(result, gram) * np.where(
        labels > 0, 1, -1)
    norm = np.sqrt(result.dual_coef @ gram @ result.dual_coef)
    np.testing.assert_allclose(decisions.min() / norm / result.feature_scale,
                               result.margin, rtol=1e-9)

  def test_primal_converges_to_optimum(self):
    features, labels, _, _ = _separable_problem(60, 8, seed=4, gap=0.08)
    optimum, _ = _certified_optimum(features @ features.T, labels)
    result = margin.max_margin_from_features(features, labels)
    self.assertTrue(result.converged)
    np.testing.assert_allclose(result.margin, optimum, rtol=1e-3)
    self.assertGreaterEqual(result.margin_upper_bound, optimum - 1e-9)
    self.assertLessEqual(result.margin, optimum + 1e-9)

  def test_stochastic_reaches_optimum(self):
    features, labels, _, _ = _separable_problem(60, 100, seed=5, gap=0.08)
    gram = features @ features.T
    optimum, _ = _certified_optimum(gram, labels)
    result = margin.max_margin_from_gram(
        gram, labels, solver='stochastic', tolerance=1e-3,
        max_iterations=200_000, seed=1)
    self.assertEqual(result.solver, 'stochastic')
    self.assertLess(abs(result.margin - optimum) / optimum, 1e-2)
    self.assertGreaterEqual(result.margin_upper_bound, optimum - 1e-9)
    self.assertLessEqual(result.margin, optimum + 1e-9)
    # Seeded: the same seed gives the same run.
    again = margin.max_margin_from_gram(
        gram, labels, solver='stochastic', tolerance=1e-3,
        max_iterations=200_000, seed=1)
    self.assertEqual(result.iterations, again.iterations)
    np.testing.assert_array_equal(result.dual_coef, again.dual_coef)


class ScaleAndPredictionTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    (self.features, self.labels, self.test_features,
     self.test_labels) = _separable_problem(70, 40, seed=6, gap=0.05,
                                            n_test=200)
    self.gram = self.features @ self.features.T
    self.cross_gram = self.test_features @ self.features.T

  def test_scaling_the_gram_changes_nothing_but_the_scale(self):
    c = 7.5
    plain = margin.max_margin_from_gram(self.gram, self.labels)
    scaled = margin.max_margin_from_gram(c**2 * self.gram, self.labels)
    np.testing.assert_allclose(scaled.feature_scale, c * plain.feature_scale,
                               rtol=1e-12)
    np.testing.assert_allclose(scaled.margin, plain.margin, rtol=1e-9)
    np.testing.assert_allclose(scaled.margin_upper_bound,
                               plain.margin_upper_bound, rtol=1e-9)
    self.assertEqual(scaled.iterations, plain.iterations)
    np.testing.assert_allclose(scaled.dual_coef * c**2, plain.dual_coef,
                               rtol=1e-9)
    np.testing.assert_array_equal(
        margin.predict_labels(scaled, c**2 * self.cross_gram),
        margin.predict_labels(plain, self.cross_gram))

  def test_dual_coef_works_on_unscaled_cross_gram(self):
    # Features scaled far from norm 1, so a missing 1/s^2 would show.
    factor = 30.0
    features = factor * self.features
    test_features = factor * self.test_features
    primal = margin.max_margin_from_features(features, self.labels)
    dual = margin.max_margin_from_gram(features @ features.T, self.labels)
    cross_gram = test_features @ features.T
    from_weights = test_features @ primal.weights
    np.testing.assert_allclose(cross_gram @ primal.dual_coef, from_weights,
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(
        margin.decision_function(primal, cross_gram), from_weights,
        rtol=1e-6, atol=1e-9)
    # The dual solution is the same max-margin direction (to the tolerance);
    # its weights w = sum_i c_i phi_i predict like the primal ones.
    dual_weights = features.T @ dual.dual_coef
    cosine = dual_weights @ primal.weights / (
        np.linalg.norm(dual_weights) * np.linalg.norm(primal.weights))
    self.assertGreater(cosine, 1 - 1e-4)
    np.testing.assert_allclose(
        margin.decision_function(dual, cross_gram),
        test_features @ dual_weights, rtol=1e-9, atol=1e-12)

  def test_labels_zero_one_and_signed_agree(self):
    from_01 = margin.max_margin_from_gram(self.gram, self.labels)
    from_signed = margin.max_margin_from_gram(self.gram, 2 * self.labels - 1)
    np.testing.assert_array_equal(from_01.dual_coef, from_signed.dual_coef)
    self.assertEqual(from_01.margin, from_signed.margin)

  def test_predictions_and_test_error(self):
    result = margin.max_margin_from_gram(self.gram, self.labels)
    # Separable training data: every training point on the right side.
    train_decision = margin.decision_function(result, self.gram)
    signs = 2 * self.labels - 1
    self.assertTrue(np.all(signs * train_decision > 0))
    self.assertEqual(margin.test_error(result, self.gram, self.labels), 0.0)
    predicted = margin.predict_labels(result, self.gram)
    self.assertEqual(predicted.dtype, np.float32)
    np.testing.assert_array_equal(predicted, self.labels)
    # Test error against a direct count on the test decision values.
    decision = self.cross_gram @ result.dual_coef
    expected = np.mean((decision > 0) != (self.test_labels > 0))
    self.assertAlmostEqual(
        margin.test_error(result, self.cross_gram, self.test_labels), expected)
    self.assertAlmostEqual(
        margin.test_error(result, self.cross_gram, 2 * self.test_labels - 1),
        expected)
    # The test points come from the same hyperplane with a gap: few errors.
    self.assertLess(expected, 0.2)
    # A float32 cross-Gram gives the same predictions.
    np.testing.assert_array_equal(
        margin.predict_labels(result, self.cross_gram.astype(np.float32)),
        margin.predict_labels(result, self.cross_gram))

  def test_float32_gram_matches_float64(self):
    result64 = margin.max_margin_from_gram(self.gram, self.labels)
    result32 = margin.max_margin_from_gram(self.gram, self.labels,
                                           dtype=np.float32)
    np.testing.assert_allclose(result32.margin, result64.margin, rtol=1e-4)
    self.assertEqual(result32.dual_coef.dtype, np.float64)

  def test_gram_is_not_modified_and_views_work(self):
    big = np.zeros((2 * len(self.labels), 2 * len(self.labels)))
    big[::2, ::2] = self.gram
    view = big[::2, ::2]  # neither C- nor F-contiguous
    before = view.copy()
    from_view = margin.max_margin_from_gram(view, self.labels,
                                            max_iterations=200)
    np.testing.assert_array_equal(view, before)
    from_copy = margin.max_margin_from_gram(self.gram, self.labels,
                                            max_iterations=200)
    np.testing.assert_allclose(from_view.dual_coef, from_copy.dual_coef,
                               rtol=1e-12)
    from_fortran = margin.max_margin_from_gram(
        np.asfortranarray(self.gram), self.labels, solver='stochastic',
        max_iterations=300)
    from_c = margin.max_margin_from_gram(
        self.gram, self.labels, solver='stochastic', max_iterations=300)
    np.testing.assert_allclose(from_fortran.dual_coef, from_c.dual_coef,
                               rtol=1e-12)


class MemoryTest(parameterized.TestCase):
  """The solvers must not allocate n x n temporaries (n is ~12k in use)."""

  @parameterized.parameters('dual', 'stochastic', 'exact')
  def test_no_gram_sized_allocations(self, solver):
    features, labels, _, _ = _separable_problem(400, 50, seed=10, gap=0.02)
    gram = features @ features.T
    # Load the compiled code (numba, 'exact') before measuring: a one-off.
    margin.max_margin_from_gram(gram[:20, :20], labels[:20], solver=solver,
                                max_iterations=10)
    tracemalloc.start()
    try:
      result = margin.max_margin_from_gram(gram, labels, solver=solver,
                                           max_iterations=1000)
      margin.test_error(result, gram, labels)
      _, peak = tracemalloc.get_traced_memory()
    finally:
      tracemalloc.stop()
    self.assertLess(peak, 0.2 * gram.nbytes)


class StoppingTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    features, self.labels, _, _ = _separable_problem(50, 20, seed=7, gap=0.1)
    self.gram = features @ features.T

  def test_loose_tolerance_converges(self):
    result = margin.max_margin_from_gram(self.gram, self.labels,
                                         tolerance=1e-2, check_every=5)
    self.assertTrue(result.converged)
    self.assertEqual(result.stop_reason, 'tolerance')
    self.assertEqual(result.iterations % 5, 0)
    iteration, lower, upper = result.history[-1]
    self.assertEqual(iteration, result.iterations)
    self.assertLessEqual((upper - lower) / upper, 1e-2)
    # It stopped at the first check that met the tolerance.
    iteration, lower, upper = result.history[-2]
    self.assertGreater((upper - lower) / upper, 1e-2)

  def test_tiny_budget_stops_at_max_iterations(self):
    result = margin.max_margin_from_gram(self.gram, self.labels,
                                         max_iterations=7, check_every=5)
    self.assertFalse(result.converged)
    self.assertEqual(result.stop_reason, 'max_iterations')
    self.assertEqual(result.iterations, 7)
    self.assertEqual([h[0] for h in result.history], [5, 7])
    result = margin.max_margin_from_features(
        np.linalg.cholesky(self.gram + 1e-9 * np.eye(50)), self.labels,
        max_iterations=3)
    self.assertEqual(result.stop_reason, 'max_iterations')
    self.assertEqual(result.iterations, 3)

  def test_max_seconds(self):
    # The JST solvers check every DEFAULT_CHECK_EVERY iterations.
    result = margin.max_margin_from_gram(self.gram, self.labels,
                                         solver='working_set',
                                         tolerance=0, max_seconds=1e-9)
    self.assertEqual(result.stop_reason, 'max_seconds')
    self.assertFalse(result.converged)
    self.assertEqual(result.iterations, margin.DEFAULT_CHECK_EVERY)

  def test_non_separable_is_not_an_error(self):
    rng = np.random.default_rng(8)
    features = rng.normal(size=(40, 2))
    labels = np.tile([0.0, 1.0], 20)  # both classes surround the origin
    # The JST solvers run out their budget (the exact default stops early:
    # margin_exact_test).
    result = margin.max_margin_from_gram(features @ features.T, labels,
                                         solver='working_set',
                                         max_iterations=300)
    self.assertLessEqual(result.margin, 0)
    self.assertFalse(result.converged)
    self.assertEqual(result.stop_reason, 'max_iterations')
    self.assertGreaterEqual(result.margin_upper_bound, 0)
    self.assertTrue(np.all(np.isfinite(result.dual_coef)))


class ErrorTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    features, self.labels, _, _ = _separable_problem(10, 5, seed=9, gap=0.1)
    self.features = features
    self.gram = features @ features.T

  @parameterized.named_parameters(
      ('non_square', 'gram', np.ones((3, 4)), 'square'),
      ('one_dimensional', 'gram', np.ones(9), 'square'),
      ('length_mismatch', 'labels', np.array([0.0, 1.0, 1.0]), '3 entries'),
      ('labels_not_binary', 'labels', np.arange(10.0), '{0, 1}'),
      ('labels_mixed', 'labels', np.array([-1.0, 0, 1] * 3 + [1]), '{0, 1}'),
      ('one_class', 'labels', np.ones(10), 'one class'),
      ('unknown_solver', 'solver', 'svm', 'unknown for a Gram'),
      ('primal_on_gram', 'solver', 'primal', 'max_margin_from_features'),
      ('zero_iterations', 'max_iterations', 0, 'max_iterations'),
      ('zero_check_every', 'check_every', 0, 'check_every'),
      ('negative_tolerance', 'tolerance', -1e-3, 'tolerance'),
      ('zero_max_seconds', 'max_seconds', 0.0, 'max_seconds'),
      ('bad_dtype', 'dtype', np.int32, 'dtype'),
  )
  def test_gram_errors(self, argument, value, substring):
    kwargs = {'gram': self.gram, 'labels': self.labels, argument: value}
    with self.assertRaisesRegex(errors.AfterKernelError, substring) as caught:
      margin.max_margin_from_gram(**kwargs)
    self.assertNotIn('\n', str(caught.exception))

  def test_non_finite_gram(self):
    gram = self.gram.copy()
    gram[0, 1] = np.nan
    gram[2, 2] = np.inf
    with self.assertRaisesRegex(errors.AfterKernelError,
                                '2 NaN/inf.*diverged'):
      margin.max_margin_from_gram(gram, self.labels)

  def test_negative_diagonal(self):
    gram = self.gram.copy()
    gram[3, 3] = -1
    with self.assertRaisesRegex(errors.AfterKernelError, 'negative diagonal'):
      margin.max_margin_from_gram(gram, self.labels)

  def test_feature_errors(self):
    with self.assertRaisesRegex(errors.AfterKernelError, '2-D'):
      margin.max_margin_from_features(self.features[0], self.labels)
    features = self.features.copy()
    features[4, 0] = np.inf
    with self.assertRaisesRegex(errors.AfterKernelError, '1 NaN/inf.*diverged'):
      margin.max_margin_from_features(features, self.labels)
    with self.assertRaisesRegex(errors.AfterKernelError, 'one class'):
      margin.max_margin_from_features(self.features, np.zeros(10))
    with self.assertRaisesRegex(errors.AfterKernelError, 'tolerance'):
      margin.max_margin_from_features(self.features, self.labels,
                                      tolerance=-1)
    with self.assertRaisesRegex(errors.AfterKernelError, 'all zero'):
      margin.max_margin_from_features(np.zeros((10, 3)), self.labels)

  def test_prediction_errors(self):
    result = margin.max_margin_from_gram(self.gram, self.labels,
                                         max_iterations=20)
    with self.assertRaisesRegex(errors.AfterKernelError, 'cross_gram'):
      margin.decision_function(result, np.ones((4, 9)))
    with self.assertRaisesRegex(errors.AfterKernelError, 'NaN/inf'):
      margin.decision_function(result, np.full((4, 10), np.nan))
    with self.assertRaisesRegex(errors.AfterKernelError, '3 entries'):
      margin.test_error(result, np.ones((4, 10)), np.ones(3))
    with self.assertRaisesRegex(errors.AfterKernelError, '{0, 1}'):
      margin.test_error(result, np.ones((4, 10)), np.full(4, 2.0))


if __name__ == '__main__':
  absltest.main()
