"""Tests for afterkernel.data.tasks: the transforms of a binary task.

`permute`, `subsample`, `standardize` and `signed_labels` on tasks read from
the tiny files of data_fixture: seeds, alignment of pairs, train-only
statistics, and errors.
"""

import json

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from afterkernel import data
from afterkernel.errors import AfterKernelError
from data_fixture import DataTestBase


class PermuteSubsampleTest(DataTestBase):

  def setUp(self):
    super().setUp()
    self.task = data.load_binary_task('mnist', 3, 8, data_dir=self.root)

  @staticmethod
  def _ids(x):
    return np.rint(x[:, 0, 0, 0] * 255).astype(int)

  def test_same_seed_same_order_different_seed_different_order(self):
    a, b = data.permute(self.task, 1), data.permute(self.task, 1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    orders = {tuple(self._ids(data.permute(self.task, s).x_train))
              for s in range(5)}
    self.assertGreater(len(orders), 1)

  def test_uses_default_rng_train_then_test(self):
    rng = np.random.default_rng(7)
    train_order, test_order = rng.permutation(6), rng.permutation(4)
    task = data.permute(self.task, 7)
    np.testing.assert_array_equal(task.x_train, self.task.x_train[train_order])
    np.testing.assert_array_equal(task.x_test, self.task.x_test[test_order])

  def test_pairs_stay_aligned(self):
    task = data.permute(self.task, 3)
    for split, labels, offset in (
        ('train', self.fake.mnist_train_labels, 0),
        ('test', self.fake.mnist_test_labels, 100)):
      ids = self._ids(getattr(task, f'x_{split}')) - offset
      np.testing.assert_array_equal(getattr(task, f'y_{split}'),
                                    labels[ids] == 3)
      self.assertCountEqual(ids, self._ids(getattr(self.task, f'x_{split}'))
                            - offset)

  def test_records_seed_and_leaves_input_alone(self):
    task = data.permute(self.task, 3)
    self.assertEqual(task.info['permutation_seed'], 3)
    self.assertEqual(task.info['transforms'], [{'op': 'permute', 'seed': 3}])
    self.assertIsNone(self.task.info['permutation_seed'])
    self.assertEqual(self.task.info['transforms'], [])

  def test_permute_twice_raises(self):
    with self.assertRaisesRegex(AfterKernelError, 'already permuted'):
      data.permute(data.permute(self.task, 0), 1)

  @parameterized.parameters(-1, 1.5, None, True)
  def test_bad_seed_raises(self, seed):
    with self.assertRaisesRegex(AfterKernelError, 'seed must be'):
      data.permute(self.task, seed)

  def test_subsample_first_k(self):
    permuted = data.permute(self.task, 0)
    task = data.subsample(permuted, 4, None)
    np.testing.assert_array_equal(task.x_train, permuted.x_train[:4])
    np.testing.assert_array_equal(task.y_train, permuted.y_train[:4])
    np.testing.assert_array_equal(task.x_test, permuted.x_test)
    self.assertEqual((task.info['n_train'], task.info['n_test']), (4, 4))
    self.assertEqual(task.info['transforms'][-1],
                     {'op': 'subsample', 'num_train': 4, 'num_test': None})
    self.assertEqual(task.info['permutation_seed'], 0)
    json.dumps(task.info)

  @parameterized.named_parameters(
      ('zero_train', 0, None, 'num_train must be a positive'),
      ('negative_test', None, -2, 'num_test must be a positive'),
      ('float', 2.0, None, 'num_train must be a positive'),
      ('too_many_train', 7, None, 'num_train=7 exceeds the 6'),
      ('too_many_test', None, 5, 'num_test=5 exceeds the 4'))
  def test_subsample_errors(self, num_train, num_test, message):
    with self.assertRaisesRegex(AfterKernelError, message):
      data.subsample(self.task, num_train, num_test)

  def test_standardize_uses_train_statistics_only(self):
    task = data.standardize(self.task)
    x, x_test = (np.asarray(a, np.float64)
                 for a in (self.task.x_train, self.task.x_test))
    # Independent: flatten, center per column, one global std.
    flat = x.reshape(len(x), -1)
    mean = flat.mean(axis=0)
    scale = np.sqrt(np.mean((flat - mean)**2))
    np.testing.assert_allclose(task.x_train.reshape(len(x), -1),
                               (flat - mean) / scale, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        task.x_test.reshape(len(x_test), -1),
        (x_test.reshape(len(x_test), -1) - mean) / scale, rtol=1e-5,
        atol=1e-5)
    self.assertEqual(task.x_train.dtype, np.float32)
    np.testing.assert_allclose(task.x_train.mean(axis=0), 0.0, atol=1e-5)
    self.assertAlmostEqual(float(np.sqrt(np.mean(task.x_train**2))), 1.0,
                           places=5)
    np.testing.assert_array_equal(task.y_test, self.task.y_test)
    self.assertTrue(task.info['standardized'])
    self.assertEqual(task.info['transforms'][-1]['op'], 'standardize')
    self.assertNotIn('standardized', self.task.info)
    json.dumps(task.info)
    with self.assertRaisesRegex(AfterKernelError, 'already standardized'):
      data.standardize(task)

  def test_signed_labels(self):
    np.testing.assert_array_equal(
        data.signed_labels(np.array([0, 1, 1, 0], np.float32)),
        [-1.0, 1.0, 1.0, -1.0])
    self.assertEqual(data.signed_labels(self.task.y_train).dtype, np.float64)
    with self.assertRaisesRegex(AfterKernelError, 'must be 0 or 1'):
      data.signed_labels(np.array([-1.0, 1.0]))


if __name__ == '__main__':
  absltest.main()
