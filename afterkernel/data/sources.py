"""Where a dataset's examples come from: the catalogue and every source.

Datasets (`DATASETS`; class ids of the two-class datasets in `CLASS_GROUPS`):
  * 'mnist', 'cifar10': the 10 classes.
  * 'digits': scikit-learn's embedded copy of the UCI handwritten digits
    (8x8, 1797 images), so a task always exists without network or files.
  * 'synthetic': Vyas et al.'s task, z uniform on {-1, 1}^30,
    x = z + N(0, 0.25 I), y = z_1 z_2; generated from a seed, vectors (n, 30).
    Class 1 is y = +1, class 0 is y = -1.
  * 'svhn_parity': SVHN digits (32x32x3); class 1 = odd digit, 0 = even.
    Official train (73257) and test (26032) splits; the 'extra' split is not
    used.
  * 'cifar2': CIFAR-10 classes 0-4 (airplane, automobile, bird, cat, deer) =
    class 0 vs classes 5-9 (dog, frog, horse, ship, truck) = class 1.
  * 'cifar5m': the 10 classes of CIFAR-5m (Nakkiran et al. 2021, ~6M images
    sampled from a generative model trained on CIFAR-10); 'cifar5m2': its
    0-4 vs 5-9 split, as 'cifar2'. Local files only: CIFAR-5m is not in
    tensorflow-datasets and cannot be downloaded on this machine.

Sources, chosen by `load_arrays`:
  * `data_dir` given: local files in the layout of /work/shared/data, read by
    `local_files`. Works offline.
  * `data_dir` None and dataset 'mnist' / 'cifar10' / 'cifar2' /
    'svhn_parity': tensorflow-datasets (`load_tfds`, downloads if needed). If
    that fails, an `AfterKernelError` says how to use local files instead;
    there is never a silent fallback to other data.
  * 'digits' (`digits_arrays`) and 'synthetic' (`synthetic_examples`) need
    neither; 'cifar5m' / 'cifar5m2' need `data_dir`.

Sources return examples in their original order with the dataset's integer
class ids; `tasks` turns them into tasks (binary pairs, labels, subsets).
"""

import functools
import os
from typing import NamedTuple, Optional

import numpy as np

from afterkernel.data import local_files
from afterkernel.errors import AfterKernelError
from afterkernel.errors import require

DATASETS = ('mnist', 'cifar10', 'digits', 'synthetic', 'svhn_parity',
            'cifar2', 'cifar5m', 'cifar5m2')  # 'digits' is the default.
NUM_CLASSES = {'mnist': 10, 'cifar10': 10, 'digits': 10, 'synthetic': 2,
               'svhn_parity': 2, 'cifar2': 2, 'cifar5m': 10, 'cifar5m2': 2}
# What the class ids of the two-class datasets mean: (class 0, class 1).
_CIFAR_HALVES = ('CIFAR-10 classes 0-4 (airplane, automobile, bird, cat, '
                 'deer)', 'CIFAR-10 classes 5-9 (dog, frog, horse, ship, '
                 'truck)')
CLASS_GROUPS = {
    'synthetic': ('z_1 z_2 = -1', 'z_1 z_2 = +1'),
    'svhn_parity': ('even digit (0, 2, 4, 6, 8)', 'odd digit (1, 3, 5, 7, 9)'),
    'cifar2': _CIFAR_HALVES,
    'cifar5m2': _CIFAR_HALVES,
}
# Datasets whose inputs are vectors (n, d) rather than NHWC images: image
# operations (invariances, augmentation, convolutions) do not apply to them.
VECTOR_DATASETS = ('synthetic',)

