"""Binary classification tasks (plus class vs minus class) for the studies.

The after-kernel experiments train networks on two-class problems such as
MNIST 3-vs-8, MNIST 5-vs-6 or CIFAR-10 cats(3)-vs-dogs(5); the kernel-scaling
studies (Vyas et al. 2022, "Limitations of the NTK for understanding
generalization in deep learning") add a synthetic task, SVHN parity, CIFAR2
and CIFAR-5m. This module turns a dataset name and two class ids into a
`BinaryTask`: float32 inputs (NHWC images with pixels in [0, 1] as loaded,
which `standardize` centres and scales; or vectors for 'synthetic') and
float32 labels in {0, 1} (1 = plus class), together with a JSON-serializable
`info` dict that says where every array came from.

Datasets (`DATASETS`; class ids of the two-class datasets in `CLASS_GROUPS`):
  * 'mnist', 'cifar10': a pair of the 10 classes.
  * 'digits': scikit-learn's embedded copy of the UCI handwritten digits
    (8x8, 1797 images), so a task always exists without network or files.
  * 'synthetic': Vyas et al.'s task, z uniform on {-1, 1}^30,
    x = z + N(0, 0.25 I), y = z_1 z_2; generated from a seed, vectors (n, 30).
    Class 1 is y = +1, class 0 is y = -1, so plus_class=1, minus_class=0
    gives the {0, 1} label (y + 1) / 2.
  * 'svhn_parity': SVHN digits (32x32x3); class 1 = odd digit, 0 = even.
    Official train (73257) and test (26032) splits; the 'extra' split is not
    used.
  * 'cifar2': CIFAR-10 classes 0-4 (airplane, automobile, bird, cat, deer) =
    class 0 vs classes 5-9 (dog, frog, horse, ship, truck) = class 1.
  * 'cifar5m': a pair of the 10 classes of CIFAR-5m (Nakkiran et al. 2021,
    ~6M images sampled from a generative model trained on CIFAR-10);
    'cifar5m2': its 0-4 vs 5-9 split, as 'cifar2'. Local files only: CIFAR-5m
    is not in tensorflow-datasets and cannot be downloaded on this machine.

Sources, chosen by `load_binary_task`:
  * `data_dir` given: local files in the layout of /work/shared/data
    (see `MNIST_FILES`, `CIFAR_TRAIN_FILES`, `CIFAR_TEST_FILES`, `SVHN_FILES`,
    `CIFAR5M_FILE`), read with gzip / numpy / scipy. Works offline.
  * `data_dir` None and dataset 'mnist' / 'cifar10' / 'cifar2' /
    'svhn_parity': tensorflow-datasets (downloads if needed). If that fails,
    an `AfterKernelError` says how to use local files instead; there is never
    a silent fallback to other data.
  * 'digits' and 'synthetic' need neither; 'cifar5m' / 'cifar5m2' need
    `data_dir`.

Order is the source's original order; call `permute` (seeded) and then
`subsample` (first k) to draw reproducible subsets. Both record what they did
in `info`.
"""

import dataclasses
import functools
import gzip
import os
import struct
import zipfile
import zlib
from typing import Sequence

import numpy as np

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

MNIST_FILES = {
    'train_images': 'mnist/train-images-idx3-ubyte.gz',
    'train_labels': 'mnist/train-labels-idx1-ubyte.gz',
    'test_images': 'mnist/t10k-images-idx3-ubyte.gz',
    'test_labels': 'mnist/t10k-labels-idx1-ubyte.gz',
}
CIFAR_TRAIN_FILES = tuple(
    f'cifar10/data_batch_{i}.bin.gz' for i in range(1, 6))
CIFAR_TEST_FILES = {
    'exact_first_1000': 'cifar10/test_batch_first1000.bin.gz',
    'lossy_full': 'cifar10/test_jpeg_approx_yoongikim.npz',
}
# The cropped-digits release of SVHN (ufldl.stanford.edu/housenumbers): MATLAB
# files with 'X' uint8 (32, 32, 3, n) and 'y' (n, 1) in 1..10, 10 = digit 0.
SVHN_FILES = {'train': 'svhn/train_32x32.mat', 'test': 'svhn/test_32x32.mat'}
SVHN_URL = 'http://ufldl.stanford.edu/housenumbers/'
# Nakkiran et al.'s release (github.com/preetum/cifar5m): six parts of ~1M
# images, each an npz with 'X' uint8 (n, 32, 32, 3) and 'Y' (n,) in 0..9.
CIFAR5M_FILE = 'cifar5m/cifar5m_part{part}.npz'
CIFAR5M_NUM_PARTS = 6
CIFAR5M_URL = 'https://github.com/preetum/cifar5m'
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

_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_CIFAR_SIDE = 32
_CIFAR_RECORD_BYTES = 1 + 3 * _CIFAR_SIDE * _CIFAR_SIDE  # label + R, G, B.
# Rows of a CIFAR-5m part decoded at a time (~12 MB), so that a part (3 GB)
# is never held in memory whole.
_CIFAR5M_CHUNK_ROWS = 4096
_LAYOUT_HINT = (
    'expected layout: DIR/mnist/{train-images-idx3-ubyte.gz,'
    'train-labels-idx1-ubyte.gz,t10k-images-idx3-ubyte.gz,'
    't10k-labels-idx1-ubyte.gz} and DIR/cifar10/{data_batch_1..5.bin.gz,'
    'test_batch_first1000.bin.gz,test_jpeg_approx_yoongikim.npz}, '
    'as in /work/shared/data')
