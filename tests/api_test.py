"""Tests for afterkernel.margin.api: the entry points, predictions and errors.

Scaling the Gram changes only the feature scale; `dual_coef` works on the
unscaled cross-Gram (checked against explicit weights); labels in {0, 1} and
{-1, +1} agree; test error against a direct count; bad input raises one
AfterKernelError of one line.
"""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from afterkernel import errors
from afterkernel import margin

from margin_fixture import separable_problem as _separable_problem


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

  def test_warm_start_errors(self):
    result = margin.max_margin_from_gram(self.gram, self.labels)
    for solver in ('dual', 'jst1', 'working_set', 'stochastic', 'sklearn'):
      with self.assertRaisesRegex(errors.AfterKernelError,
                                  f'warm_start is supported by the solvers '
                                  f'exact, interior_point, not'):
        margin.max_margin_from_gram(self.gram, self.labels, solver=solver,
                                    warm_start=result)
    with self.assertRaisesRegex(errors.AfterKernelError, "not 'primal'"):
      margin.max_margin_from_features(self.features, self.labels,
                                      solver='primal', warm_start=result)
    other = margin.max_margin_from_gram(self.gram[:8, :8], self.labels[:8])
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'on these 10 examples.*shape \\(8,\\)'):
      margin.max_margin_from_gram(self.gram, self.labels, warm_start=other)
    scaled = margin.max_margin_from_gram(4 * self.gram, self.labels)
    with self.assertRaisesRegex(errors.AfterKernelError, 'another Gram'):
      margin.max_margin_from_gram(self.gram, self.labels, warm_start=scaled)
    with self.assertRaisesRegex(errors.AfterKernelError, 'no-bias'):
      margin.max_margin_from_gram(
          self.gram, self.labels,
          warm_start=margin.MarginResult(**{**result.__dict__,
                                            'intercept': 0.3}))

  def test_warm_start_on_features_matches_the_gram_route(self):
    loose = margin.max_margin_from_features(
        self.features, self.labels, solver='interior_point', tolerance=1e-2)
    tight = margin.max_margin_from_features(
        self.features, self.labels, solver='interior_point', tolerance=1e-10,
        warm_start=loose)
    reference = margin.max_margin_from_gram(self.gram, self.labels,
                                            tolerance=1e-10)
    self.assertTrue(tight.converged)
    np.testing.assert_allclose(tight.margin, reference.margin, rtol=1e-8)

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
