"""Tests for afterkernel.margin.exact: the default solver.

The exact solver is checked against an independent float64 QP (scipy's
L-BFGS-B on the bias-free hard-margin dual, min_{a >= 0} 1/2 a^T Q a - 1^T
a, a different formulation and method from the simplex SLSQP reference of
margin_fixture), its certificate is recomputed from `dual_coef` alone, and
non-separable data must end early with their status.
"""

import time
import warnings

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from afterkernel import margin
from afterkernel.margin import exact
import margin_fixture
from margin_fixture import recomputed_bounds as _recomputed_bounds
from margin_fixture import reference_dual as _reference_dual
from margin_fixture import separable as _separable


class ExactAgainstReferenceTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('wide', 40, 100, 0), ('wide_larger', 120, 300, 1),
      ('narrow', 80, 10, 2), ('narrow_larger', 200, 8, 3),
      ('square', 60, 60, 4))
  def test_margin_and_classifier_match_the_qp(self, n, dims, seed):
    features, labels, test, _ = _separable(n, dims, seed, n_test=50)
    gram = features @ features.T
    optimum, reference = _reference_dual(gram, labels)
    result = margin.max_margin_from_gram(gram, labels)
    self.assertEqual(result.solver, 'exact')
    self.assertTrue(result.converged)
    self.assertEqual(result.stop_reason, 'tolerance')
    # Certified: margin <= gamma* <= upper, gap within the tolerance.
    self.assertLessEqual(result.margin, optimum * (1 + 1e-9))
    self.assertGreaterEqual(result.margin_upper_bound, optimum * (1 - 1e-9))
    self.assertLessEqual((optimum - result.margin) / optimum,
                         margin.DEFAULT_TOLERANCE)
    # The same max-margin direction w = sum_i dual_coef_i phi_i.
    signs = np.where(labels > 0, 1.0, -1.0)
    w_exact = features.T @ result.dual_coef
    w_reference = features.T @ (signs * reference)
    cosine = w_exact @ w_reference / (np.linalg.norm(w_exact) *
                                      np.linalg.norm(w_reference))
    self.assertGreater(cosine, 1 - 1e-3)
    # Hence the same predictions, except maybe within 1e-2 of the boundary.
    reference_decision = test @ w_reference / np.linalg.norm(w_reference)
    clear = np.abs(reference_decision) > 1e-2 * np.abs(test).max()
    np.testing.assert_array_equal(
        margin.predict_labels(result, test @ features.T)[clear],
        (reference_decision > 0)[clear])

  def test_tight_tolerance_matches_to_many_digits(self):
    features, labels, _, _ = _separable(100, 40, seed=5)
    gram = features @ features.T
    optimum, _ = _reference_dual(gram, labels)
    result = margin.max_margin_from_gram(gram, labels, tolerance=1e-9)
    self.assertTrue(result.converged)
    np.testing.assert_allclose(result.margin, optimum, rtol=1e-7)
    np.testing.assert_allclose(result.margin_upper_bound, optimum, rtol=1e-7)