# tfds name of each dataset's source (the two-class datasets group labels).
_TFDS_NAMES = {'mnist': 'mnist', 'cifar10': 'cifar10', 'cifar2': 'cifar10',
               'svhn_parity': 'svhn_cropped'}
# What a local copy looks like, for the error when tfds fails.
_LOCAL_HINTS = {
    'mnist': 'DIR/mnist/*-idx?-ubyte.gz',
    'cifar10': 'DIR/cifar10/data_batch_{1..5}.bin.gz, ...',
    'cifar2': 'DIR/cifar10/data_batch_{1..5}.bin.gz, ...',
    'svhn_parity': f'DIR/{SVHN_FILES["train"]} and DIR/{SVHN_FILES["test"]}',
}
_LOSSY_NOTE = ('lossy JPEG approximation of the official CIFAR-10 test images '
               '(~30 dB PSNR, class-major order); not exact pixels')


@dataclasses.dataclass(frozen=True, eq=False)
class BinaryTask:
  """A two-class task: plus class -> label 1.0, minus class -> 0.0.

  Attributes:
    x_train: float32 (n_train, H, W, C) images with pixels in [0, 1], or
      (n_train, d) vectors for the datasets in `VECTOR_DATASETS`.
    y_train: float32 (n_train,), 1.0 for the plus class, 0.0 for the minus.
      The +-1 labels of kernel regression are 2 y - 1.
    x_test: float32 (n_test, H, W, C) or (n_test, d), as x_train.
    y_test: float32 (n_test,).
    info: JSON-serializable provenance: 'dataset', 'plus_class',
      'minus_class', 'source' ('tfds' | 'local:<abs dir>' |
      'embedded:sklearn-digits' | 'generated'), 'test_source', 'n_train',
      'n_test', 'image_shape' (the shape of one input, e.g. [28, 28, 1], or
      [30] for vectors), 'input_kind' ('image' | 'vector'),
      'permutation_seed' (None until `permute`), and 'transforms' (the
      `permute` / `subsample` calls, in order). Two-class datasets carry
      'plus_meaning' / 'minus_meaning' (see `CLASS_GROUPS`); CIFAR tasks read
      from lossy JPEGs carry 'test_note'; 'synthetic' and CIFAR-5m carry the
      options they were made with.
  """
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  info: dict

  def __post_init__(self):
    for x, y, split in ((self.x_train, self.y_train, 'train'),
                        (self.x_test, self.y_test, 'test')):
      require(x.ndim in (2, 4) and y.shape == (x.shape[0],),
              f'BinaryTask {split} arrays must be x (n, H, W, C) images or '
              f'(n, d) vectors and y (n,), got x {x.shape} and y {y.shape}')


