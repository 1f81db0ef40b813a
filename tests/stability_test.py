"""Tests of afterkernel.margin.stability: what a certificate pins down.

The exact max-margin classifier comes from an independent float64 dual
(scipy L-BFGS-B, margin_fixture.reference_dual); a loosely solved classifier
must lie in the ball the certificate gives, and its certain test
predictions must be the exact classifier's.
"""

import math

from absl.testing import absltest
import numpy as np

from afterkernel import errors
from afterkernel import margin
from afterkernel.margin import stability
import margin_fixture


def _loose_and_reference(seed, tolerance):
  x, y, x_test, y_test = margin_fixture.separable(60, 30, seed, gap=0.002,
                                                  n_test=2000)
  gram = x @ x.T
  result = margin.max_margin_from_gram(gram, y, solver='exact',
                                       tolerance=tolerance)
  gamma_star, a_star = margin_fixture.reference_dual(gram, y)
  return x, y, x_test, y_test, gram, result, gamma_star, a_star


class BallTest(absltest.TestCase):

  def test_loose_solution_lies_in_the_certified_ball(self):
    for seed in range(3):
      x, y, _, _, _, result, gamma_star, a_star = _loose_and_reference(
          seed, tolerance=0.05)
      scale = result.feature_scale
      signs = np.where(y > 0, 1.0, -1.0)
      # Both classifiers in rescaled units, scaled to min_i y_i <v, x_i> = 1.
      w = x.T @ result.dual_coef * scale
      v = w / np.min(signs * ((x / scale) @ w))
      v_star = (x / scale).T @ (a_star * signs)
      self.assertAlmostEqual(np.min(signs * ((x / scale) @ v_star)), 1.0,
                             places=4)
      self.assertAlmostEqual(np.linalg.norm(v), 1 / result.margin, places=6)
      self.assertBetween(gamma_star, result.margin,
                         result.margin_upper_bound * (1 + 1e-9))
      radius_sq = 1 / result.margin**2 - 1 / result.margin_upper_bound**2
      self.assertLessEqual(np.sum((v - v_star)**2), radius_sq * (1 + 1e-4))


class BoundsTest(absltest.TestCase):

  def test_exact_classifier_error_lies_within_the_bounds(self):
    nontrivial = 0
    for seed in range(3):
      x, y, x_test, y_test, gram, result, _, a_star = _loose_and_reference(
          seed, tolerance=0.05)
      signs = np.where(y > 0, 1.0, -1.0)
      decisions = margin.decision_function(result, x_test @ x.T)
      weight_norm = stability.gram_weight_norm(result, gram)
      self.assertAlmostEqual(weight_norm,
                             np.linalg.norm(x.T @ result.dual_coef), places=8)
      test_norms = np.linalg.norm(x_test, axis=1)
      lower, upper = stability.certified_error_bounds(
          result, decisions, weight_norm, test_norms, y_test)
      exact = x_test @ (x.T @ (a_star * signs))
      exact_error = np.mean((exact > 0) != (y_test > 0.5))
      loose_error = np.mean((decisions > 0) != (y_test > 0.5))
      self.assertBetween(exact_error, lower, upper)
      self.assertBetween(loose_error, lower, upper)
      # Certain points: the loose and exact predictions agree.
      radius = stability.prediction_radius(result)
      certain = np.abs(decisions) > radius * weight_norm * test_norms
      np.testing.assert_array_equal((decisions > 0)[certain],
                                    (exact > 0)[certain])
      nontrivial += upper > lower
    # The loose solves leave some test predictions open (the test bites).
    self.assertGreater(nontrivial, 0)

  def test_tight_solve_narrows_the_interval(self):
    x, y, x_test, y_test = margin_fixture.separable(60, 30, 0, gap=0.002,
                                                    n_test=2000)
    gram = x @ x.T
    widths = []
    for tolerance in (0.05, 1e-8):
      result = margin.max_margin_from_gram(gram, y, solver='interior_point',
                                           tolerance=tolerance)
      lower, upper = stability.certified_error_bounds(
          result, margin.decision_function(result, x_test @ x.T),
          stability.gram_weight_norm(result, gram),
          np.linalg.norm(x_test, axis=1), y_test)
      widths.append(upper - lower)
    self.assertLess(widths[1], widths[0])
    self.assertLess(widths[1], 0.01)

  def test_radius_formula_and_the_cases_it_bounds_nothing(self):
    x, y, _, _ = margin_fixture.separable(30, 10, 1, n_test=0)
    result = margin.max_margin_from_gram(x @ x.T, y)
    expected = math.sqrt(1 - (result.margin / result.margin_upper_bound)**2)
    self.assertAlmostEqual(stability.prediction_radius(result), expected)
    for changes in ({'margin': -1e-3}, {'margin': 0.0},
                    {'margin_upper_bound': math.inf}, {'intercept': 0.5},
                    {'margin_upper_bound': result.margin / 2}):
      changed = margin.MarginResult(**{**result.__dict__, **changes})
      self.assertIsNone(stability.prediction_radius(changed), changes)
      self.assertEqual(
          stability.certified_error_bounds(changed, np.ones(3), 1.0,
                                           np.ones(3), np.ones(3)),
          (None, None))

  def test_zero_norm_points_are_certain(self):
    x, y, _, _ = margin_fixture.separable(30, 10, 2)
    result = margin.max_margin_from_gram(x @ x.T, y, tolerance=0.2)
    lower, upper = stability.certified_error_bounds(
        result, np.zeros(2), 1.0, np.zeros(2), np.array([1.0, 0.0]))
    self.assertEqual((lower, upper), (0.5, 0.5))

  def test_bad_shapes_are_named(self):
    x, y, _, _ = margin_fixture.separable(30, 10, 3)
    result = margin.max_margin_from_gram(x @ x.T, y)
    with self.assertRaisesRegex(errors.AfterKernelError, 'one entry per test'):
      stability.certified_error_bounds(result, np.ones(3), 1.0, np.ones(2),
                                       np.ones(3))
    with self.assertRaisesRegex(errors.AfterKernelError, 'train_gram must be'):
      stability.gram_weight_norm(result, np.eye(4))
    with self.assertRaisesRegex(errors.AfterKernelError, 'finite'):
      stability.certified_error_bounds(result, np.ones(2), np.nan, np.ones(2),
                                       np.ones(2))


