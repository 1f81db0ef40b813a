"""Tests for afterkernel.kernel_fit.ridge: kernel ridge regression.

The closed-form leave-one-out errors against brute force (one
numpy.linalg.solve per left-out example), the fitted coefficients against
numpy.linalg.solve of (K + lambda I) a = y, the choice made without test
labels, and the rounding-noise floor below which ridges are not scored.
"""

from absl.testing import absltest
import numpy as np

from afterkernel import errors
from afterkernel import kernel_fit
from kernel_fit_fixture import random_problem as _random_problem


class RidgeTest(absltest.TestCase):

  def test_closed_form_loo_equals_brute_force(self):
    phi, y, phi_test, y_test = _random_problem(seed=4, n=12, width=6)
    gram = phi @ phi.T + 0.1 * np.eye(12)  # full rank
    ridges = (1e-3, 1e-2, 0.1, 1.0, 10.0)
    result = kernel_fit.fit_ridge(gram, y, phi_test @ phi.T, y_test,
                                  ridges=ridges)
    scale = np.trace(gram) / 12
    brute = []
    for relative in ridges:
      residuals = []
      for i in range(12):
        keep = np.arange(12) != i
        coef = np.linalg.solve(gram[np.ix_(keep, keep)] +
                               relative * scale * np.eye(11), y[keep])
        residuals.append(y[i] - gram[i, keep] @ coef)
      brute.append(np.mean(np.square(residuals)))
    np.testing.assert_allclose(result.details['grid_loo_mse'], brute,
                               rtol=1e-8)
    best = int(np.argmin(brute))
    self.assertAlmostEqual(result.ridge, ridges[best] * scale)
    expected = np.linalg.solve(gram + result.ridge * np.eye(12), y)
    np.testing.assert_allclose(result.dual_coef, expected, rtol=1e-8,
                               atol=1e-12)
    np.testing.assert_allclose(result.test_predictions,
                               phi_test @ phi.T @ expected, rtol=1e-8,
                               atol=1e-12)

  def test_does_not_use_test_labels(self):
    phi, y, phi_test, y_test = _random_problem(seed=5)
    args = (phi @ phi.T, y, phi_test @ phi.T)
    a = kernel_fit.fit_ridge(*args, y_test)
    b = kernel_fit.fit_ridge(*args, -y_test)
    self.assertEqual(a.ridge, b.ridge)
    np.testing.assert_array_equal(a.dual_coef, b.dual_coef)
    self.assertAlmostEqual(a.test_error + b.test_error, 1.0)

  def test_small_ridge_interpolates_and_large_ridge_shrinks(self):
    phi, y, phi_test, y_test = _random_problem(seed=6, n=15, width=40)
    args = (phi @ phi.T, y, phi_test @ phi.T, y_test)
    tiny = kernel_fit.fit_ridge(*args, ridges=(1e-9,))
    huge = kernel_fit.fit_ridge(*args, ridges=(1e6,))
    self.assertLess(tiny.train_mse, 1e-10)
    self.assertGreater(huge.train_mse, 0.99)


  def _brute_force_loo(self, gram, y, lam):
    n = len(y)
    residuals = []
    for i in range(n):
      keep = np.arange(n) != i
      coef = np.linalg.solve(gram[np.ix_(keep, keep)] + lam * np.eye(n - 1),
                             y[keep])
      residuals.append(y[i] - gram[i, keep] @ coef)
    return np.mean(np.square(residuals))

  def test_loo_is_that_of_the_returned_predictor_on_low_rank_float32(self):
    # The review's counterexample: P = 60 < n = 200 float32 features, so K
    # is singular up to float32 rounding (min eigenvalue ~ -3e-5). Before the
    # fix, r = 1e-8 reported LOO MSE 1.19 while the returned predictor's
    # brute-force LOO MSE was 7235.
    rng = np.random.default_rng(0)
    phi = rng.standard_normal((200, 60)).astype(np.float32)
    gram = (phi @ phi.T).astype(np.float64)
    y = np.sign(phi[:, 0] + 0.5 * rng.standard_normal(200))
    ridges = (1e-8, 1e-6, 1e-4)
    result = kernel_fit.fit_ridge(gram, y, gram[:5], y[:5], ridges=ridges)
    details = result.details
    self.assertEqual(details['num_ridges_below_floor'], 2)
    self.assertBetween(details['noise_floor_relative_ridge'], 1e-6, 1e-4)
    self.assertEqual(details['grid_relative_ridges'], (1e-4,))
    self.assertAlmostEqual(result.ridge, 1e-4 * np.trace(gram) / 200)
    # The returned predictor is the scored one: its own brute-force LOO and
    # training predictions agree with what is reported.
    self.assertAlmostEqual(details['loo_mse'],
                           self._brute_force_loo(gram, y, result.ridge),
                           delta=1e-6 * details['loo_mse'])
    self.assertAlmostEqual(result.train_mse,
                           np.mean((gram @ result.dual_coef - y)**2),
                           delta=1e-6)
    np.testing.assert_allclose(result.test_predictions,
                               gram[:5] @ result.dual_coef, rtol=1e-12)
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'rounding-noise floor') as caught:
      kernel_fit.fit_ridge(gram, y, gram[:5], y[:5], ridges=(1e-8, 1e-6))
    self.assertNotIn('\n', str(caught.exception))

  def test_float64_gram_keeps_small_ridges(self):
    # The same rank-deficient problem in float64: rounding is ~1e-16, so the
    # floor is far below the grid and r = 1e-8 is scored (and its closed-form
    # LOO is still that of the predictor).
    rng = np.random.default_rng(0)
    phi = rng.standard_normal((60, 20))
    gram = phi @ phi.T
    y = np.sign(phi[:, 0] + 0.5 * rng.standard_normal(60))
    result = kernel_fit.fit_ridge(gram, y, gram[:3], y[:3], ridges=(1e-8,))
    self.assertLess(result.details['noise_floor_relative_ridge'], 1e-10)
    self.assertAlmostEqual(
        result.details['loo_mse'],
        self._brute_force_loo(gram, y, result.ridge),
        delta=1e-6 * result.details['loo_mse'])
    # Rounded to float32 values, the same Gram gets the float32 floor.
    rounded = gram.astype(np.float32).astype(np.float64)
    floor32 = kernel_fit.fit_ridge(rounded, y, rounded[:3], y[:3], ridges=(
        1.0,)).details['noise_floor_relative_ridge']
    self.assertGreater(floor32, 1e-6)

  def test_ties_go_to_the_larger_ridge(self):
    # K = c I: f_{-i}(x_i) = 0 for every ridge, so every LOO MSE is 1.
    gram = 3.0 * np.eye(10)
    y = np.where(np.arange(10) % 2 == 0, 1.0, -1.0)
    ridges = (1e-3, 1e-2, 0.1, 1.0, 10.0)
    result = kernel_fit.fit_ridge(gram, y, gram[:2], y[:2], ridges=ridges)
    np.testing.assert_allclose(result.details['grid_loo_mse'], 1.0,
                               rtol=1e-12)
    self.assertEqual(result.details['relative_ridge'], 10.0)
    self.assertAlmostEqual(result.ridge, 30.0)


if __name__ == '__main__':
  absltest.main()