def load_binary_task(
    dataset: str,
    plus_class: int,
    minus_class: int,
    data_dir: str | None = None,
    cifar_test_source: str = DEFAULT_CIFAR_TEST_SOURCE,
    holdout_size: int = DEFAULT_HOLDOUT_SIZE,
    *,
    num_train: int | None = None,
    num_test: int | None = None,
    synthetic_seed: int = DEFAULT_SYNTHETIC_SEED,
    cifar5m_train_parts: Sequence[int] = DEFAULT_CIFAR5M_TRAIN_PARTS,
    cifar5m_test_part: int = DEFAULT_CIFAR5M_TEST_PART,
) -> BinaryTask:
  """Loads the `plus_class`-vs-`minus_class` task of `dataset`.

  Keeps only examples of the two classes, in the source's original order,
  and labels them y = 1.0 if class == plus_class else 0.0. Pixels are
  uint8 / 255 (MNIST, CIFAR-10, SVHN, CIFAR-5m) or grey level / 16 (digits),
  so they lie in [0, 1]; 'synthetic' inputs are the raw vectors x.

  Args:
    dataset: one of `DATASETS`. 'mnist' gives (n, 28, 28, 1) images,
      'cifar10' / 'cifar2' / 'svhn_parity' / 'cifar5m' / 'cifar5m2'
      (n, 32, 32, 3), 'digits' (n, 8, 8, 1), 'synthetic' (n, 30) vectors.
    plus_class: class id in [0, NUM_CLASSES[dataset]) labelled 1.0; for the
      two-class datasets 0 or 1 as in `CLASS_GROUPS` (e.g. 'svhn_parity':
      1 = odd digits).
    minus_class: a different class id, labelled 0.0.
    data_dir: folder in the layout of /work/shared/data (DIR/mnist/...,
      DIR/cifar10/..., DIR/svhn/..., DIR/cifar5m/...); only the files the
      chosen options need must exist. None loads 'mnist', 'cifar10',
      'cifar2' and 'svhn_parity' through tensorflow-datasets. Ignored for
      'digits' (always scikit-learn) and 'synthetic' (generated).
    cifar_test_source: one of `CIFAR_TEST_SOURCES`; where the CIFAR-10 test
      set of 'cifar10' / 'cifar2' comes from (see the constant's comment).
      Ignored (and not recorded) for other datasets, but must still be a
      valid name. Through tensorflow-datasets, 'exact_first_1000' and
      'lossy_full' both give the official full (exact) test split, recorded
      as 'official_test'.
    holdout_size: for 'train_holdout', how many of the last records of the
      concatenated CIFAR-10 train batches (before class filtering) become the
      test set; they are removed from train. Must be positive.
    num_train: 'synthetic': how many train examples to generate; 'cifar5m' /
      'cifar5m2': at most how many to read (the first ones of the two classes
      in file order, so a 3 GB part is never loaded whole). None means
      `DEFAULT_SIZES[dataset]`. Must be None for the other datasets (use
      `permute` + `subsample` there).
    num_test: the same for the test split.
    synthetic_seed: non-negative seed of 'synthetic'. Train and test come from
      independent streams, and examples are drawn in order, so the first k
      examples do not depend on num_train / num_test (a bigger task extends a
      smaller one). Independent of `permute`'s seed.
    cifar5m_train_parts: CIFAR-5m parts (0..5) read, in this order, for train.
    cifar5m_test_part: the CIFAR-5m part read for test; not a train part.

  Returns:
    The `BinaryTask`, unpermuted (info['permutation_seed'] is None).

  Raises:
    AfterKernelError: on an unknown dataset or test source, bad class ids,
      a non-positive holdout_size or size, bad synthetic / CIFAR-5m options,
      a missing data_dir or file (CIFAR-5m and SVHN errors name every missing
      file), a malformed file, tensorflow-datasets failing, or a class with
      no examples in train or test.
  """
  require(dataset in DATASETS,
          f'unknown dataset {dataset!r}; valid datasets: {", ".join(DATASETS)}')
  num_classes = NUM_CLASSES[dataset]
  meaning = ''
  if dataset in CLASS_GROUPS:
    meaning = ' (' + ', '.join(f'{i} = {m}' for i, m in
                               enumerate(CLASS_GROUPS[dataset])) + ')'
  for name, value in (('plus_class', plus_class), ('minus_class', minus_class)):
    require(_is_int(value) and 0 <= value < num_classes,
            f'{name} must be an integer class id in [0, {num_classes}) for '
            f'{dataset}{meaning}, got {value!r}')
  plus_class, minus_class = int(plus_class), int(minus_class)
  require(plus_class != minus_class,
          f'plus_class and minus_class must differ, both are {plus_class}')
  require(cifar_test_source in CIFAR_TEST_SOURCES,
          f'unknown cifar_test_source {cifar_test_source!r}; valid: '
          f'{", ".join(CIFAR_TEST_SOURCES)}')
  require(_is_int(holdout_size) and holdout_size > 0,
          f'holdout_size must be a positive integer, got {holdout_size!r}')
  for name, value in (('num_train', num_train), ('num_test', num_test)):
    require(value is None or (_is_int(value) and value > 0),
            f'{name} must be a positive integer or None, got {value!r}')
    require(value is None or dataset in DEFAULT_SIZES,
            f'{name} applies only to {", ".join(DEFAULT_SIZES)} (generated '
            f'or read in part); for {dataset} leave it None and use '
            'permute + subsample')
  require(_is_int(synthetic_seed) and synthetic_seed >= 0,
          f'synthetic_seed must be a non-negative integer, got '
          f'{synthetic_seed!r}')
  train_parts = _check_cifar5m_parts(cifar5m_train_parts, cifar5m_test_part)
  if dataset in DEFAULT_SIZES:
    default_train, default_test = DEFAULT_SIZES[dataset]
    num_train = default_train if num_train is None else int(num_train)
    num_test = default_test if num_test is None else int(num_test)

  extra_info = {}
  if dataset == 'digits':
    x_train, y_train, x_test, y_test = _digits_arrays()
    source = 'embedded:sklearn-digits'
    test_source = 'fixed_split_rows_1200_1797'
    scale = 16.0
  elif dataset == 'synthetic':
    x_train, y_train = _synthetic_examples(num_train, synthetic_seed, 'train')
    x_test, y_test = _synthetic_examples(num_test, synthetic_seed, 'test')
    source, test_source, scale = 'generated', 'independent_draw', 1.0
    extra_info = {'synthetic': {
        'dim': SYNTHETIC_DIM, 'noise_std': SYNTHETIC_NOISE_STD,
        'seed': int(synthetic_seed), 'num_train': num_train,
        'num_test': num_test}}
  elif dataset in ('cifar5m', 'cifar5m2'):
    require(data_dir is not None,
            'CIFAR-5m is not in tensorflow-datasets and cannot be downloaded '
            'on this machine; get cifar5m_part{0..5}.npz from Nakkiran et '
            f'al.\'s release ({CIFAR5M_URL}) and pass data_dir=DIR with them '
            f'in DIR/{os.path.dirname(CIFAR5M_FILE)}/')
    data_dir = _checked_data_dir(data_dir)
    source, scale = f'local:{data_dir}', 255.0
    groups = dataset == 'cifar5m2'
    # Read only what the task keeps: both halves for cifar5m2.
    wanted = (0, 1) if groups else (plus_class, minus_class)
    x_train, y_train, x_test, y_test = _local_cifar5m(
        data_dir, train_parts, int(cifar5m_test_part), wanted, groups,
        num_train, num_test)
    test_source = f'cifar5m_part{int(cifar5m_test_part)}'
    extra_info = {'cifar5m': {
        'train_parts': list(train_parts),
        'test_part': int(cifar5m_test_part),
        'max_train': num_train, 'max_test': num_test,
        'note': 'first examples of the two classes in file order; CIFAR-5m '
                'images are samples of a generative model trained on '
                'CIFAR-10 (Nakkiran et al. 2021)'}}
  elif data_dir is not None:
    data_dir = _checked_data_dir(data_dir)
    source, scale = f'local:{data_dir}', 255.0
    if dataset == 'mnist':
      x_train, y_train, x_test, y_test = _local_mnist(data_dir)
      test_source = 'official_test'
    elif dataset == 'svhn_parity':
      x_train, y_train, x_test, y_test = _local_svhn(data_dir)
      test_source = 'official_test'
    else:
      (x_train, y_train, x_test, y_test), extra_info = _local_cifar(
          data_dir, cifar_test_source, holdout_size)
      test_source = cifar_test_source
  else:
    x_train, y_train, x_test, y_test = _tfds_or_raise(dataset)
    source, test_source, scale = 'tfds', 'official_test', 255.0
    if dataset in ('cifar10', 'cifar2'):
      if cifar_test_source == 'train_holdout':
        x_train, y_train, x_test, y_test, extra_info = _holdout(
            x_train, y_train, holdout_size)
        test_source = 'train_holdout'
      else:
        extra_info = {'requested_test_source': cifar_test_source}

  if dataset in ('cifar2', 'svhn_parity'):
    # Digits / CIFAR-10 classes -> the two groups' class ids.
    to_group = _cifar_half if dataset == 'cifar2' else _parity
    y_train, y_test = to_group(y_train), to_group(y_test)
  x_train, y_train = _select(x_train, y_train, plus_class, minus_class, scale)
  x_test, y_test = _select(x_test, y_test, plus_class, minus_class, scale)
  for split, y in (('train', y_train), ('test', y_test)):
    for cls, value in ((plus_class, 1.0), (minus_class, 0.0)):
      require(np.any(y == value),
              f'class {cls} has zero examples in the {split} split of '
              f'{dataset} ({source}, test source {test_source}); pick classes '
              'present in both splits or another test source')
  info = {
      'dataset': dataset,
      'plus_class': plus_class,
      'minus_class': minus_class,
      'source': source,
      'test_source': test_source,
      'n_train': int(len(y_train)),
      'n_test': int(len(y_test)),
      'n_train_plus': int(y_train.sum()),
      'n_test_plus': int(y_test.sum()),
      'image_shape': [int(d) for d in x_train.shape[1:]],
      'input_kind': 'vector' if dataset in VECTOR_DATASETS else 'image',
      'permutation_seed': None,
      'transforms': [],
  }
  if dataset in CLASS_GROUPS:
    info['plus_meaning'] = CLASS_GROUPS[dataset][plus_class]
    info['minus_meaning'] = CLASS_GROUPS[dataset][minus_class]
  info.update(extra_info)
  return BinaryTask(x_train, y_train, x_test, y_test, info)


