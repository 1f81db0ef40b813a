"""Tests for afterkernel.data: argument and file errors, CIFAR-2, real data.

The readers and transforms have their own tests (local_files_test,
sources_test, tasks_test); the tiny files are written by data_fixture.
"""

import gzip
import json
import os
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from afterkernel import data
from afterkernel.data import sources
from afterkernel.errors import AfterKernelError
from data_fixture import REAL as _REAL
from data_fixture import HAS_MNIST as _HAS_MNIST
from data_fixture import HAS_CIFAR as _HAS_CIFAR
from data_fixture import write_gz as _write_gz
from data_fixture import idx_images as _idx_images
from data_fixture import idx_labels as _idx_labels
from data_fixture import DataTestBase


class ErrorsTest(DataTestBase):

  @parameterized.named_parameters(
      ('unknown_dataset', dict(dataset='imagenet'),
       "unknown dataset 'imagenet'; valid datasets: mnist, cifar10, digits"),
      ('same_class', dict(plus_class=3, minus_class=3), 'must differ'),
      ('class_too_big', dict(plus_class=10), r'plus_class .*\[0, 10\)'),
      ('class_negative', dict(minus_class=-1), r'minus_class .*\[0, 10\)'),
      ('class_float', dict(plus_class=3.0), 'plus_class must be an integer'),
      ('class_bool', dict(plus_class=True), 'plus_class must be an integer'),
      ('bad_test_source', dict(cifar_test_source='full'),
       "unknown cifar_test_source 'full'"),
      ('holdout_zero', dict(holdout_size=0), 'holdout_size must be a positive'),
      ('holdout_negative', dict(dataset='cifar10', holdout_size=-5,
                                cifar_test_source='train_holdout'),
       'holdout_size must be a positive'),
  )
  def test_bad_arguments(self, overrides, message):
    kwargs = dict(dataset='mnist', plus_class=3, minus_class=8,
                  data_dir=self.root)
    kwargs.update(overrides)
    with self.assertRaisesRegex(AfterKernelError, message) as cm:
      data.load_binary_task(**kwargs)
    self.assertNotIn('\n', str(cm.exception))

  def test_numpy_integer_classes_accepted(self):
    task = data.load_binary_task('mnist', np.int64(3), np.uint8(8),
                                 data_dir=self.root)
    self.assertEqual(task.info['plus_class'], 3)
    json.dumps(task.info)

  def test_missing_data_dir(self):
    missing = os.path.join(self.root, 'nope')
    with self.assertRaisesRegex(AfterKernelError,
                                f'data_dir {missing} does not exist.*layout'):
      data.load_binary_task('mnist', 3, 8, data_dir=missing)

  @parameterized.parameters(
      ('mnist', 'mnist/t10k-labels-idx1-ubyte.gz'),
      ('cifar10', 'cifar10/data_batch_4.bin.gz'),
      ('cifar10', 'cifar10/test_batch_first1000.bin.gz'))
  def test_missing_file_named(self, dataset, relative):
    os.remove(self.fake.path(relative))
    with self.assertRaisesRegex(
        AfterKernelError,
        f'missing data file {self.fake.path(relative)}; expected layout'):
      data.load_binary_task(dataset, 3, 5, data_dir=self.root)

  def test_bad_idx_magic(self):
    _write_gz(self.fake.path('mnist/train-images-idx3-ubyte.gz'),
              _idx_images(self.fake.mnist_train, magic=1234))
    with self.assertRaisesRegex(AfterKernelError,
                                'malformed IDX file .*bad magic number 1234'):
      data.load_binary_task('mnist', 3, 8, data_dir=self.root)

  def test_truncated_idx(self):
    _write_gz(self.fake.path('mnist/t10k-images-idx3-ubyte.gz'),
              _idx_images(self.fake.mnist_test)[:-5])
    with self.assertRaisesRegex(AfterKernelError, 'malformed IDX file'):
      data.load_binary_task('mnist', 3, 8, data_dir=self.root)

  def test_idx_count_mismatch(self):
    _write_gz(self.fake.path('mnist/train-labels-idx1-ubyte.gz'),
              _idx_labels(self.fake.mnist_train_labels[:-1]))
    with self.assertRaisesRegex(AfterKernelError,
                                'MNIST train files do not match'):
      data.load_binary_task('mnist', 3, 8, data_dir=self.root)

  def test_not_gzip(self):
    with open(self.fake.path('mnist/train-labels-idx1-ubyte.gz'), 'wb') as f:
      f.write(b'plain bytes, not gzip')
    with self.assertRaisesRegex(AfterKernelError, 'malformed gzip file'):
      data.load_binary_task('mnist', 3, 8, data_dir=self.root)

  def test_wrong_cifar_record_size(self):
    _write_gz(self.fake.path('cifar10/data_batch_2.bin.gz'), b'\x03' * 3072)
    with self.assertRaisesRegex(AfterKernelError,
                                'malformed CIFAR-10 binary file .*3073-byte'):
      data.load_binary_task('cifar10', 3, 5, data_dir=self.root)

  def test_bad_cifar_label(self):
    _write_gz(self.fake.path('cifar10/test_batch_first1000.bin.gz'),
              b'\x0c' + b'\x00' * 3072)
    with self.assertRaisesRegex(AfterKernelError, 'label byte 12'):
      data.load_binary_task('cifar10', 3, 5, data_dir=self.root)

  def test_mnist_labels_outside_0_to_9_are_an_error_with_file_and_count(self):
    labels = self.fake.mnist_train_labels.copy()
    labels[[0, 5]] = 200  # Rows that would silently vanish from 3-vs-8.
    _write_gz(self.fake.path('mnist/train-labels-idx1-ubyte.gz'),
              _idx_labels(labels))
    with self.assertRaisesRegex(
        AfterKernelError, r'malformed MNIST IDX file .*train-labels-idx1-'
        r'ubyte.gz: 2 label\(s\) outside 0..9 \(e.g. \[200, 200\]\)'):
      data.load_binary_task('mnist', 3, 8, data_dir=self.root)

  def test_npz_labels_outside_the_classes_are_an_error(self):
    np.savez(self.fake.path('cifar10/test_jpeg_approx_yoongikim.npz'),
             x_test=self.fake.lossy,
             y_test=np.full(len(self.fake.lossy), 12, np.int64))
    with self.assertRaisesRegex(AfterKernelError,
                                r'malformed npz .*label\(s\) outside 0..9'):
      data.load_binary_task('cifar10', 3, 5, data_dir=self.root,
                            cifar_test_source='lossy_full')

  def test_npz_missing_key(self):
    np.savez(self.fake.path('cifar10/test_jpeg_approx_yoongikim.npz'),
             x_test=self.fake.lossy)
    with self.assertRaisesRegex(AfterKernelError,
                                r"malformed npz .*missing keys \['y_test'\]"):
      data.load_binary_task('cifar10', 3, 5, data_dir=self.root,
                            cifar_test_source='lossy_full')

  def test_class_absent_from_test(self):
    # Rewrite the fake MNIST test labels with every 8 turned into a 1.
    _write_gz(self.fake.path('mnist/t10k-labels-idx1-ubyte.gz'),
              _idx_labels(np.where(self.fake.mnist_test_labels == 8, 1,
                                   self.fake.mnist_test_labels)))
    with self.assertRaisesRegex(AfterKernelError,
                                'class 8 has zero examples in the test split'):
      data.load_binary_task('mnist', 3, 8, data_dir=self.root)

  def test_class_absent_from_holdout(self):
    # The last 2 train records have labels 6 and 3 (7i % 10 for i = 58, 59).
    with self.assertRaisesRegex(AfterKernelError,
                                'class 5 has zero examples in the test split'):
      data.load_binary_task('cifar10', 3, 5, data_dir=self.root,
                            cifar_test_source='train_holdout', holdout_size=2)


