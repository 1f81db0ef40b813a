"""Tests for afterkernel.kernel_fit.results: fit records and input checks.

(Named after the package path: studies/results.py has the same basename.)
Errors and MSEs against direct numpy counts, label mapping {0, 1} -> +-1,
the float64 conversion of the Grams, and the flat record of a FitResult.
"""

from absl.testing import absltest
import numpy as np

from afterkernel import errors
from afterkernel.kernel_fit import results


class MeasuresTest(absltest.TestCase):

  def test_error_rate_and_mse_against_numpy(self):
    rng = np.random.default_rng(0)
    predictions = rng.normal(size=50)
    predictions[:3] = 0.0  # f = 0 counts as the minus class
    labels = np.where(rng.random(50) > 0.5, 1.0, -1.0)
    predicted = np.array([1.0 if f > 0 else -1.0 for f in predictions])
    self.assertEqual(results.error_rate(predictions, labels),
                     np.count_nonzero(predicted != labels) / 50)
    self.assertAlmostEqual(results.mse(predictions, labels),
                           sum((f - y)**2 for f, y in zip(predictions, labels))
                           / 50, places=12)


class CheckedProblemTest(absltest.TestCase):

  def test_labels_become_signed_and_grams_float64(self):
    train = np.eye(4, dtype=np.float32)
    cross = np.ones((2, 4), dtype=np.float32)
    train64, cross64, y_train, y_test = results.checked_problem(
        train, np.array([0, 1, 1, 0]), cross, np.array([[1], [-1]]))
    self.assertEqual(train64.dtype, np.float64)
    self.assertEqual(cross64.dtype, np.float64)
    np.testing.assert_array_equal(train64, train)
    np.testing.assert_array_equal(y_train, [-1.0, 1.0, 1.0, -1.0])
    np.testing.assert_array_equal(y_test, [1.0, -1.0])

  def test_bad_labels_name_the_argument(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'y_test is empty'):
      results.checked_problem(np.eye(2), [0, 1], np.ones((0, 2)), [])
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'y_train must be 1-D'):
      results.checked_problem(np.eye(2), np.ones((2, 2)), np.ones((1, 2)),
                              [1])
    with self.assertRaisesRegex(errors.AfterKernelError, 'numeric'):
      results.checked_problem(np.eye(2), ['a', 'b'], np.ones((1, 2)), [1])


class RecordTest(absltest.TestCase):

  def test_record_holds_scalars_only(self):
    result = results.FitResult(
        method='ridge', test_error=0.25, test_mse=0.5, train_error=0.0,
        train_mse=0.125, dual_coef=np.ones(3), test_predictions=np.ones(2),
        ridge=0.1, details={'loo_mse': np.float64(0.75), 'converged': True,
                            'grid_loo_mse': (0.75, 0.8)})
    record = result.to_record()
    self.assertEqual(record, {
        'method': 'ridge', 'test_error': 0.25, 'test_mse': 0.5,
        'train_error': 0.0, 'train_mse': 0.125, 'ridge': 0.1,
        'loo_mse': 0.75, 'converged': True})
    self.assertIs(type(record['loo_mse']), float)


if __name__ == '__main__':
  absltest.main()