class WarmStartTest(parameterized.TestCase):

  def test_zero_start_is_the_cold_solve_bit_for_bit(self):
    features, labels, _, _ = _separable(80, 30, seed=6)
    gram = features @ features.T
    signs = np.where(labels > 0, 1.0, -1.0)
    scale = float(np.mean(np.sqrt(np.diag(gram))))
    cold = exact.solve_exact(gram, signs, scale, 1e-6, 10**6, 200, None, None)
    zero = exact.solve_exact(gram, signs, scale, 1e-6, 10**6, 200, None, None,
                             initial_coef=np.zeros(80))
    np.testing.assert_array_equal(zero.dual_coef, cold.dual_coef)
    self.assertEqual(zero.iterations, cold.iterations)

  @parameterized.named_parameters(('exact', 'exact'),
                                  ('interior_point', 'interior_point'))
  def test_continuing_a_loose_solve_reaches_the_tight_optimum(self, solver):
    features, labels, _, _ = _separable(100, 40, seed=5)
    gram = features @ features.T
    optimum, _ = _reference_dual(gram, labels)
    loose = margin.max_margin_from_gram(gram, labels, solver=solver,
                                        tolerance=1e-2)
    tight = margin.max_margin_from_gram(gram, labels, solver=solver,
                                        tolerance=1e-9, warm_start=loose)
    cold = margin.max_margin_from_gram(gram, labels, solver=solver,
                                       tolerance=1e-9)
    self.assertTrue(tight.converged)
    self.assertEqual(tight.solver, solver)
    np.testing.assert_allclose(tight.margin, optimum, rtol=1e-7)
    np.testing.assert_allclose(tight.margin_upper_bound, optimum, rtol=1e-7)
    # Its bounds are those of its own coefficients, written out.
    lower, upper, _ = _recomputed_bounds(gram, labels, tight.dual_coef)
    np.testing.assert_allclose([lower, upper],
                               [tight.margin, tight.margin_upper_bound],
                               rtol=1e-9)
    if solver == 'exact':
      # Coordinate descent continues where it stopped: fewer new steps than
      # the cold solve needs.
      self.assertLess(tight.iterations, cold.iterations)

  def test_warm_start_from_a_switched_solve_goes_to_the_interior_point(self):
    features, labels, _, _ = _separable(60, 30, seed=7, gap=0.002)
    gram = features @ features.T
    loose = margin.max_margin_from_gram(gram, labels, solver='interior_point',
                                        tolerance=1e-2)
    switched = margin.MarginResult(**{**loose.__dict__,
                                      'solver': margin.SWITCHED_SOLVER})
    tight = margin.max_margin_from_gram(gram, labels, tolerance=1e-9,
                                        warm_start=switched)
    self.assertEqual(tight.solver, margin.SWITCHED_SOLVER)
    self.assertTrue(tight.converged)
    optimum, _ = _reference_dual(gram, labels)
    np.testing.assert_allclose(tight.margin, optimum, rtol=1e-6)