class Cifar2Test(DataTestBase):

  def test_local_halves_and_test_sources(self):
    labels = self.fake.cifar_train_labels
    task = data.load_binary_task('cifar2', 1, 0, data_dir=self.root)
    # Every record is in one half: all 60 kept, in order, y = [label >= 5].
    np.testing.assert_allclose(task.x_train, self.fake.cifar_train / 255.0,
                               rtol=1e-6)
    np.testing.assert_array_equal(task.y_train,
                                  [1.0 if l in (5, 6, 7, 8, 9) else 0.0
                                   for l in labels])
    np.testing.assert_array_equal(task.y_test, self.fake.cifar_test_labels >= 5)
    self.assertEqual(task.info['test_source'], 'exact_first_1000')
    self.assertEqual(task.info['minus_meaning'], data.CLASS_GROUPS['cifar2'][0])
    lossy = data.load_binary_task('cifar2', 1, 0, data_dir=self.root,
                                  cifar_test_source='lossy_full')
    np.testing.assert_array_equal(lossy.y_test, self.fake.lossy_labels >= 5)
    self.assertIn('lossy JPEG', lossy.info['test_note'])
    holdout = data.load_binary_task('cifar2', 0, 1, data_dir=self.root,
                                    cifar_test_source='train_holdout',
                                    holdout_size=15)
    self.assertEqual((holdout.info['n_train'], holdout.info['n_test']),
                     (45, 15))
    np.testing.assert_array_equal(holdout.y_test, labels[45:] < 5)

  def test_tfds_uses_cifar10(self):
    rng = np.random.default_rng(0)
    fake = {'train': (rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
                      np.arange(20) % 10),
            'test': (rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8),
                     np.arange(10))}
    with mock.patch.object(sources, 'tfds_arrays',
                           side_effect=lambda name, split: fake[split]) as m:
      task = data.load_binary_task('cifar2', 1, 0)
    m.assert_any_call('cifar10', 'train')
    np.testing.assert_array_equal(task.y_test, np.arange(10) >= 5)
    self.assertEqual(task.info['test_source'], 'official_test')

  def test_class_ids_are_halves(self):
    with self.assertRaisesRegex(AfterKernelError,
                                r'in \[0, 2\) for cifar2 \(0 = CIFAR-10 '
                                'classes 0-4'):
      data.load_binary_task('cifar2', 3, 5, data_dir=self.root)


