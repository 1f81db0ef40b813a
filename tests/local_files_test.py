"""Tests for afterkernel.data.local_files: the readers of the local files.

MNIST IDX and CIFAR-10 binary batches (checked against a slow per-record
selection of the records written by data_fixture), the CIFAR-10 test
sources and train holdout, SVHN .mat files and CIFAR-5m parts, each read
through `data.load_binary_task`.
"""

import json
import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from afterkernel import data
from afterkernel.data import local_files
from afterkernel.data import sources
from afterkernel.errors import AfterKernelError
from data_fixture import write_gz as _write_gz
from data_fixture import idx_labels as _idx_labels
from data_fixture import ids_image as _ids_image
from data_fixture import DataTestBase


class LocalMnistTest(DataTestBase):

  def test_shapes_dtypes_range(self):
    task = data.load_binary_task('mnist', 3, 8, data_dir=self.root)
    self.assertEqual(task.x_train.shape, (6, 28, 28, 1))
    self.assertEqual(task.x_test.shape, (4, 28, 28, 1))
    for array in (task.x_train, task.y_train, task.x_test, task.y_test):
      self.assertEqual(array.dtype, np.float32)
    self.assertGreaterEqual(task.x_train.min(), 0.0)
    self.assertLessEqual(task.x_train.max(), 1.0)
    self.assertGreater(task.x_train.max(), 0.9)  # Not left as 0..255 / 255^2.

  def test_matches_slow_per_record_selection(self):
    task = data.load_binary_task('mnist', 3, 8, data_dir=self.root)
    for split, images, labels in (
        ('train', self.fake.mnist_train, self.fake.mnist_train_labels),
        ('test', self.fake.mnist_test, self.fake.mnist_test_labels)):
      xs, ys = [], []
      for image, label in zip(images, labels):  # Original order kept.
        if label in (3, 8):
          xs.append(image[:, :, None] / 255.0)
          ys.append(1.0 if label == 3 else 0.0)
      np.testing.assert_allclose(getattr(task, f'x_{split}'), np.stack(xs),
                                 rtol=1e-6)
      np.testing.assert_array_equal(getattr(task, f'y_{split}'), ys)

  def test_swapping_classes_flips_labels(self):
    a = data.load_binary_task('mnist', 3, 8, data_dir=self.root)
    b = data.load_binary_task('mnist', 8, 3, data_dir=self.root)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_train, 1.0 - b.y_train)

  def test_info(self):
    task = data.load_binary_task('mnist', 3, 8, data_dir=self.root)
    info = json.loads(json.dumps(task.info))  # JSON-serializable.
    self.assertEqual(info['dataset'], 'mnist')
    self.assertEqual((info['plus_class'], info['minus_class']), (3, 8))
    self.assertEqual(info['source'], f'local:{os.path.abspath(self.root)}')
    self.assertEqual(info['test_source'], 'official_test')
    self.assertEqual((info['n_train'], info['n_test']), (6, 4))
    self.assertEqual(info['image_shape'], [28, 28, 1])
    self.assertIsNone(info['permutation_seed'])

  def test_cifar_test_source_ignored_and_not_recorded(self):
    task = data.load_binary_task('mnist', 3, 8, data_dir=self.root,
                                 cifar_test_source='lossy_full')
    self.assertEqual(task.info['test_source'], 'official_test')
    self.assertNotIn('lossy', json.dumps(task.info))

  def test_cached_arrays_are_read_only_and_tasks_independent(self):
    a = data.load_binary_task('mnist', 3, 8, data_dir=self.root)
    a.x_train[:] = 0.5  # Must not corrupt the cache.
    b = data.load_binary_task('mnist', 3, 8, data_dir=self.root)
    self.assertFalse(np.all(b.x_train == 0.5))
    raw = local_files.read_idx(
        self.fake.path('mnist/train-labels-idx1-ubyte.gz'))
    self.assertFalse(raw.flags.writeable)

  def test_rewritten_file_is_reread(self):
    labels_path = self.fake.path('mnist/train-labels-idx1-ubyte.gz')
    local_files.read_idx(labels_path)
    new_labels = np.full(25, 3)
    _write_gz(labels_path, _idx_labels(new_labels))
    np.testing.assert_array_equal(local_files.read_idx(labels_path), new_labels)


