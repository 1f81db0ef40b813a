"""Ten-class tasks (MNIST, UCI digits, CIFAR-10) for multi-output nets.

`tasks` provides binary tasks (the after-kernel paper's protocol); the
linearization studies (Samarin et al. 2020, Ortiz-Jimenez et al. 2021) train
10-output networks on all ten digits. This module reads the same sources
(the local MNIST IDX files of --data_dir through `local_files`, checked and
cached there, or tensorflow-datasets; the UCI digits shipped with
scikit-learn, through `sources`) and returns all classes, pixels scaled to
[0, 1], optionally a seeded random subset.
CIFAR-10 (all ten classes, Samarin et al.'s Fig 4) is read by the one
CIFAR reader, `sources.load_arrays`: the binary batches of
DIR/cifar10/ with the test images of `cifar_test_source` (by default the
exact first 1000 official test records; 'lossy_full' is all 10000 decoded
from lossy JPEGs; 'train_holdout' the last `holdout_size` train records).
"""

import dataclasses
from typing import Optional

import numpy as np

from afterkernel import errors
from afterkernel.data import local_files
from afterkernel.data import sources

DATASETS = ('mnist', 'digits', 'cifar10')
NUM_CLASSES = 10
# Largest pixel value of each source (digits are 16 grey levels).
_PIXEL_MAX = {'mnist': 255.0, 'digits': 16.0, 'cifar10': 255.0}


@dataclasses.dataclass(frozen=True)
class MulticlassTask:
  """A classification task with integer labels.

  Attributes:
    x_train: (n, H, W, C) float32 in [0, 1].
    y_train: (n,) int64 in [0, num_classes).
    x_test: (m, H, W, C) float32.
    y_test: (m,) int64.
    num_classes: number of classes.
    info: provenance (dataset, source, sizes, subset seed).
  """
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  info: dict


def _subset(x, y, size, rng, name):
  if size is None:
    return x, y
  errors.require(0 < size <= len(y),
                 f'{name} must be in [1, {len(y)}], got {size}')
  index = np.sort(rng.permutation(len(y))[:size])
  return x[index], y[index]


def load_multiclass_task(dataset: str = 'digits',
                         data_dir: Optional[str] = None,
                         num_train: Optional[int] = None,
                         num_test: Optional[int] = None,
                         seed: int = 0,
                         cifar_test_source: str = (
                             sources.DEFAULT_CIFAR_TEST_SOURCE),
                         holdout_size: int = sources.DEFAULT_HOLDOUT_SIZE
                         ) -> MulticlassTask:
  """All ten classes of MNIST, the UCI digits or CIFAR-10.

  Args:
    dataset: 'mnist', 'digits' (offline, 8x8, 1200 train / 597 test) or
      'cifar10' (32x32x3).
    data_dir: folder with mnist/{train,t10k}-{images-idx3,labels-idx1}-
      ubyte.gz or cifar10/data_batch_{1..5}.bin.gz and the test file of
      `cifar_test_source` (as in /work/shared/data); None =
      tensorflow-datasets.
    num_train: keep a uniformly random subset of this many training
      examples (None = all).
    num_test: the same for the test set.
    seed: seed of the subsets (np.random.default_rng).
    cifar_test_source: CIFAR-10 only: one of `sources.CIFAR_TEST_SOURCES`.
    holdout_size: CIFAR-10 with cifar_test_source='train_holdout' only.

  Returns:
    The task.

  Raises:
    AfterKernelError: unknown dataset, missing files, bad subset sizes.
  """
  errors.require_choice(dataset, DATASETS, 'multiclass dataset')
  if dataset == 'digits':
    x_train, y_train, x_test, y_test = sources.digits_arrays()
    source = 'sklearn.datasets.load_digits'
  elif dataset == 'cifar10':
    errors.require_choice(cifar_test_source, sources.CIFAR_TEST_SOURCES,
                          'cifar_test_source')
    arrays = sources.load_arrays(
        'cifar10', (0, 1), data_dir, cifar_test_source, holdout_size,
        None, None, sources.DEFAULT_SYNTHETIC_SEED, (), 0)
    x_train, y_train = arrays.x_train, arrays.labels_train
    x_test, y_test = arrays.x_test, arrays.labels_test
    source = f'{arrays.source} (test: {arrays.test_source})'
  elif data_dir is not None:
    x_train, y_train, x_test, y_test = local_files.read_mnist(data_dir)
    source = f'local IDX files in {data_dir}'
  else:
    x_train, y_train, x_test, y_test = sources.load_tfds('mnist')
    source = 'tensorflow-datasets'
  rng = np.random.default_rng(seed)
  x_train, y_train = _subset(x_train, y_train, num_train, rng, 'num_train')
  x_test, y_test = _subset(x_test, y_test, num_test, rng, 'num_test')
  scale = _PIXEL_MAX[dataset]
  return MulticlassTask(
      x_train=(np.asarray(x_train, np.float32) / scale),
      y_train=np.asarray(y_train, np.int64),
      x_test=(np.asarray(x_test, np.float32) / scale),
      y_test=np.asarray(y_test, np.int64),
      num_classes=NUM_CLASSES,
      info=dict(dataset=dataset, source=source, num_train=len(y_train),
                num_test=len(y_test), subset_seed=seed))


def one_hot(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
  """(n,) integer labels -> (n, num_classes) float32 one-hot targets."""
  labels = np.asarray(labels)
  errors.require(labels.ndim == 1 and np.all((labels >= 0) &
                                             (labels < num_classes)),
                 f'labels must be integers in [0, {num_classes})')
  return np.eye(num_classes, dtype=np.float32)[labels.astype(np.int64)]