def _bounds_fn(gram, x, x_test, y_test):
  def error_bounds(result):
    return stability.certified_error_bounds(
        result, margin.decision_function(result, x_test @ x.T),
        stability.gram_weight_norm(result, gram),
        np.linalg.norm(x_test, axis=1), y_test)
  return error_bounds


class TightenTest(absltest.TestCase):

  def test_closes_the_interval_at_the_exact_classifiers_error(self):
    for solver in margin.WARM_START_SOLVERS:
      for seed in range(2):
        x, y, x_test, y_test, gram, _, _, a_star = _loose_and_reference(
            seed, tolerance=0.05)
        tolerances = []

        def solve(tolerance, previous, max_seconds, tolerances=tolerances,
                  gram=gram, y=y, solver=solver):
          tolerances.append(tolerance)
          if previous is not None and solver == 'exact':
            self.assertEqual(tolerance, max(tolerances[-2] / 100, 1e-12))
          elif previous is not None:
            # The interior point goes straight to the floor.
            self.assertEqual(tolerance, 1e-12)
          return margin.max_margin_from_gram(gram, y, solver=solver,
                                             tolerance=tolerance,
                                             warm_start=previous)

        error_bounds = _bounds_fn(gram, x, x_test, y_test)
        result, (lower, upper), iterations = stability.tighten(
            solve, error_bounds, 0.05, 1e-12)
        # The loose solve left the interval open, so tightening ran.
        loose = margin.max_margin_from_gram(gram, y, solver=solver,
                                            tolerance=0.05)
        loose_lower, loose_upper = error_bounds(loose)
        self.assertGreater(loose_upper, loose_lower, (solver, seed))
        self.assertGreater(len(tolerances), 1)
        self.assertEqual(lower, upper, (solver, seed, tolerances))
        self.assertTrue(result.converged)
        self.assertGreaterEqual(iterations, result.iterations)
        # The closed interval is the independent optimum's test error.
        signs = np.where(y > 0, 1.0, -1.0)
        exact = x_test @ (x.T @ (a_star * signs))
        self.assertEqual(lower, np.mean((exact > 0) != (y_test > 0.5)))

  def test_min_tolerance_none_or_not_below_solves_once(self):
    x, y, x_test, y_test, gram, _, _, _ = _loose_and_reference(0, 0.05)
    calls = []

    def solve(tolerance, previous, max_seconds):
      calls.append((tolerance, previous))
      return margin.max_margin_from_gram(gram, y, tolerance=tolerance)

    for floor in (None, 0.05, 0.1):
      calls.clear()
      _, (lower, upper), _ = stability.tighten(
          solve, _bounds_fn(gram, x, x_test, y_test), 0.05, floor)
      self.assertEqual(calls, [(0.05, None)])
      self.assertGreater(upper, lower)
    with self.assertRaisesRegex(errors.AfterKernelError, 'min_tolerance'):
      stability.tighten(solve, _bounds_fn(gram, x, x_test, y_test), 0.05,
                        0.0)

  def test_unconverged_tighter_round_is_discarded(self):
    x, y, x_test, y_test, gram, _, _, _ = _loose_and_reference(1, 0.05)

    def solve(tolerance, previous, max_seconds):
      # The tighter round restarts cold with one step: it cannot converge.
      return margin.max_margin_from_gram(
          gram, y, tolerance=tolerance,
          max_iterations=None if previous is None else 1,
          check_every=None if previous is None else 1)

    first = margin.max_margin_from_gram(gram, y, tolerance=0.05)
    result, bounds, iterations = stability.tighten(
        solve, _bounds_fn(gram, x, x_test, y_test), 0.05, 1e-10)
    self.assertTrue(result.converged)
    np.testing.assert_array_equal(result.dual_coef, first.dual_coef)
    self.assertEqual(iterations, first.iterations + 1)
    self.assertGreater(bounds[1], bounds[0])

  def test_unconverged_but_better_round_is_kept_as_converged(self):
    x, y, x_test, y_test, gram, _, _, a_star = _loose_and_reference(0, 0.05)

    def solve(tolerance, previous, max_seconds):
      if previous is None:
        return margin.max_margin_from_gram(gram, y, tolerance=tolerance)
      # Asked for 0 (unreachable): stalls, far tighter than the first.
      return margin.max_margin_from_gram(gram, y, solver='interior_point',
                                         tolerance=0.0)

    result, (lower, upper), _ = stability.tighten(
        solve, _bounds_fn(gram, x, x_test, y_test), 0.05, 1e-10)
    self.assertEqual(result.stop_reason, margin.STOP_STALLED)
    self.assertTrue(result.converged)
    self.assertLess(
        (result.margin_upper_bound - result.margin) / result.margin_upper_bound,
        1e-9)
    signs = np.where(y > 0, 1.0, -1.0)
    exact = x_test @ (x.T @ (a_star * signs))
    self.assertEqual(lower, upper)
    self.assertEqual(lower, np.mean((exact > 0) != (y_test > 0.5)))

  def test_max_seconds_is_shared_by_the_rounds(self):
    x, y, x_test, y_test, gram, _, _, _ = _loose_and_reference(0, 0.05)
    budgets, spent = [], []

    def solve(tolerance, previous, max_seconds):
      budgets.append(max_seconds)
      result = margin.max_margin_from_gram(gram, y, tolerance=tolerance,
                                           warm_start=previous,
                                           max_seconds=max_seconds)
      spent.append(result.seconds)
      return result

    stability.tighten(solve, _bounds_fn(gram, x, x_test, y_test), 0.05,
                      1e-10, max_seconds=100.0)
    self.assertGreater(len(budgets), 1)
    self.assertEqual(budgets[0], 100.0)
    for k in range(1, len(budgets)):
      self.assertAlmostEqual(budgets[k], 100.0 - sum(spent[:k]), places=9)

  def test_nothing_certified_means_no_tightening(self):
    calls = []
    x, y, _, _ = margin_fixture.separable(30, 10, 1, n_test=0)
    result = margin.max_margin_from_gram(x @ x.T, y)

    def solve(tolerance, previous, max_seconds):
      calls.append(tolerance)
      return result

    out, bounds, _ = stability.tighten(solve, lambda r: (None, None), 1e-4)
    self.assertIs(out, result)
    self.assertEqual(bounds, (None, None))
    self.assertEqual(calls, [1e-4])


if __name__ == '__main__':
  absltest.main()
