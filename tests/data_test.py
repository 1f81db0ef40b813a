"""Tests for afterkernel.data: loaders on tiny files written here, real data."""

import dataclasses
import gzip
import json
import os
import shutil
import struct
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from afterkernel import data
from afterkernel.data import local_files
from afterkernel.data import sources
from afterkernel.errors import AfterKernelError


def _real_data_dir() -> str:
  """AFTERKERNEL_DATA_DIR, else <repo root>/../shared/data (see common.md)."""
  repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return os.environ.get('AFTERKERNEL_DATA_DIR',
                        os.path.join(repo_root, '..', 'shared', 'data'))


_REAL = _real_data_dir()
_HAS_MNIST = os.path.isfile(
    os.path.join(_REAL, 'mnist', 'train-images-idx3-ubyte.gz'))
_HAS_CIFAR = os.path.isfile(
    os.path.join(_REAL, 'cifar10', 'data_batch_1.bin.gz'))


def _write_gz(path: str, payload: bytes) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with gzip.open(path, 'wb') as f:
    f.write(payload)


def _idx_images(images: np.ndarray, magic: int = 2051) -> bytes:
  n, rows, cols = images.shape
  return struct.pack('>IIII', magic, n, rows, cols) + images.tobytes()


def _idx_labels(labels: np.ndarray) -> bytes:
  header = struct.pack('>II', 2049, len(labels))
  return header + labels.astype(np.uint8).tobytes()


def _cifar_records(images: np.ndarray, labels: np.ndarray) -> bytes:
  """NHWC uint8 images -> binary records, pixel by pixel (slow, obvious)."""
  out = bytearray()
  for image, label in zip(images, labels):
    out.append(int(label))
    for ch in range(3):
      for r in range(32):
        for c in range(32):
          out.append(int(image[r, c, ch]))
  return bytes(out)


def _ids_image(record_id: int, shape) -> np.ndarray:
  """An image whose first pixel stores the record id (ids < 256)."""
  rng = np.random.default_rng(record_id)
  image = rng.integers(0, 256, size=shape, dtype=np.uint8)
  image.flat[0] = record_id
  return image


class FakeData:
  """Tiny MNIST / CIFAR-10 files in the /work/shared/data layout.

  Every image's first pixel holds its global record id, so tests can tell
  which records ended up where.
  """

  def __init__(self, root: str, cifar_batch: int = 12, cifar_test: int = 10,
               cifar_lossy: int = 20):
    self.root = root
    # MNIST: labels cycle 0..9 so every class is present in both splits.
    self.mnist_train_labels = np.arange(30) % 10
    self.mnist_test_labels = (np.arange(20) * 3) % 10
    self.mnist_train = np.stack([_ids_image(i, (28, 28))
                                 for i in range(30)])
    self.mnist_test = np.stack([_ids_image(100 + i, (28, 28))
                                for i in range(20)])
    _write_gz(self.path('mnist/train-images-idx3-ubyte.gz'),
              _idx_images(self.mnist_train))
    _write_gz(self.path('mnist/train-labels-idx1-ubyte.gz'),
              _idx_labels(self.mnist_train_labels))
    _write_gz(self.path('mnist/t10k-images-idx3-ubyte.gz'),
              _idx_images(self.mnist_test))
    _write_gz(self.path('mnist/t10k-labels-idx1-ubyte.gz'),
              _idx_labels(self.mnist_test_labels))
    # CIFAR-10: 5 batches of `cifar_batch` records, global ids 0..5*batch-1.
    n_train = 5 * cifar_batch
    self.cifar_train_labels = (np.arange(n_train) * 7) % 10
    self.cifar_train = np.stack([_ids_image(i, (32, 32, 3))
                                 for i in range(n_train)])
    for b in range(5):
      rows = slice(b * cifar_batch, (b + 1) * cifar_batch)
      _write_gz(self.path(f'cifar10/data_batch_{b + 1}.bin.gz'),
                _cifar_records(self.cifar_train[rows],
                               self.cifar_train_labels[rows]))
    self.cifar_test_labels = (np.arange(cifar_test) * 3 + 1) % 10
    self.cifar_test = np.stack([_ids_image(200 + i, (32, 32, 3))
                                for i in range(cifar_test)])
    _write_gz(self.path('cifar10/test_batch_first1000.bin.gz'),
              _cifar_records(self.cifar_test, self.cifar_test_labels))
    self.lossy_labels = np.repeat(np.arange(10), cifar_lossy // 10).astype(
        np.uint8)  # Class-major, like the real file.
    self.lossy = np.stack([_ids_image(i % 50, (32, 32, 3))
                           for i in range(cifar_lossy)])
    np.savez(self.path('cifar10/test_jpeg_approx_yoongikim.npz'),
             x_test=self.lossy, y_test=self.lossy_labels)

  def path(self, relative: str) -> str:
    return os.path.join(self.root, relative)