# Where the CIFAR-10 test images come from when reading local files (the full
# exact test batch is not available offline, see /work/shared/data/README.md):
#   'exact_first_1000': the exact first 1000 official test records (103 cats,
#       86 dogs); exact pixels, small test set.
#   'lossy_full': all 10000 test images decoded from lossy JPEGs (~30 dB PSNR),
#       class-major order; a large but approximate test set.
#   'train_holdout': the last `holdout_size` records of the (exact) train
#       batches, removed from train; exact pixels, but not the official split.
CIFAR_TEST_SOURCES = ('exact_first_1000', 'lossy_full', 'train_holdout')
# Exact official test pixels beat a larger lossy or non-official test set.
DEFAULT_CIFAR_TEST_SOURCE = 'exact_first_1000'
# 2000 of 50000 records: ~400 cats+dogs to test on, 96% of train kept.
DEFAULT_HOLDOUT_SIZE = 2000
# Train on part 0 and test on part 5: the parts are i.i.d. samples of the same
# generator, and part 0 alone (~1M images) exceeds any CPU-scale study.
DEFAULT_CIFAR5M_TRAIN_PARTS = (0,)
DEFAULT_CIFAR5M_TEST_PART = 5
# Vyas et al.'s synthetic task: dimension 30, noise variance 0.25 per axis.
SYNTHETIC_DIM = 30
SYNTHETIC_NOISE_STD = 0.5
DEFAULT_SYNTHETIC_SEED = 0
# (train, test) sizes of generated / too-large datasets when num_train /
# num_test are None: 65536 covers the studies' largest n ("64k"); CIFAR-5m
# 2-class train then takes ~0.8 GB as float32.
DEFAULT_SIZES = {'synthetic': (65536, 10000), 'cifar5m': (65536, 10000),
                 'cifar5m2': (65536, 10000)}
# Rows of sklearn's load_digits: [0, 1200) train, [1200, 1797) test. A fixed
# split keeps every run comparable; ~2/3 train leaves ~60 test images a class.
DIGITS_NUM_TRAIN = 1200

# tfds name of each dataset's source (the two-class datasets group labels).
_TFDS_NAMES = {'mnist': 'mnist', 'cifar10': 'cifar10', 'cifar2': 'cifar10',
               'svhn_parity': 'svhn_cropped'}
# What a local copy looks like, for the error when tfds fails.
_LOCAL_HINTS = {
    'mnist': 'DIR/mnist/*-idx?-ubyte.gz',
    'cifar10': 'DIR/cifar10/data_batch_{1..5}.bin.gz, ...',
    'cifar2': 'DIR/cifar10/data_batch_{1..5}.bin.gz, ...',
    'svhn_parity': (f'DIR/{local_files.SVHN_FILES["train"]} and '
                    f'DIR/{local_files.SVHN_FILES["test"]}'),
}


def is_int(value) -> bool:
  """Whether `value` is an integer (Python or NumPy), not a bool."""
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_cifar5m_parts(train_parts, test_part) -> tuple[int, ...]:
  """Validates the CIFAR-5m part choice; returns the train parts as ints."""
  valid = range(local_files.CIFAR5M_NUM_PARTS)
  require(isinstance(train_parts, (list, tuple)) and len(train_parts) > 0 and
          all(is_int(p) and p in valid for p in train_parts) and
          len(set(train_parts)) == len(train_parts),
          'cifar5m_train_parts must be a non-empty list of distinct part '
          f'numbers in [0, {local_files.CIFAR5M_NUM_PARTS}), got '
          f'{train_parts!r}')
  require(is_int(test_part) and test_part in valid,
          f'cifar5m_test_part must be a part number in [0, '
          f'{local_files.CIFAR5M_NUM_PARTS}), got {test_part!r}')
  require(test_part not in train_parts,
          f'cifar5m_test_part {test_part} is also a train part; pick a part '
          'outside cifar5m_train_parts')
  return tuple(int(p) for p in train_parts)


@functools.lru_cache(maxsize=1)
def digits_arrays():
  """sklearn's 8x8 digits with the fixed split; grey levels 0..16.

  Returns:
    (x_train, y_train, x_test, y_test): read-only uint8 (n, 8, 8, 1) images
    and int64 digits, rows [0, DIGITS_NUM_TRAIN) then the rest.
  """
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  images = local_files.frozen(digits.images.astype(np.uint8)[..., None])
  labels = local_files.frozen(digits.target.astype(np.int64))
  cut = DIGITS_NUM_TRAIN
  return images[:cut], labels[:cut], images[cut:], labels[cut:]