def permute(task: BinaryTask, seed: int) -> BinaryTask:
  """Shuffles train and test order with `np.random.default_rng(seed)`.

  One generator draws `rng.permutation(n_train)` and then
  `rng.permutation(n_test)`; each image keeps its label. Used before
  `subsample` so that "the first k" is a seeded random subset.

  Args:
    task: an unpermuted task (from `load_binary_task`, maybe subsampled).
    seed: a non-negative integer.

  Returns:
    A new task; info['permutation_seed'] = seed and the call is appended to
    info['transforms'].

  Raises:
    AfterKernelError: if the seed is not a non-negative integer, or the task
      was already permuted (a second seed would make provenance ambiguous).
  """
  require(_is_int(seed) and seed >= 0,
          f'permutation seed must be a non-negative integer, got {seed!r}')
  previous_seed = task.info.get('permutation_seed')
  require(previous_seed is None,
          f'task is already permuted with seed {previous_seed}'
          '; permute the task returned by load_binary_task instead')
  rng = np.random.default_rng(int(seed))
  train_order = rng.permutation(len(task.y_train))
  test_order = rng.permutation(len(task.y_test))
  info = _updated_info(task.info, {'op': 'permute', 'seed': int(seed)})
  info['permutation_seed'] = int(seed)
  return BinaryTask(task.x_train[train_order], task.y_train[train_order],
                    task.x_test[test_order], task.y_test[test_order], info)


def subsample(task: BinaryTask, num_train: int | None,
              num_test: int | None) -> BinaryTask:
  """Keeps the first `num_train` train and first `num_test` test examples.

  Call after `permute` for a seeded random subset; on an unpermuted task this
  takes the first k in the source order (CIFAR 'lossy_full' test is
  class-major, so its first k may hold only one class).

  Args:
    task: the task to cut.
    num_train: how many train examples to keep; None keeps all.
    num_test: how many test examples to keep; None keeps all.

  Returns:
    A new task with updated info['n_train'] / info['n_test'] and the call
    appended to info['transforms'].

  Raises:
    AfterKernelError: if a size is not a positive integer or exceeds what the
      task has.
  """
  sizes = {}
  for name, k, available in (('num_train', num_train, len(task.y_train)),
                             ('num_test', num_test, len(task.y_test))):
    if k is None:
      sizes[name] = available
      continue
    require(_is_int(k) and k > 0,
            f'{name} must be a positive integer or None, got {k!r}')
    require(k <= available,
            f'{name}={k} exceeds the {available} examples available in '
            f'{task.info.get("dataset")} {name[4:]}; '
            f'ask for at most {available}')
    sizes[name] = int(k)
  info = _updated_info(task.info, {
      'op': 'subsample',
      'num_train': None if num_train is None else int(num_train),
      'num_test': None if num_test is None else int(num_test),
  })
  n_train, n_test = sizes['num_train'], sizes['num_test']
  y_train, y_test = task.y_train[:n_train], task.y_test[:n_test]
  info.update({
      'n_train': n_train,
      'n_test': n_test,
      'n_train_plus': int(y_train.sum()),
      'n_test_plus': int(y_test.sum()),
  })
  return BinaryTask(task.x_train[:n_train], y_train, task.x_test[:n_test],
                    y_test, info)