class NotSeparableTest(absltest.TestCase):

  def _xor(self, copies, noise, seed=0):
    rng = np.random.default_rng(seed)
    corners = np.array([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
    features = np.repeat(corners, copies, axis=0)
    features = features + noise * rng.normal(size=features.shape)
    labels = np.repeat([1.0, 1.0, 0.0, 0.0], copies)
    return features, labels

  def test_xor_ends_early_with_its_status(self):
    for copies, noise in ((1, 0.0), (50, 0.1), (500, 0.3), (20, 3.0)):
      features, labels = self._xor(copies, noise)
      gram = features @ features.T
      with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # compile / load the code first
        tiny, tiny_labels = self._xor(1, 0.0)
        margin.max_margin_from_gram(tiny @ tiny.T, tiny_labels)
      start = time.perf_counter()
      with self.assertWarns(margin.UnconvergedWarning):
        result = margin.max_margin_from_gram(gram, labels)
      seconds = time.perf_counter() - start
      with self.subTest(n=len(labels)):
        self.assertLess(seconds, 1.0)
        self.assertEqual(result.stop_reason, 'not_separable')
        self.assertFalse(result.converged)
        self.assertLessEqual(result.margin, 0.0)
        # The evidence: p = a / sum(a) with ||Z^T p|| <= NOT_SEPARABLE_MARGIN.
        _, upper, a = _recomputed_bounds(gram, labels, result.dual_coef)
        self.assertGreaterEqual(a.min(), 0.0)
        # (a^T Q a is a difference of large terms here: rounding 1e-9.)
        self.assertLessEqual(upper, margin.NOT_SEPARABLE_MARGIN + 1e-9)
        self.assertLessEqual(result.margin_upper_bound,
                             margin.NOT_SEPARABLE_MARGIN)
        np.testing.assert_allclose(upper, result.margin_upper_bound,
                                   atol=1e-9)

  def test_zero_feature_vector_is_not_separable(self):
    features, labels, _, _ = _separable(20, 5, seed=8)
    features[3] = 0.0
    with self.assertWarns(margin.UnconvergedWarning):
      result = margin.max_margin_from_gram(features @ features.T, labels)
    self.assertEqual(result.stop_reason, 'not_separable')
    self.assertEqual(result.margin_upper_bound, 0.0)


class OptionsTest(margin_fixture.SeparableProblemTest):

  def test_unconverged_run_warns_and_says_so(self):
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter('always')
      result = margin.max_margin_from_gram(self.gram, self.labels,
                                           max_iterations=3)
    self.assertFalse(result.converged)
    self.assertEqual(result.stop_reason, 'max_iterations')
    self.assertEqual(result.iterations, 3)
    self.assertTrue(any(issubclass(w.category, margin.UnconvergedWarning) and
                        'max_iterations' in str(w.message) for w in caught))

  def test_max_seconds_stops_at_the_first_check(self):
    with self.assertWarns(margin.UnconvergedWarning):
      result = margin.max_margin_from_gram(self.gram, self.labels,
                                           tolerance=0, max_seconds=1e-9,
                                           check_every=5)
    self.assertEqual(result.solver, 'exact')
    self.assertEqual(result.stop_reason, 'max_seconds')
    self.assertFalse(result.converged)
    self.assertEqual(result.iterations, 5)

  def test_original_solver_names(self):
    for alias, name in (('jst1', 'dual'), ('jst2', 'stochastic')):
      with self.subTest(alias):
        by_alias = margin.max_margin_from_gram(self.gram, self.labels,
                                               solver=alias, tolerance=1e-3,
                                               max_iterations=50_000)
        by_name = margin.max_margin_from_gram(self.gram, self.labels,
                                              solver=name, tolerance=1e-3,
                                              max_iterations=50_000)
        np.testing.assert_array_equal(by_alias.dual_coef, by_name.dual_coef)
        self.assertEqual(by_alias.margin, by_name.margin)
    # Algorithm 1 and the exact solver agree on the optimum.
    jst1 = margin.max_margin_from_gram(self.gram, self.labels, solver='jst1')
    default = margin.max_margin_from_gram(self.gram, self.labels)
    self.assertTrue(jst1.converged and default.converged)
    np.testing.assert_allclose(jst1.margin, default.margin, rtol=2e-4)

  def test_features_route_through_the_gram_when_wide(self):
    wide = margin.max_margin_from_features(self.features[:20], self.labels[:20])
    self.assertEqual(wide.solver, 'exact')  # P = 30 > n = 20
    gram = self.features[:20] @ self.features[:20].T
    np.testing.assert_allclose(self.features[:20] @ wide.weights,
                               gram @ wide.dual_coef, rtol=1e-9, atol=1e-12)
    from_gram = margin.max_margin_from_gram(gram, self.labels[:20])
    np.testing.assert_array_equal(wide.dual_coef, from_gram.dual_coef)
    narrow = margin.max_margin_from_features(self.features, self.labels)
    self.assertEqual(narrow.solver, 'primal')  # P = 30 <= n = 70
    forced = margin.max_margin_from_features(self.features[:20],
                                             self.labels[:20],
                                             solver='primal')
    self.assertEqual(forced.solver, 'primal')

  def test_float32_gram_is_read_as_is(self):
    gram32 = self.gram.astype(np.float32)
    from32 = margin.max_margin_from_gram(gram32, self.labels)
    from64 = margin.max_margin_from_gram(gram32.astype(np.float64),
                                         self.labels)
    np.testing.assert_allclose(from32.margin, from64.margin, rtol=1e-9)
    lower, _, _ = _recomputed_bounds(gram32.astype(np.float64), self.labels,
                                     from32.dual_coef)
    np.testing.assert_allclose(lower, from32.margin, rtol=1e-9)

  def test_shrinking_changes_nothing_but_speed(self):
    from afterkernel.margin import exact  # pylint: disable=g-import-not-at-top
    features, labels, _, _ = _separable(600, 50, seed=10, gap=0.02)
    gram = features @ features.T
    signs = np.where(labels > 0, 1.0, -1.0)
    scale = float(np.mean(np.sqrt(np.diag(gram))))
    results = [exact.solve_exact(gram, signs, scale, 1e-6, 10**6, 50, None,
                                 None, shrinking=shrinking)
               for shrinking in (True, False)]
    for result in results:
      self.assertTrue(result.converged)
    np.testing.assert_allclose(results[0].margin, results[1].margin,
                               rtol=2e-6)


if __name__ == '__main__':
  absltest.main()