def tfds_arrays(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Loads one whole tfds split as uint8 NHWC images and integer labels."""
  # Imported here: tensorflow-datasets pulls in TensorFlow, slow to import.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  images, labels = tfds.as_numpy(tfds.load(
      name, split=split, as_supervised=True, batch_size=-1, download=True))
  return np.asarray(images, np.uint8), np.asarray(labels)


def load_tfds(dataset: str):
  """(x_train, y_train, x_test, y_test) from tfds, or a one-line error."""
  name = _TFDS_NAMES[dataset]
  try:
    x_train, y_train = tfds_arrays(name, 'train')
    x_test, y_test = tfds_arrays(name, 'test')
  except Exception as e:  # pylint: disable=broad-except
    reason = (str(e).strip().splitlines() or [''])[0][:200]
    raise AfterKernelError(
        f'could not load {dataset} through tensorflow-datasets '
        f'({name}; {type(e).__name__}: {reason}); pass --data_dir=DIR '
        f'(data_dir=DIR) to load offline, with {_LOCAL_HINTS[dataset]} '
        '(the layout of /work/shared/data)') from e
  return x_train, y_train, x_test, y_test


def parity(digits: np.ndarray) -> np.ndarray:
  """Digit 0..9 -> 1 if odd, 0 if even."""
  return np.asarray(digits).astype(np.int64) % 2


@functools.lru_cache(maxsize=8)
def _synthetic_examples_cached(num: int, seed: int, split: str, dim: int,
                               noise_std: float):
  # One SeedSequence per (seed, split, stream): train and test independent,
  # and z and the noise are separate streams consumed row by row, so the
  # first k rows are the same for any num >= k.
  split_id = {'train': 0, 'test': 1}[split]
  z_rng = np.random.default_rng([seed, split_id, 0])
  noise_rng = np.random.default_rng([seed, split_id, 1])
  z = 2.0 * z_rng.integers(0, 2, size=(num, dim)) - 1.0
  x = z + noise_std * noise_rng.standard_normal((num, dim))
  classes = (z[:, 0] * z[:, 1] > 0).astype(np.int64)
  return (local_files.frozen(x.astype(np.float32)),
          local_files.frozen(classes))


def synthetic_examples(num: int, seed: int,
                       split: str) -> tuple[np.ndarray, np.ndarray]:
  """Vyas et al.'s synthetic task: (x float32 (num, d), class (num,)).

  z uniform on {-1, 1}^d (d = SYNTHETIC_DIM), x = z + N(0, s^2 I) with
  s = SYNTHETIC_NOISE_STD, class 1 where z_1 z_2 = +1 and 0 where -1.
  """
  return _synthetic_examples_cached(int(num), int(seed), split,
                                    SYNTHETIC_DIM, float(SYNTHETIC_NOISE_STD))


class SourceArrays(NamedTuple):
  """A dataset's examples as its source gives them, before any task choice.

  Attributes:
    x_train: (n, ...) inputs: uint8 images (grey levels 0..16 for 'digits')
      or float32 vectors ('synthetic'); divide by `scale` for [0, 1] pixels.
    labels_train: (n,) integer class ids of the dataset (for 'cifar2' /
      'svhn_parity' / 'cifar5m2' already the two groups' ids).
    x_test: (m, ...) inputs, as x_train.
    labels_test: (m,) class ids.
    source: 'tfds' | 'local:<abs dir>' | 'embedded:sklearn-digits' |
      'generated'.
    test_source: where the test split comes from (e.g. 'official_test').
    scale: the largest pixel value (255, 16, or 1 for vectors).
    extra_info: JSON-serializable provenance particular to the source.
  """
  x_train: np.ndarray
  labels_train: np.ndarray
  x_test: np.ndarray
  labels_test: np.ndarray
  source: str
  test_source: str
  scale: float
  extra_info: dict


def load_arrays(dataset: str,
                classes: tuple[int, int],
                data_dir: Optional[str],
                cifar_test_source: str,
                holdout_size: int,
                num_train: Optional[int],
                num_test: Optional[int],
                synthetic_seed: int,
                train_parts: tuple[int, ...],
                test_part: int) -> SourceArrays:
  """Reads `dataset` from its source (see the module docstring).

  The arguments are those of `tasks.load_binary_task`, already checked
  there (num_train / num_test already defaulted for the generated and
  partly-read datasets); `classes` are the two class ids the task keeps,
  used only to read no more of CIFAR-5m than needed.

  Returns:
    The `SourceArrays`.

  Raises:
    AfterKernelError: a missing or malformed file or data_dir, or
      tensorflow-datasets failing.
  """
  extra_info = {}
  if dataset == 'digits':
    x_train, y_train, x_test, y_test = digits_arrays()
    source = 'embedded:sklearn-digits'
    test_source = 'fixed_split_rows_1200_1797'
    scale = 16.0
  elif dataset == 'synthetic':
    x_train, y_train = synthetic_examples(num_train, synthetic_seed, 'train')
    x_test, y_test = synthetic_examples(num_test, synthetic_seed, 'test')
    source, test_source, scale = 'generated', 'independent_draw', 1.0
    extra_info = {'synthetic': {
        'dim': SYNTHETIC_DIM, 'noise_std': SYNTHETIC_NOISE_STD,
        'seed': int(synthetic_seed), 'num_train': num_train,
        'num_test': num_test}}
  elif dataset in ('cifar5m', 'cifar5m2'):
    require(data_dir is not None,
            'CIFAR-5m is not in tensorflow-datasets and cannot be downloaded '
            'on this machine; get cifar5m_part{0..5}.npz from Nakkiran et '
            f'al.\'s release ({local_files.CIFAR5M_URL}) and pass data_dir=DIR '
            'with them in '
            f'DIR/{os.path.dirname(local_files.CIFAR5M_FILE)}/')
    data_dir = local_files.checked_data_dir(data_dir)
    source, scale = f'local:{data_dir}', 255.0
    groups = dataset == 'cifar5m2'
    # Read only what the task keeps: both halves for cifar5m2.
    wanted = (0, 1) if groups else tuple(classes)
    x_train, y_train, x_test, y_test = local_files.read_cifar5m(
        data_dir, train_parts, int(test_part), wanted, groups,
        num_train, num_test)
    test_source = f'cifar5m_part{int(test_part)}'
    extra_info = {'cifar5m': {
        'train_parts': list(train_parts),
        'test_part': int(test_part),
        'max_train': num_train, 'max_test': num_test,
        'note': 'first examples of the two classes in file order; CIFAR-5m '
                'images are samples of a generative model trained on '
                'CIFAR-10 (Nakkiran et al. 2021)'}}
  elif data_dir is not None:
    data_dir = local_files.checked_data_dir(data_dir)
    source, scale = f'local:{data_dir}', 255.0
    if dataset == 'mnist':
      x_train, y_train, x_test, y_test = local_files.read_mnist(data_dir)
      test_source = 'official_test'
    elif dataset == 'svhn_parity':
      x_train, y_train, x_test, y_test = local_files.read_svhn(data_dir)
      test_source = 'official_test'
    else:
      arrays, extra_info = local_files.read_cifar(data_dir,
                                                  cifar_test_source,
                                                  holdout_size)
      x_train, y_train, x_test, y_test = arrays
      test_source = cifar_test_source
  else:
    x_train, y_train, x_test, y_test = load_tfds(dataset)
    source, test_source, scale = 'tfds', 'official_test', 255.0
    if dataset in ('cifar10', 'cifar2'):
      if cifar_test_source == 'train_holdout':
        (x_train, y_train, x_test, y_test,
         extra_info) = local_files.holdout_split(x_train, y_train,
                                                 holdout_size)
        test_source = 'train_holdout'
      else:
        extra_info = {'requested_test_source': cifar_test_source}

  if dataset in ('cifar2', 'svhn_parity'):
    # Digits / CIFAR-10 classes -> the two groups' class ids.
    to_group = local_files.cifar_half if dataset == 'cifar2' else parity
    y_train, y_test = to_group(y_train), to_group(y_test)
  return SourceArrays(x_train, y_train, x_test, y_test, source, test_source,
                      scale, extra_info)