def standardize(task: BinaryTask) -> BinaryTask:
  """Centers every input feature and scales by one global std, from train.

  x -> (x - mu) / s with mu the per-feature (per pixel and channel) mean of
  the training inputs and s the standard deviation of all their centered
  values, a single number (so relative feature scales are kept). The test
  inputs get the same mu and s: nothing is estimated from them. Call after
  `subsample` so that mu and s come from the examples actually trained on.

  Args:
    task: the task to transform.

  Returns:
    A new task with float32 inputs; info['standardized'] = True and
    {'op': 'standardize', 'scale': s} appended to info['transforms'].

  Raises:
    AfterKernelError: the task is already standardized, or its training
      inputs are all equal (s = 0).
  """
  require(not task.info.get('standardized'), 'task is already standardized')
  x_train = np.asarray(task.x_train, np.float64)
  mean = x_train.mean(axis=0)
  scale = float(np.sqrt(np.mean((x_train - mean)**2)))
  require(scale > 0, 'cannot standardize: the training inputs are all equal')
  info = _updated_info(task.info, {'op': 'standardize', 'scale': scale})
  info['standardized'] = True

  def transform(x):
    return ((x - mean) / scale).astype(np.float32)

  return BinaryTask(transform(x_train), task.y_train,
                    transform(np.asarray(task.x_test, np.float64)),
                    task.y_test, info)


def signed_labels(labels01: np.ndarray) -> np.ndarray:
  """{0, 1} labels as float64 -1 / +1 (y -> 2 y - 1): the plus class is +1.

  The +-1 form is the target of kernel regression and of margins, and the
  vector y of alignments y^T K y.

  Args:
    labels01: labels in {0, 1} (e.g. `BinaryTask.y_train`), any shape.

  Returns:
    float64 array of the same shape with values in {-1, +1}.

  Raises:
    AfterKernelError: some label is neither 0 nor 1.
  """
  labels = np.asarray(labels01, np.float64)
  require(bool(np.all((labels == 0) | (labels == 1))),
          f'labels must be 0 or 1, got values '
          f'{np.unique(labels)[:5].tolist()}')
  return 2.0 * labels - 1.0


# ----------------------------------------------------------------------------
# Helpers.


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _updated_info(info: dict, transform: dict) -> dict:
  info = dict(info)
  info['transforms'] = list(info.get('transforms', [])) + [transform]
  return info


