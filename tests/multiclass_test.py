"""Tests for afterkernel.data.multiclass: ten-class digit tasks."""

import os
import tempfile

from absl.testing import absltest
import numpy as np

from afterkernel import errors
from afterkernel.data import multiclass

_DATA_DIR = os.environ.get('AFTERKERNEL_DATA_DIR') or os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))), 'shared', 'data')
_HAVE_MNIST = os.path.exists(os.path.join(_DATA_DIR, 'mnist',
                                          'train-labels-idx1-ubyte.gz'))
_HAVE_CIFAR = os.path.exists(os.path.join(_DATA_DIR, 'cifar10',
                                          'test_batch_first1000.bin.gz'))


class MulticlassTest(absltest.TestCase):

  def test_digits_has_all_classes_in_unit_range(self):
    task = multiclass.load_multiclass_task('digits')
    self.assertEqual(task.x_train.shape, (1200, 8, 8, 1))
    self.assertEqual(task.x_test.shape, (597, 8, 8, 1))
    self.assertEqual(sorted(np.unique(task.y_train)), list(range(10)))
    self.assertEqual(task.x_train.dtype, np.float32)
    self.assertEqual(task.x_train.max(), 1.0)
    self.assertGreaterEqual(task.x_train.min(), 0.0)

  def test_subsets_are_seeded(self):
    a = multiclass.load_multiclass_task('digits', num_train=100, num_test=50,
                                        seed=3)
    b = multiclass.load_multiclass_task('digits', num_train=100, num_test=50,
                                        seed=3)
    c = multiclass.load_multiclass_task('digits', num_train=100, seed=4)
    self.assertEqual(len(a.y_train), 100)
    self.assertEqual(len(a.y_test), 50)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    self.assertFalse(np.array_equal(a.y_train, c.y_train))
    full = multiclass.load_multiclass_task('digits')
    # A subset is a set of rows of the full task.
    rows = {r.tobytes() for r in full.x_train}
    self.assertTrue(all(r.tobytes() in rows for r in a.x_train))

  def test_one_hot(self):
    np.testing.assert_array_equal(multiclass.one_hot(np.array([2, 0]), 3),
                                  [[0, 0, 1], [1, 0, 0]])
    with self.assertRaisesRegex(errors.AfterKernelError, r'\[0, 3\)'):
      multiclass.one_hot(np.array([3]), 3)

  def test_bad_inputs(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'unknown'):
      multiclass.load_multiclass_task('svhn')
    with self.assertRaisesRegex(errors.AfterKernelError, 'num_train'):
      multiclass.load_multiclass_task('digits', num_train=5000)

  @absltest.skipUnless(_HAVE_MNIST, f'no MNIST files in {_DATA_DIR}; set '
                       'AFTERKERNEL_DATA_DIR')
  def test_real_mnist_labels_and_counts(self):
    task = multiclass.load_multiclass_task('mnist', _DATA_DIR)
    self.assertEqual(task.x_train.shape, (60000, 28, 28, 1))
    self.assertEqual(task.x_test.shape, (10000, 28, 28, 1))
    # First labels and class counts from the data README.
    np.testing.assert_array_equal(task.y_train[:10],
                                  [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    np.testing.assert_array_equal(
        np.bincount(task.y_test),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    self.assertAlmostEqual(float(task.x_train.mean()), 33.3184 / 255,
                           places=4)


  def test_cifar10_missing_files_are_named(self):
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'missing data file .*data_batch_1'):
      multiclass.load_multiclass_task('cifar10', tempfile.mkdtemp())
    with self.assertRaisesRegex(errors.AfterKernelError, 'cifar_test_source'):
      multiclass.load_multiclass_task('cifar10', tempfile.mkdtemp(),
                                      cifar_test_source='official')

  @absltest.skipUnless(_HAVE_CIFAR, f'no CIFAR-10 files in {_DATA_DIR}; set '
                       'AFTERKERNEL_DATA_DIR')
  def test_real_cifar10_has_ten_classes_and_the_exact_test_records(self):
    task = multiclass.load_multiclass_task('cifar10', _DATA_DIR,
                                           num_train=2000, seed=1)
    self.assertEqual(task.x_train.shape, (2000, 32, 32, 3))
    # The default test source: the exact first 1000 official test records
    # (first labels of the official test batch: cat, ship, ship, airplane).
    self.assertEqual(task.x_test.shape, (1000, 32, 32, 3))
    np.testing.assert_array_equal(task.y_test[:4], [3, 8, 8, 0])
    self.assertEqual(sorted(np.unique(task.y_train)), list(range(10)))
    self.assertEqual(task.num_classes, 10)
    self.assertBetween(float(task.x_train.max()), 0.99, 1.0)
    self.assertIn('exact_first_1000', task.info['source'])


if __name__ == '__main__':
  absltest.main()
