"""Tests for afterkernel.margin.jst: Algorithm 1 of Ji, Srebro & Telgarsky.

'dual' on the Gram and 'primal' on explicit features are one algorithm and
must agree step for step; the reported margin is recomputed from the returned
coefficients (float64 numpy); the stopping rules (tolerance, iteration and
time budgets, non-separable data) end runs where they say.
"""

from absl.testing import absltest
import numpy as np

from afterkernel import margin

from margin_fixture import margin_from_coefficients as _margin_from_coefficients
from margin_fixture import separable_problem as _separable_problem


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
    # exact_test).
    result = margin.max_margin_from_gram(features @ features.T, labels,
                                         solver='working_set',
                                         max_iterations=300)
    self.assertLessEqual(result.margin, 0)
    self.assertFalse(result.converged)
    self.assertEqual(result.stop_reason, 'max_iterations')
    self.assertGreaterEqual(result.margin_upper_bound, 0)
    self.assertTrue(np.all(np.isfinite(result.dual_coef)))

if __name__ == '__main__':
  absltest.main()