def _select(x: np.ndarray, labels: np.ndarray, plus_class: int,
            minus_class: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
  """Keeps the two classes: float32 x / scale and y = [label == plus]."""
  keep = (labels == plus_class) | (labels == minus_class)
  x = x[keep].astype(np.float32, order='C')
  x /= np.float32(scale)
  return x, (labels[keep] == plus_class).astype(np.float32)


def _holdout(x_train, y_train, holdout_size):
  """Moves the last `holdout_size` train records into a test set."""
  n = len(y_train)
  require(holdout_size < n,
          f'holdout_size={holdout_size} must be smaller than the {n} CIFAR-10 '
          'train records')
  cut = n - holdout_size
  return (x_train[:cut], y_train[:cut], x_train[cut:], y_train[cut:],
          {'holdout_size': int(holdout_size),
           'holdout_records': [int(cut), int(n)]})


def _required_file(data_dir: str, relative: str) -> str:
  path = os.path.join(data_dir, relative)
  require(os.path.isfile(path),
          f'missing data file {path}; {_LAYOUT_HINT}')
  return path


def _file_key(path: str) -> tuple[str, int, int]:
  """Cache key: the path plus size and mtime, so a rewritten file is reread."""
  stat = os.stat(path)
  return path, stat.st_size, stat.st_mtime_ns


def _read_gzip(path: str) -> bytes:
  try:
    with open(path, 'rb') as f:
      # wbits=31: expect a gzip header; faster than the gzip module.
      return zlib.decompress(f.read(), 31)
  except zlib.error as e:
    raise AfterKernelError(
        f'malformed gzip file {path}: {e}; re-copy it from the data source'
    ) from None


def _frozen(array: np.ndarray) -> np.ndarray:
  array.setflags(write=False)  # Cached arrays are shared between callers.
  return array


@functools.lru_cache(maxsize=16)
def _read_idx_cached(path: str, size: int, mtime_ns: int) -> np.ndarray:
  del size, mtime_ns  # Only part of the cache key.
  data = _read_gzip(path)
  require(len(data) >= 8, f'malformed IDX file {path}: only {len(data)} bytes')
  magic, n = struct.unpack('>II', data[:8])
  if magic == _IDX_IMAGES_MAGIC:
    require(len(data) >= 16, f'malformed IDX file {path}: truncated header')
    rows, cols = struct.unpack('>II', data[8:16])
    shape, offset = (n, rows, cols), 16
  elif magic == _IDX_LABELS_MAGIC:
    shape, offset = (n,), 8
  else:
    raise AfterKernelError(
        f'malformed IDX file {path}: bad magic number {magic}, expected '
        f'{_IDX_IMAGES_MAGIC} (images) or {_IDX_LABELS_MAGIC} (labels)')
  expected = offset + int(np.prod(shape))
  require(len(data) == expected,
          f'malformed IDX file {path}: {len(data)} bytes, header {shape} '
          f'needs {expected}')
  return _frozen(np.frombuffer(data, np.uint8, offset=offset).reshape(shape))


def _read_idx(path: str) -> np.ndarray:
  """Reads a gzipped IDX file (MNIST): uint8 (n, rows, cols) or (n,)."""
  return _read_idx_cached(*_file_key(path))


@functools.lru_cache(maxsize=16)
def _read_cifar_records_cached(path: str, size: int,
                               mtime_ns: int) -> np.ndarray:
  del size, mtime_ns  # Only part of the cache key.
  data = _read_gzip(path)
  require(len(data) > 0 and len(data) % _CIFAR_RECORD_BYTES == 0,
          f'malformed CIFAR-10 binary file {path}: {len(data)} bytes is not a '
          f'positive multiple of the {_CIFAR_RECORD_BYTES}-byte record '
          '(1 label byte + 3072 pixel bytes)')
  records = np.frombuffer(data, np.uint8).reshape(-1, _CIFAR_RECORD_BYTES)
  require(int(records[:, 0].max()) < NUM_CLASSES['cifar10'],
          f'malformed CIFAR-10 binary file {path}: label byte '
          f'{int(records[:, 0].max())} is not in [0, 10)')
  return _frozen(records)


def _read_cifar_records(path: str) -> np.ndarray:
  """Reads gzipped CIFAR-10 binary records: uint8 (n, 3073), label first."""
  return _read_cifar_records_cached(*_file_key(path))


def _cifar_images(records: np.ndarray) -> np.ndarray:
  """(n, 3073) records -> uint8 (n, 32, 32, 3): planes R, G, B to NHWC."""
  return records[:, 1:].reshape(
      -1, 3, _CIFAR_SIDE, _CIFAR_SIDE).transpose(0, 2, 3, 1)


@functools.lru_cache(maxsize=4)
def _read_lossy_npz_cached(path: str, size: int, mtime_ns: int):
  del size, mtime_ns  # Only part of the cache key.
  try:
    with np.load(path) as npz:
      files = set(npz.files)
      if {'x_test', 'y_test'} <= files:
        x, y = npz['x_test'], npz['y_test']
  except Exception as e:  # pylint: disable=broad-except
    # np.load raises many types on a bad file (OSError, ValueError, zlib...).
    raise AfterKernelError(f'malformed npz {path}: {e}') from None
  missing = {'x_test', 'y_test'} - files
  require(not missing, f'malformed npz {path}: missing keys {sorted(missing)}')
  require(x.dtype == np.uint8 and x.ndim == 4 and
          x.shape[1:] == (_CIFAR_SIDE, _CIFAR_SIDE, 3) and
          y.shape == (x.shape[0],),
          f'malformed npz {path}: need x_test uint8 (n, 32, 32, 3) and '
          f'y_test (n,), got {x.dtype} {x.shape} and {y.shape}')
  return _frozen(x), _frozen(y)


def _local_mnist(data_dir: str):
  """Reads the four MNIST IDX files: (x_train, y_train, x_test, y_test)."""
  paths = {k: _required_file(data_dir, v) for k, v in MNIST_FILES.items()}
  arrays = {k: _read_idx(p) for k, p in paths.items()}
  for split in ('train', 'test'):
    images, labels = arrays[f'{split}_images'], arrays[f'{split}_labels']
    require(images.ndim == 3 and labels.ndim == 1 and
            len(images) == len(labels),
            f'MNIST {split} files do not match: images {images.shape} in '
            f'{paths[split + "_images"]}, labels {labels.shape} in '
            f'{paths[split + "_labels"]}')
  return (arrays['train_images'][..., None], arrays['train_labels'],
          arrays['test_images'][..., None], arrays['test_labels'])


def _local_cifar(data_dir: str, test_source: str, holdout_size: int):
  """Reads CIFAR-10 train batches and the chosen test source.

  Returns:
    ((x_train, labels_train, x_test, labels_test), extra_info) with uint8
    NHWC images; only needed files are read.
  """
  paths = [_required_file(data_dir, f) for f in CIFAR_TRAIN_FILES]
  test_path = (None if test_source == 'train_holdout' else
               _required_file(data_dir, CIFAR_TEST_FILES[test_source]))
  records = np.concatenate([_read_cifar_records(p) for p in paths])
  x_train, y_train = _cifar_images(records), records[:, 0]
  extra_info = {}
  if test_source == 'train_holdout':
    x_train, y_train, x_test, y_test, extra_info = _holdout(
        x_train, y_train, holdout_size)
  elif test_source == 'exact_first_1000':
    test_records = _read_cifar_records(test_path)
    x_test, y_test = _cifar_images(test_records), test_records[:, 0]
  else:
    x_test, y_test = _read_lossy_npz_cached(*_file_key(test_path))
    extra_info = {'test_note': _LOSSY_NOTE}
  return (x_train, y_train, x_test, y_test), extra_info


@functools.lru_cache(maxsize=1)
def _digits_arrays():
  """sklearn's 8x8 digits with the fixed split; grey levels 0..16."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  images = _frozen(digits.images.astype(np.uint8)[..., None])
  labels = _frozen(digits.target.astype(np.int64))
  cut = DIGITS_NUM_TRAIN
  return images[:cut], labels[:cut], images[cut:], labels[cut:]


def _tfds_arrays(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Loads one whole tfds split as uint8 NHWC images and integer labels."""
  # Imported here: tensorflow-datasets pulls in TensorFlow, slow to import.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  images, labels = tfds.as_numpy(tfds.load(
      name, split=split, as_supervised=True, batch_size=-1, download=True))
  return np.asarray(images, np.uint8), np.asarray(labels)