class LocalCifarTest(DataTestBase):

  def test_exact_first_1000(self):
    task = data.load_binary_task('cifar10', 3, 5, data_dir=self.root)
    labels = self.fake.cifar_train_labels
    keep = np.flatnonzero((labels == 3) | (labels == 5))
    self.assertEqual(task.x_train.shape, (len(keep), 32, 32, 3))
    self.assertEqual(task.x_train.dtype, np.float32)
    # Slow independent check: NHWC pixels equal the images the records were
    # built from, plane by plane.
    np.testing.assert_allclose(task.x_train,
                               self.fake.cifar_train[keep] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(task.y_train, labels[keep] == 3)
    test_keep = np.flatnonzero(np.isin(self.fake.cifar_test_labels, (3, 5)))
    np.testing.assert_allclose(task.x_test,
                               self.fake.cifar_test[test_keep] / 255.0,
                               rtol=1e-6)
    self.assertEqual(task.info['test_source'], 'exact_first_1000')
    self.assertNotIn('test_note', task.info)

  def test_only_needed_files_required(self):
    os.remove(self.fake.path('cifar10/test_jpeg_approx_yoongikim.npz'))
    data.load_binary_task('cifar10', 3, 5, data_dir=self.root)
    os.remove(self.fake.path('cifar10/test_batch_first1000.bin.gz'))
    task = data.load_binary_task('cifar10', 3, 5, data_dir=self.root,
                                 cifar_test_source='train_holdout',
                                 holdout_size=10)
    self.assertEqual(task.info['test_source'], 'train_holdout')
    with self.assertRaisesRegex(AfterKernelError,
                                'missing data file .*test_jpeg_approx'):
      data.load_binary_task('cifar10', 3, 5, data_dir=self.root,
                            cifar_test_source='lossy_full')

  def test_lossy_full(self):
    task = data.load_binary_task('cifar10', 3, 5, data_dir=self.root,
                                 cifar_test_source='lossy_full')
    keep = np.flatnonzero(np.isin(self.fake.lossy_labels, (3, 5)))
    np.testing.assert_allclose(task.x_test, self.fake.lossy[keep] / 255.0,
                               rtol=1e-6)
    np.testing.assert_array_equal(task.y_test,
                                  self.fake.lossy_labels[keep] == 3)
    self.assertEqual(task.info['test_source'], 'lossy_full')
    self.assertIn('lossy JPEG approximation', task.info['test_note'])

  def test_train_holdout_removes_held_out_records(self):
    # Record 45 (a dog, label 7 * 45 % 10 = 5) is the first held-out one, so
    # an off-by-one cut would move it.
    holdout = 15
    task = data.load_binary_task('cifar10', 3, 5, data_dir=self.root,
                                 cifar_test_source='train_holdout',
                                 holdout_size=holdout)
    ids = lambda x: np.rint(x[:, 0, 0, 0] * 255).astype(int)  # Record ids.
    train_ids, test_ids = ids(task.x_train), ids(task.x_test)
    labels = self.fake.cifar_train_labels
    n = len(labels)
    wanted = np.flatnonzero(np.isin(labels, (3, 5)))
    np.testing.assert_array_equal(train_ids, wanted[wanted < n - holdout])
    np.testing.assert_array_equal(test_ids, wanted[wanted >= n - holdout])
    self.assertEqual(test_ids[0], n - holdout)
    self.assertEmpty(np.intersect1d(train_ids, test_ids))
    np.testing.assert_array_equal(task.y_test, labels[test_ids] == 3)
    self.assertEqual(task.info['holdout_size'], holdout)

  def test_holdout_at_least_train_size_raises(self):
    with self.assertRaisesRegex(AfterKernelError, 'holdout_size=60 must be'):
      data.load_binary_task('cifar10', 3, 5, data_dir=self.root,
                            cifar_test_source='train_holdout',
                            holdout_size=60)


def _svhn_mat(path: str, images: np.ndarray, labels: np.ndarray) -> None:
  """Writes SVHN's format: X (32, 32, 3, n) uint8, y (n, 1), 10 = digit 0."""
  from scipy import io as scipy_io  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(path), exist_ok=True)
  scipy_io.savemat(path, {'X': np.moveaxis(images, 0, -1),
                          'y': labels.reshape(-1, 1).astype(np.uint8)})


class SvhnParityTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.root = tempfile.mkdtemp(prefix='afterkernel_svhn_test_')
    self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
    # Labels as in the .mat files: 1..10, where 10 is the digit 0.
    self.train_labels = np.array([10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 3])
    self.test_labels = np.array([5, 10, 2, 7, 1, 8])
    self.train = np.stack([_ids_image(i, (32, 32, 3)) for i in range(12)])
    self.test = np.stack([_ids_image(50 + i, (32, 32, 3)) for i in range(6)])
    _svhn_mat(self.path('train'), self.train, self.train_labels)
    _svhn_mat(self.path('test'), self.test, self.test_labels)

  def path(self, split: str) -> str:
    return os.path.join(self.root, data.SVHN_FILES[split])

  def test_local_matches_slow_per_record_parity(self):
    task = data.load_binary_task('svhn_parity', 1, 0, data_dir=self.root)
    for split, images, labels in (('train', self.train, self.train_labels),
                                  ('test', self.test, self.test_labels)):
      x, y = getattr(task, f'x_{split}'), getattr(task, f'y_{split}')
      self.assertEqual(x.shape, (len(labels), 32, 32, 3))  # Every digit kept.
      for i, label in enumerate(labels):
        digit = 0 if label == 10 else int(label)
        self.assertEqual(y[i], 1.0 if digit % 2 == 1 else 0.0)
        np.testing.assert_allclose(x[i], images[i] / 255.0, rtol=1e-6)
    self.assertEqual(task.info['plus_meaning'], 'odd digit (1, 3, 5, 7, 9)')
    self.assertEqual(task.info['test_source'], 'official_test')
    self.assertEqual(task.info['image_shape'], [32, 32, 3])
    flipped = data.load_binary_task('svhn_parity', 0, 1, data_dir=self.root)
    np.testing.assert_array_equal(flipped.y_test, 1.0 - task.y_test)

  @parameterized.named_parameters(('test_only', ('test',)),
                                  ('both', ('train', 'test')))
  def test_missing_files_named_in_one_line(self, splits):
    for split in splits:
      os.remove(self.path(split))
    with self.assertRaises(AfterKernelError) as cm:
      data.load_binary_task('svhn_parity', 1, 0, data_dir=self.root)
    message = str(cm.exception)
    self.assertNotIn('\n', message)
    self.assertIn('SVHN cannot be downloaded on this machine', message)
    for split in ('train', 'test'):
      if split in splits:
        self.assertIn(self.path(split), message)
      else:
        self.assertNotIn(self.path(split), message)

  def test_bad_label_raises(self):
    _svhn_mat(self.path('test'), self.test, np.array([1, 2, 3, 11, 4, 5]))
    with self.assertRaisesRegex(AfterKernelError,
                                'malformed SVHN file .*integers 1..10'):
      data.load_binary_task('svhn_parity', 1, 0, data_dir=self.root)

  def test_missing_variable_raises(self):
    from scipy import io as scipy_io  # pylint: disable=g-import-not-at-top
    scipy_io.savemat(self.path('train'), {'X': np.moveaxis(self.train, 0, -1)})
    with self.assertRaisesRegex(
        AfterKernelError, r"malformed SVHN file .*missing variables \['y'\]"):
      data.load_binary_task('svhn_parity', 1, 0, data_dir=self.root)

  def test_tfds_path(self):
    rng = np.random.default_rng(0)
    fake = {'train': (rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8),
                      np.arange(10)),
            'test': (rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
                     np.array([0, 3, 4, 9]))}
    with mock.patch.object(sources, 'tfds_arrays',
                           side_effect=lambda name, split: fake[split]) as m:
      task = data.load_binary_task('svhn_parity', 1, 0)
    m.assert_any_call('svhn_cropped', 'test')
    np.testing.assert_array_equal(task.y_test, [0, 1, 0, 1])
    np.testing.assert_array_equal(task.y_train, np.arange(10) % 2)
    self.assertEqual(task.info['source'], 'tfds')

  def test_tfds_failure_points_to_local_files(self):
    with mock.patch.object(sources, 'tfds_arrays',
                           side_effect=ConnectionError('no network')):
      with self.assertRaises(AfterKernelError) as cm:
        data.load_binary_task('svhn_parity', 1, 0)
    message = str(cm.exception)
    self.assertIn('svhn_cropped; ConnectionError: no network', message)
    self.assertIn('DIR/svhn/train_32x32.mat and DIR/svhn/test_32x32.mat',
                  message)