class DataTestBase(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    # tempfile rather than self.create_tempdir(): the latter needs parsed absl
    # flags, which pytest does not provide.
    self.root = tempfile.mkdtemp(prefix='afterkernel_data_test_')
    self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
    self.fake = FakeData(self.root)


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


class TfdsTest(parameterized.TestCase):
  """The tfds path with `sources.tfds_arrays` mocked (no internet here)."""

  @parameterized.parameters('mnist', 'cifar10')
  def test_failure_is_one_line_pointing_to_data_dir(self, dataset):
    failing = mock.patch.object(
        sources, 'tfds_arrays',
        side_effect=RuntimeError('Failed to download\nsecond line'))
    with failing, self.assertRaises(AfterKernelError) as cm:
      data.load_binary_task(dataset, 3, 5)
    message = str(cm.exception)
    self.assertNotIn('\n', message)
    self.assertIn(f'could not load {dataset} through tensorflow-datasets',
                  message)
    self.assertIn('Failed to download', message)
    self.assertIn('--data_dir=DIR', message)
    self.assertIn(f'{dataset}/', message)

  def test_success_uses_official_test_split(self):
    rng = np.random.default_rng(0)
    fake = {
        'train': (rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
                  np.arange(40) % 10),
        'test': (rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
                 np.arange(20) % 10),
    }
    with mock.patch.object(sources, 'tfds_arrays',
                           side_effect=lambda name, split: fake[split]) as m:
      task = data.load_binary_task('cifar10', 3, 5,
                                   cifar_test_source='lossy_full')
      holdout = data.load_binary_task('cifar10', 3, 5,
                                      cifar_test_source='train_holdout',
                                      holdout_size=10)
    m.assert_any_call('cifar10', 'train')
    self.assertEqual(task.info['source'], 'tfds')
    self.assertEqual(task.info['test_source'], 'official_test')
    self.assertNotIn('test_note', task.info)  # Exact, not lossy.
    np.testing.assert_allclose(task.x_test, fake['test'][0][[3, 5, 13, 15]]
                               / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(task.y_test, [1, 0, 1, 0])
    self.assertEqual(holdout.info['test_source'], 'train_holdout')
    self.assertEqual((holdout.info['n_train'], holdout.info['n_test']), (6, 2))


class DigitsTest(absltest.TestCase):

  def test_shapes_classes_and_values(self):
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
    digits = datasets.load_digits()
    task = data.load_binary_task('digits', 3, 8)
    for split, rows in (('train', slice(0, 1200)), ('test', slice(1200, None))):
      x, y = getattr(task, f'x_{split}'), getattr(task, f'y_{split}')
      keep = np.isin(digits.target[rows], (3, 8))
      self.assertEqual(x.shape, (keep.sum(), 8, 8, 1))
      self.assertEqual((x.dtype, y.dtype), (np.float32, np.float32))
      np.testing.assert_allclose(x[..., 0], digits.images[rows][keep] / 16.0)
      np.testing.assert_array_equal(y, digits.target[rows][keep] == 3)
      self.assertTrue(0 < y.sum() < len(y))  # Both classes present.
    self.assertEqual(task.x_train.max(), 1.0)
    self.assertEqual(task.info['source'], 'embedded:sklearn-digits')
    self.assertEqual(task.info['image_shape'], [8, 8, 1])

  def test_deterministic_and_data_dir_ignored(self):
    a = data.load_binary_task('digits', 5, 6)
    b = data.load_binary_task('digits', 5, 6, data_dir='/does/not/matter')
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    self.assertEqual(a.info, b.info)


class SyntheticTest(parameterized.TestCase):
  """Vyas et al.'s task: z on {-1,1}^30, x = z + N(0, 0.25 I), y = z_1 z_2."""

  def test_shapes_dtypes_and_info(self):
    task = data.load_binary_task('synthetic', 1, 0, num_train=200,
                                 num_test=50, synthetic_seed=3)
    self.assertEqual(task.x_train.shape, (200, 30))
    self.assertEqual(task.x_test.shape, (50, 30))
    for array in (task.x_train, task.y_train, task.x_test, task.y_test):
      self.assertEqual(array.dtype, np.float32)
    self.assertEqual(set(np.unique(task.y_train)), {0.0, 1.0})
    info = json.loads(json.dumps(task.info))
    self.assertEqual(info['source'], 'generated')
    self.assertEqual(info['image_shape'], [30])
    self.assertEqual(info['input_kind'], 'vector')
    self.assertEqual(info['synthetic']['seed'], 3)
    self.assertEqual(info['synthetic']['noise_std'], 0.5)
    self.assertEqual(info['plus_meaning'], 'z_1 z_2 = +1')
    self.assertEqual((info['n_train'], info['n_test']), (200, 50))

  def test_default_sizes(self):
    task = data.load_binary_task('synthetic', 1, 0)
    self.assertEqual((len(task.y_train), len(task.y_test)),
                     data.DEFAULT_SIZES['synthetic'])

  def test_noise_free_labels_are_z1_times_z2(self):
    # Without noise x = z exactly, so the label must be [x_1 x_2 = +1].
    with mock.patch.object(sources, 'SYNTHETIC_NOISE_STD', 0.0):
      task = data.load_binary_task('synthetic', 1, 0, num_train=300,
                                   num_test=100)
    for x, y in ((task.x_train, task.y_train), (task.x_test, task.y_test)):
      self.assertTrue(np.all(np.abs(x) == 1.0))
      np.testing.assert_array_equal(y, x[:, 0] * x[:, 1] == 1.0)
      # z is uniform: every coordinate is +-1 about half of the time.
      self.assertBetween(float((x > 0).mean()), 0.45, 0.55)

  def test_moments_match_the_definition(self):
    task = data.load_binary_task('synthetic', 1, 0, num_train=20000,
                                 num_test=10)
    x = task.x_train.astype(np.float64)
    y_pm = 2.0 * task.y_train - 1.0  # Back to z_1 z_2 in {-1, +1}.
    # Var x_i = Var z_i + 0.25 = 1.25; E x_i = 0 (tolerances ~5 std errors).
    np.testing.assert_allclose(x.var(axis=0), 1.25, atol=0.06)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=0.05)
    # E[y x_1 x_2] = E[(z_1 z_2)^2] = 1; y is independent of x_3 and of x_1
    # alone.
    self.assertBetween(float(np.mean(y_pm * x[:, 0] * x[:, 1])), 0.95, 1.05)
    self.assertLess(abs(float(np.mean(y_pm * x[:, 2]))), 0.05)
    self.assertLess(abs(float(np.mean(y_pm * x[:, 0]))), 0.05)
    # sign(x_i) = z_i unless the N(0, 0.25) noise crosses 0: p = Phi(-2) =
    # 0.02275, so sign(x_1) sign(x_2) = y with probability (1-p)^2 + p^2.
    p = 0.02275
    self.assertBetween(float(np.mean(np.sign(x[:, 0]) * np.sign(x[:, 1])
                                     == y_pm)),
                       (1 - p)**2 + p**2 - 0.006, (1 - p)**2 + p**2 + 0.006)
    # Median |noise| of N(0, 0.5^2) is 0.6745 * 0.5 = 0.337.
    residual = x - np.sign(x)
    self.assertBetween(float(np.median(np.abs(residual))), 0.33, 0.345)

  def test_deterministic_and_prefix_stable(self):
    big = data.load_binary_task('synthetic', 1, 0, num_train=300, num_test=40)
    small = data.load_binary_task('synthetic', 1, 0, num_train=50, num_test=40)
    np.testing.assert_array_equal(small.x_train, big.x_train[:50])
    np.testing.assert_array_equal(small.y_train, big.y_train[:50])
    np.testing.assert_array_equal(small.x_test, big.x_test)  # Independent.
    other = data.load_binary_task('synthetic', 1, 0, num_train=50, num_test=40,
                                  synthetic_seed=1)
    self.assertFalse(np.allclose(other.x_train, small.x_train))
    # Train and test are different draws.
    self.assertFalse(np.allclose(small.x_train[:40], small.x_test))

  def test_swap_classes_permute_subsample(self):
    a = data.load_binary_task('synthetic', 1, 0, num_train=60, num_test=20)
    b = data.load_binary_task('synthetic', 0, 1, num_train=60, num_test=20,
                              data_dir='/ignored')
    np.testing.assert_array_equal(a.y_train, 1.0 - b.y_train)
    task = data.subsample(data.permute(a, 2), 10, 5)
    self.assertEqual(task.x_train.shape, (10, 30))
    order = np.random.default_rng(2).permutation(60)[:10]
    np.testing.assert_array_equal(task.x_train, a.x_train[order])

  def test_fully_connected_net_trains_on_vectors(self):
    from afterkernel import models  # pylint: disable=g-import-not-at-top
    from afterkernel import training  # pylint: disable=g-import-not-at-top
    task = data.load_binary_task('synthetic', 1, 0, num_train=64, num_test=16)
    model = models.build_fully_connected(task.x_train.shape[1:], width=8,
                                         num_layers=1)
    self.assertEqual(model.input_shape, (None, 30))
    trained = training.train(model, task.x_train, task.y_train, 1,
                             batch_size=32, seed=0)
    self.assertEqual(trained.epochs, 1)
    error = training.classification_error(model, task.x_test, task.y_test)
    self.assertBetween(error, 0.0, 1.0)
    with self.assertRaisesRegex(AfterKernelError,
                                'vgg needs images .* got input shape '
                                r'\(30,\)'):
      models.build_model('vgg', task.x_train.shape[1:])

  def test_after_kernel_experiment_runs_on_vectors(self):
    from afterkernel.studies import after_kernel  # pylint: disable=g-import-not-at-top
    config = after_kernel.ExperimentConfig(
        dataset='synthetic', plus_class=1, minus_class=0, train_subset=40,
        test_subset=20, nn_architecture='fully_connected', num_layers=1,
        num_parameters=2000, max_num_epochs=1, num_runs=1, num_translations=0,
        num_zooms=0, num_swaps=0, num_rotations=0,
        ker_alignment_sample_size=10, effective_rank_sample_size=10,
        svm_max_iterations=2000)
    output_dir = os.path.join(tempfile.mkdtemp(), 'out')
    self.addCleanup(shutil.rmtree, os.path.dirname(output_dir),
                    ignore_errors=True)
    summary = after_kernel.run_experiment(config, output_dir, log=lambda _: None)
    for name in ('nn_error', 'linear_error', 'ntk_linear_error'):
      self.assertBetween(summary[name]['mean'], 0.0, 1.0)
    self.assertBetween(summary['ak_kalignment']['mean'], -1.0, 1.0)
    self.assertNotIn('ak_trans_inv', summary)

  @parameterized.named_parameters(
      ('invariance', dict(num_translations=4), 'num_translations measure'),
      ('augmentation', dict(use_augmentation=True), 'augmentation does not'),
      ('conv_net', dict(nn_architecture='vgg'),
       'use nn_architecture=fully_connected'))
  def test_experiment_rejects_image_only_options(self, overrides, message):
    from afterkernel.studies import after_kernel  # pylint: disable=g-import-not-at-top
    config = after_kernel.ExperimentConfig(
        dataset='synthetic', plus_class=1, minus_class=0,
        nn_architecture='fully_connected', num_translations=0, num_zooms=0,
        num_swaps=0, num_rotations=0)
    config.validate()
    with self.assertRaisesRegex(AfterKernelError,
                                f'synthetic has vector inputs.*{message}'):
      dataclasses.replace(config, **overrides).validate()

  @parameterized.named_parameters(
      ('class_out_of_range', dict(plus_class=8, minus_class=3),
       r'in \[0, 2\) for synthetic \(0 = z_1 z_2 = -1, 1 = z_1 z_2 = \+1\)'),
      ('negative_seed', dict(synthetic_seed=-1), 'synthetic_seed must be'),
      ('zero_size', dict(num_train=0), 'num_train must be a positive'),
      ('size_for_mnist', dict(dataset='mnist', plus_class=3, minus_class=8,
                              num_test=5),
       'num_test applies only to synthetic, cifar5m, cifar5m2'))
  def test_errors(self, overrides, message):
    kwargs = dict(dataset='synthetic', plus_class=1, minus_class=0)
    kwargs.update(overrides)
    with self.assertRaisesRegex(AfterKernelError, message) as cm:
      data.load_binary_task(**kwargs)
    self.assertNotIn('\n', str(cm.exception))


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