@absltest.skipUnless(_HAS_MNIST, f'real MNIST not found under {_REAL}; set '
                     'AFTERKERNEL_DATA_DIR to the folder of /work/shared/data')
class RealMnistTest(parameterized.TestCase):

  @parameterized.parameters((3, 8, 11982, 1984, 6131, 1010),
                            (5, 6, 11339, 1850, 5421, 892))
  def test_counts(self, plus, minus, n_train, n_test, n_train_plus,
                  n_test_plus):
    task = data.load_binary_task('mnist', plus, minus, data_dir=_REAL)
    self.assertEqual(task.x_train.shape, (n_train, 28, 28, 1))
    self.assertEqual(task.x_test.shape, (n_test, 28, 28, 1))
    self.assertEqual(int(task.y_train.sum()), n_train_plus)
    self.assertEqual(int(task.y_test.sum()), n_test_plus)
    # The familiar MNIST scale: mean pixel ~0.13, max exactly 1.
    self.assertBetween(float(task.x_train.mean()), 0.08, 0.2)
    self.assertEqual(task.x_train.max(), 1.0)


@absltest.skipUnless(_HAS_CIFAR, f'real CIFAR-10 not found under {_REAL}; set '
                     'AFTERKERNEL_DATA_DIR to the folder of /work/shared/data')
class RealCifarTest(absltest.TestCase):

  def test_exact_first_1000(self):
    task = data.load_binary_task('cifar10', 3, 5, data_dir=_REAL)
    self.assertEqual(task.x_train.shape, (10000, 32, 32, 3))
    self.assertEqual(task.x_test.shape, (189, 32, 32, 3))
    self.assertEqual(int(task.y_train.sum()), 5000)
    self.assertEqual(int(task.y_test.sum()), 103)  # 103 cats, 86 dogs.
    # Pixels scaled to [0, 1]: CIFAR-10's mean pixel is ~0.47.
    self.assertBetween(float(task.x_train.mean()), 0.35, 0.55)

  def test_cifar2_counts(self):
    task = data.load_binary_task('cifar2', 1, 0, data_dir=_REAL)
    self.assertEqual(task.x_train.shape, (50000, 32, 32, 3))
    self.assertEqual(int(task.y_train.sum()), 25000)  # 5000 per class.
    # First 1000 test records, classes 5-9: 86 + 112 + 102 + 106 + 109.
    self.assertEqual((task.info['n_test'], int(task.y_test.sum())),
                     (1000, 515))

  def test_lossy_full(self):
    task = data.load_binary_task('cifar10', 3, 5, data_dir=_REAL,
                                 cifar_test_source='lossy_full')
    self.assertEqual(task.x_test.shape, (2000, 32, 32, 3))
    self.assertEqual(int(task.y_test.sum()), 1000)
    self.assertIn('lossy JPEG approximation', task.info['test_note'])

  def test_train_holdout(self):
    task = data.load_binary_task('cifar10', 3, 5, data_dir=_REAL,
                                 cifar_test_source='train_holdout',
                                 holdout_size=2000)
    self.assertEqual(task.info['n_train'] + task.info['n_test'], 10000)
    self.assertEqual(int(task.y_train.sum() + task.y_test.sum()), 5000)
    # Independent count: labels of the last 2000 records of batch 5.
    with gzip.open(os.path.join(_REAL, 'cifar10', 'data_batch_5.bin.gz')) as f:
      records = np.frombuffer(f.read(), np.uint8).reshape(10000, 3073)
    held_labels = records[-2000:, 0]
    self.assertEqual(task.info['n_test'],
                     int(np.isin(held_labels, (3, 5)).sum()))
    self.assertEqual(int(task.y_test.sum()), int((held_labels == 3).sum()))


if __name__ == '__main__':
  absltest.main()
