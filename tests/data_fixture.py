"""Tiny data files in the shared data layout, for the data tests.

MNIST IDX files, CIFAR-10 binary batches (written pixel by pixel, the slow
obvious way) and the lossy CIFAR-10 test file, where every image's first
pixel holds its record id; `DataTestBase` writes them to a fresh folder per
test. Also where the real data are (`REAL`) for the tests that read them.
"""

import gzip
import os
import shutil
import struct
import tempfile

from absl.testing import parameterized
import numpy as np


def real_data_dir() -> str:
  """AFTERKERNEL_DATA_DIR, else <repo root>/../shared/data (see common.md)."""
  repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return os.environ.get('AFTERKERNEL_DATA_DIR',
                        os.path.join(repo_root, '..', 'shared', 'data'))


REAL = real_data_dir()
HAS_MNIST = os.path.isfile(
    os.path.join(REAL, 'mnist', 'train-images-idx3-ubyte.gz'))
HAS_CIFAR = os.path.isfile(
    os.path.join(REAL, 'cifar10', 'data_batch_1.bin.gz'))


def write_gz(path: str, payload: bytes) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with gzip.open(path, 'wb') as f:
    f.write(payload)


def idx_images(images: np.ndarray, magic: int = 2051) -> bytes:
  n, rows, cols = images.shape
  return struct.pack('>IIII', magic, n, rows, cols) + images.tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
  header = struct.pack('>II', 2049, len(labels))
  return header + labels.astype(np.uint8).tobytes()


def cifar_records(images: np.ndarray, labels: np.ndarray) -> bytes:
  """NHWC uint8 images -> binary records, pixel by pixel (slow, obvious)."""
  out = bytearray()
  for image, label in zip(images, labels):
    out.append(int(label))
    for ch in range(3):
      for r in range(32):
        for c in range(32):
          out.append(int(image[r, c, ch]))
  return bytes(out)


def ids_image(record_id: int, shape) -> np.ndarray:
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
    self.mnist_train = np.stack([ids_image(i, (28, 28))
                                 for i in range(30)])
    self.mnist_test = np.stack([ids_image(100 + i, (28, 28))
                                for i in range(20)])
    write_gz(self.path('mnist/train-images-idx3-ubyte.gz'),
              idx_images(self.mnist_train))
    write_gz(self.path('mnist/train-labels-idx1-ubyte.gz'),
              idx_labels(self.mnist_train_labels))
    write_gz(self.path('mnist/t10k-images-idx3-ubyte.gz'),
              idx_images(self.mnist_test))
    write_gz(self.path('mnist/t10k-labels-idx1-ubyte.gz'),
              idx_labels(self.mnist_test_labels))
    # CIFAR-10: 5 batches of `cifar_batch` records, global ids 0..5*batch-1.
    n_train = 5 * cifar_batch
    self.cifar_train_labels = (np.arange(n_train) * 7) % 10
    self.cifar_train = np.stack([ids_image(i, (32, 32, 3))
                                 for i in range(n_train)])
    for b in range(5):
      rows = slice(b * cifar_batch, (b + 1) * cifar_batch)
      write_gz(self.path(f'cifar10/data_batch_{b + 1}.bin.gz'),
                cifar_records(self.cifar_train[rows],
                               self.cifar_train_labels[rows]))
    self.cifar_test_labels = (np.arange(cifar_test) * 3 + 1) % 10
    self.cifar_test = np.stack([ids_image(200 + i, (32, 32, 3))
                                for i in range(cifar_test)])
    write_gz(self.path('cifar10/test_batch_first1000.bin.gz'),
              cifar_records(self.cifar_test, self.cifar_test_labels))
    self.lossy_labels = np.repeat(np.arange(10), cifar_lossy // 10).astype(
        np.uint8)  # Class-major, like the real file.
    self.lossy = np.stack([ids_image(i % 50, (32, 32, 3))
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