def _tfds_or_raise(dataset: str):
  """(x_train, y_train, x_test, y_test) from tfds, or a one-line error."""
  name = _TFDS_NAMES[dataset]
  try:
    x_train, y_train = _tfds_arrays(name, 'train')
    x_test, y_test = _tfds_arrays(name, 'test')
  except Exception as e:  # pylint: disable=broad-except
    reason = (str(e).strip().splitlines() or [''])[0][:200]
    raise AfterKernelError(
        f'could not load {dataset} through tensorflow-datasets '
        f'({name}; {type(e).__name__}: {reason}); pass --data_dir=DIR '
        f'(data_dir=DIR) to load offline, with {_LOCAL_HINTS[dataset]} '
        '(the layout of /work/shared/data)') from e
  return x_train, y_train, x_test, y_test


def _checked_data_dir(data_dir: str) -> str:
  """The absolute data_dir, which must be an existing folder."""
  data_dir = os.path.abspath(os.path.expanduser(data_dir))
  require(os.path.isdir(data_dir),
          f'data_dir {data_dir} does not exist or is not a folder; '
          f'{_LAYOUT_HINT}')
  return data_dir


def _cifar_half(labels: np.ndarray) -> np.ndarray:
  """CIFAR-10 class 0..9 -> 0 for classes 0-4, 1 for classes 5-9."""
  return (np.asarray(labels) >= 5).astype(np.int64)


def _parity(digits: np.ndarray) -> np.ndarray:
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
  return _frozen(x.astype(np.float32)), _frozen(classes)


def _synthetic_examples(num: int, seed: int,
                        split: str) -> tuple[np.ndarray, np.ndarray]:
  """Vyas et al.'s synthetic task: (x float32 (num, d), class (num,)).

  z uniform on {-1, 1}^d (d = SYNTHETIC_DIM), x = z + N(0, s^2 I) with
  s = SYNTHETIC_NOISE_STD, class 1 where z_1 z_2 = +1 and 0 where -1.
  """
  return _synthetic_examples_cached(int(num), int(seed), split,
                                    SYNTHETIC_DIM, float(SYNTHETIC_NOISE_STD))


@functools.lru_cache(maxsize=4)
def _read_svhn_mat_cached(path: str, size: int, mtime_ns: int):
  del size, mtime_ns  # Only part of the cache key.
  from scipy import io as scipy_io  # pylint: disable=g-import-not-at-top
  try:
    mat = scipy_io.loadmat(path, variable_names=('X', 'y'))
  except Exception as e:  # pylint: disable=broad-except
    # loadmat raises many types on a bad file (ValueError, TypeError, ...).
    reason = (str(e).strip().splitlines() or [''])[0][:200]
    raise AfterKernelError(
        f'malformed SVHN file {path}: {type(e).__name__}: {reason}; '
        f're-download it from {SVHN_URL}') from None
  missing = sorted({'X', 'y'} - set(mat))
  require(not missing, f'malformed SVHN file {path}: missing variables '
          f'{missing}; expected X (32, 32, 3, n) and y (n, 1)')
  x, y = mat['X'], np.asarray(mat['y']).reshape(-1)
  require(x.dtype == np.uint8 and x.ndim == 4 and x.shape[:3] == (32, 32, 3)
          and len(y) == x.shape[3],
          f'malformed SVHN file {path}: need X uint8 (32, 32, 3, n) and y '
          f'(n, 1), got X {x.dtype} {x.shape} and y {mat["y"].shape}')
  require(len(y) == 0 or (y.min() >= 1 and y.max() <= 10 and
                          np.all(y == np.round(y))),
          f'malformed SVHN file {path}: labels must be integers 1..10 '
          '(10 = digit 0)')
  images = np.ascontiguousarray(np.moveaxis(x, -1, 0))  # (n, 32, 32, 3).
  return _frozen(images), _frozen(y.astype(np.int64) % 10)


def _local_svhn(data_dir: str):
  """Reads SVHN's train / test .mat files: (x_train, digits, x_test, digits).

  Both files must exist; the error names every missing one.
  """
  paths = {split: os.path.join(data_dir, relative)
           for split, relative in SVHN_FILES.items()}
  missing = [p for p in paths.values() if not os.path.isfile(p)]
  require(not missing,
          f'missing SVHN file(s) {", ".join(missing)}; SVHN cannot be '
          'downloaded on this machine: copy train_32x32.mat and '
          f'test_32x32.mat (from {SVHN_URL}) into '
          f'{os.path.join(data_dir, "svhn")}, or leave data_dir unset to use '
          "tensorflow-datasets' svhn_cropped where it can download")
  x_train, y_train = _read_svhn_mat_cached(*_file_key(paths['train']))
  x_test, y_test = _read_svhn_mat_cached(*_file_key(paths['test']))
  return x_train, y_train, x_test, y_test


def _check_cifar5m_parts(train_parts, test_part) -> tuple[int, ...]:
  """Validates the CIFAR-5m part choice; returns the train parts as ints."""
  valid = range(CIFAR5M_NUM_PARTS)
  require(isinstance(train_parts, (list, tuple)) and len(train_parts) > 0 and
          all(_is_int(p) and p in valid for p in train_parts) and
          len(set(train_parts)) == len(train_parts),
          'cifar5m_train_parts must be a non-empty list of distinct part '
          f'numbers in [0, {CIFAR5M_NUM_PARTS}), got {train_parts!r}')
  require(_is_int(test_part) and test_part in valid,
          f'cifar5m_test_part must be a part number in [0, '
          f'{CIFAR5M_NUM_PARTS}), got {test_part!r}')
  require(test_part not in train_parts,
          f'cifar5m_test_part {test_part} is also a train part; pick a part '
          'outside cifar5m_train_parts')
  return tuple(int(p) for p in train_parts)