def _cifar5m_part(root: str, part: int, images: np.ndarray,
                  labels: np.ndarray, compressed: bool = False) -> None:
  path = os.path.join(root, data.CIFAR5M_FILE.format(part=part))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  save = np.savez_compressed if compressed else np.savez
  save(path, X=images, Y=labels)


class Cifar5mTest(parameterized.TestCase):
  """Tiny parts in Nakkiran et al.'s format; chunks of 7 rows."""

  def setUp(self):
    super().setUp()
    self.root = tempfile.mkdtemp(prefix='afterkernel_cifar5m_test_')
    self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
    chunk = mock.patch.object(local_files, '_CIFAR5M_CHUNK_ROWS', 7)
    chunk.start()
    self.addCleanup(chunk.stop)
    self.parts = {}
    for part, n in ((0, 30), (1, 25), (5, 20)):
      labels = (np.arange(n) * 3 + part) % 10
      images = np.stack([_ids_image(part * 40 + i, (32, 32, 3))
                         for i in range(n)])
      self.parts[part] = (images, labels)
      _cifar5m_part(self.root, part, images, labels, compressed=(part == 1))

  def _slow(self, parts, wanted, limit, group=False):
    """The first `limit` records of the wanted classes, record by record."""
    xs, classes = [], []
    for part in parts:
      for image, label in zip(*self.parts[part]):
        cls = int(label >= 5) if group else int(label)
        if cls in wanted and len(xs) < limit:
          xs.append(image / 255.0)
          classes.append(cls)
    return np.stack(xs), np.array(classes)

  def test_class_pair_across_parts_with_cap(self):
    task = data.load_binary_task('cifar5m', 3, 5, data_dir=self.root,
                                 num_train=8, num_test=100,
                                 cifar5m_train_parts=(0, 1))
    x, classes = self._slow((0, 1), (3, 5), 8)  # Part 0 has 6, so 2 from 1.
    np.testing.assert_allclose(task.x_train, x, rtol=1e-6)
    np.testing.assert_array_equal(task.y_train, classes == 3)
    x, classes = self._slow((5,), (3, 5), 100)
    np.testing.assert_allclose(task.x_test, x, rtol=1e-6)
    np.testing.assert_array_equal(task.y_test, classes == 3)
    info = json.loads(json.dumps(task.info))
    self.assertEqual(info['cifar5m']['train_parts'], [0, 1])
    self.assertEqual(info['test_source'], 'cifar5m_part5')
    self.assertEqual(info['n_train'], 8)

  def test_halves_default_parts(self):
    task = data.load_binary_task('cifar5m2', 1, 0, data_dir=self.root)
    x, classes = self._slow((0,), (0, 1), 10**6, group=True)
    self.assertLen(classes, 30)  # Every record of part 0 is in a half.
    np.testing.assert_allclose(task.x_train, x, rtol=1e-6)
    np.testing.assert_array_equal(task.y_train, classes)
    np.testing.assert_array_equal(task.y_test, self.parts[5][1] >= 5)
    self.assertEqual(task.info['plus_meaning'],
                     data.CLASS_GROUPS['cifar5m2'][1])

  def test_compressed_part_reads_the_same(self):
    _cifar5m_part(self.root, 2, *self.parts[1], compressed=False)
    compressed = data.load_binary_task('cifar5m', 4, 7, data_dir=self.root,
                                       cifar5m_train_parts=(1,))
    plain = data.load_binary_task('cifar5m', 4, 7, data_dir=self.root,
                                  cifar5m_train_parts=(2,))
    np.testing.assert_array_equal(compressed.x_train, plain.x_train)
    np.testing.assert_array_equal(compressed.y_train, plain.y_train)

  def test_no_data_dir_says_not_downloadable(self):
    with self.assertRaisesRegex(AfterKernelError,
                                'CIFAR-5m is not in tensorflow-datasets and '
                                'cannot be downloaded'):
      data.load_binary_task('cifar5m', 3, 5)

  def test_missing_parts_named(self):
    with self.assertRaises(AfterKernelError) as cm:
      data.load_binary_task('cifar5m', 3, 5, data_dir=self.root,
                            cifar5m_train_parts=(0, 3, 4))
    message = str(cm.exception)
    self.assertIn('missing CIFAR-5m file(s)', message)
    self.assertIn('cifar5m_part3.npz', message)
    self.assertIn('cifar5m_part4.npz', message)
    self.assertNotIn('cifar5m_part0.npz', message)
    self.assertIn('cannot be downloaded on this machine', message)

  @parameterized.named_parameters(
      ('test_in_train', dict(cifar5m_train_parts=(0, 5)), 'also a train part'),
      ('part_too_big', dict(cifar5m_train_parts=(6,)), 'cifar5m_train_parts'),
      ('empty', dict(cifar5m_train_parts=()), 'cifar5m_train_parts'),
      ('bad_test_part', dict(cifar5m_test_part=-1), 'cifar5m_test_part'))
  def test_bad_parts(self, overrides, message):
    with self.assertRaisesRegex(AfterKernelError, message):
      data.load_binary_task('cifar5m', 3, 5, data_dir=self.root, **overrides)

  @parameterized.named_parameters(
      ('missing_y', lambda x, y: dict(X=x), r"missing arrays \['Y'\]"),
      ('float_x', lambda x, y: dict(X=x.astype(np.float32), Y=y),
       'need X uint8'),
      ('label_10', lambda x, y: dict(X=x, Y=y + 1), r'labels in \[0, 10\)'),
      ('short_y', lambda x, y: dict(X=x, Y=y[:-1]), 'need X uint8'))
  def test_malformed_part(self, arrays, message):
    images, labels = self.parts[5]
    np.savez(os.path.join(self.root, data.CIFAR5M_FILE.format(part=5)),
             **arrays(images, labels))
    with self.assertRaisesRegex(AfterKernelError,
                                f'malformed CIFAR-5m file .*{message}'):
      data.load_binary_task('cifar5m', 3, 5, data_dir=self.root)

  def test_not_a_zip(self):
    with open(os.path.join(self.root, data.CIFAR5M_FILE.format(part=0)),
              'wb') as f:
      f.write(b'not an npz')
    with self.assertRaisesRegex(AfterKernelError,
                                'malformed CIFAR-5m file .*BadZipFile'):
      data.load_binary_task('cifar5m', 3, 5, data_dir=self.root)


if __name__ == '__main__':
  absltest.main()