def _local_cifar5m(data_dir: str, train_parts: tuple[int, ...],
                   test_part: int, wanted: tuple[int, int], groups: bool,
                   max_train: int, max_test: int):
  """Reads the first examples of the `wanted` classes from CIFAR-5m parts.

  Args:
    data_dir: folder holding cifar5m/cifar5m_part<k>.npz.
    train_parts: parts read in order for train, until max_train are found.
    test_part: the part read for test.
    wanted: the two class ids kept (CIFAR-10 classes, or halves if groups).
    groups: map CIFAR-10 classes to halves (0-4 -> 0, 5-9 -> 1) first.
    max_train: at most this many train examples.
    max_test: at most this many test examples.

  Returns:
    (x_train, classes_train, x_test, classes_test), uint8 NHWC images.
  """
  paths = {p: os.path.join(data_dir, CIFAR5M_FILE.format(part=p))
           for p in train_parts + (test_part,)}
  missing = [path for path in paths.values() if not os.path.isfile(path)]
  require(not missing,
          f'missing CIFAR-5m file(s) {", ".join(missing)}; CIFAR-5m cannot be '
          'downloaded on this machine: copy the parts from Nakkiran et al.\'s '
          f'release ({CIFAR5M_URL}) into '
          f'{os.path.join(data_dir, os.path.dirname(CIFAR5M_FILE))}, or choose '
          'other cifar5m_train_parts / cifar5m_test_part')

  def read(parts, limit):
    images, classes = [], []
    for part in parts:
      if limit <= 0:
        break
      x, y = _read_cifar5m_part(paths[part], wanted, groups, limit)
      images.append(x)
      classes.append(y)
      limit -= len(y)
    return np.concatenate(images), np.concatenate(classes)

  x_train, y_train = read(train_parts, max_train)
  x_test, y_test = read((test_part,), max_test)
  return x_train, y_train, x_test, y_test


def _read_cifar5m_part(path: str, wanted: tuple[int, int], groups: bool,
                       limit: int) -> tuple[np.ndarray, np.ndarray]:
  """The first `limit` examples of the wanted classes in one CIFAR-5m part.

  Reads 'Y' whole (a few MB) and streams 'X' from the zip archive in chunks
  of `_CIFAR5M_CHUNK_ROWS` rows, stopping once `limit` are found: np.load
  would decompress a whole part (~3 GB) to read any row of it.
  """
  try:
    with zipfile.ZipFile(path) as archive:
      names = set(archive.namelist())
      missing = sorted({'X.npy', 'Y.npy'} - names)
      require(not missing, f'malformed CIFAR-5m file {path}: missing arrays '
              f'{[m[:-4] for m in missing]}; expected X (n, 32, 32, 3) uint8 '
              'and Y (n,)')
      with archive.open('Y.npy') as f:
        labels = np.lib.format.read_array(f, allow_pickle=False).reshape(-1)
      require(labels.dtype.kind in 'iu' and len(labels) > 0 and
              labels.min() >= 0 and labels.max() < 10,
              f'malformed CIFAR-5m file {path}: Y must hold integer labels in '
              f'[0, 10), got {labels.dtype} {labels.shape}')
      classes = _cifar_half(labels) if groups else labels.astype(np.int64)
      keep = np.flatnonzero(np.isin(classes, wanted))[:limit]
      with archive.open('X.npy') as f:
        version = np.lib.format.read_magic(f)
        require(version in ((1, 0), (2, 0)),
                f'malformed CIFAR-5m file {path}: X.npy has npy format '
                f'version {version}, expected 1.0 or 2.0')
        header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                  else np.lib.format.read_array_header_2_0)
        shape, fortran_order, dtype = header(f)
        require(dtype == np.uint8 and not fortran_order and
                tuple(shape[1:]) == (_CIFAR_SIDE, _CIFAR_SIDE, 3) and
                shape[0] == len(labels),
                f'malformed CIFAR-5m file {path}: need X uint8 C-order '
                f'({len(labels)}, 32, 32, 3), got {dtype} {shape}'
                f'{" Fortran-order" if fortran_order else ""}')
        row_bytes = _CIFAR_SIDE * _CIFAR_SIDE * 3
        images = np.empty((len(keep), _CIFAR_SIDE, _CIFAR_SIDE, 3), np.uint8)
        done, start = 0, 0
        while done < len(keep):
          rows = min(_CIFAR5M_CHUNK_ROWS, len(labels) - start)
          chunk = f.read(rows * row_bytes)
          require(len(chunk) == rows * row_bytes,
                  f'malformed CIFAR-5m file {path}: X.npy is truncated')
          chunk = np.frombuffer(chunk, np.uint8).reshape(
              rows, _CIFAR_SIDE, _CIFAR_SIDE, 3)
          here = keep[done:][keep[done:] < start + rows]
          images[done:done + len(here)] = chunk[here - start]
          done += len(here)
          start += rows
  except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
    if isinstance(e, AfterKernelError):
      raise
    reason = (str(e).strip().splitlines() or [''])[0][:200]
    raise AfterKernelError(f'malformed CIFAR-5m file {path}: '
                           f'{type(e).__name__}: {reason}') from None
  return images, classes[keep]
