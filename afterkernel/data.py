"""Binary classification tasks (plus class vs minus class) from image datasets.

The after-kernel experiments train networks on two-class problems such as
MNIST 3-vs-8, MNIST 5-vs-6 or CIFAR-10 cats(3)-vs-dogs(5). This module turns a
dataset name and two class ids into a `BinaryTask`: float32 NHWC images with
pixels in [0, 1] and float32 labels in {0, 1} (1 = plus class), together with a
JSON-serializable `info` dict that says where every array came from.

Sources, chosen by `load_binary_task`:
  * `data_dir` given: local files in the layout of /work/shared/data
    (see `MNIST_FILES`, `CIFAR_TRAIN_FILES`, `CIFAR_TEST_FILES`), read with
    gzip + numpy. Works offline.
  * `data_dir` None and dataset 'mnist' / 'cifar10': tensorflow-datasets
    (downloads if needed). If that fails, an `AfterKernelError` says how to use
    local files instead; there is never a silent fallback to other data.
  * dataset 'digits': scikit-learn's embedded copy of the UCI handwritten
    digits (8x8, 1797 images), so a task always exists without network or
    files.

Order is the source's original order; call `permute` (seeded) and then
`subsample` (first k) to draw reproducible subsets. Both record what they did
in `info`.
"""

import dataclasses
import functools
import gzip
import os
import struct
import zlib

import numpy as np

from afterkernel.errors import AfterKernelError
from afterkernel.errors import require

DATASETS = ('mnist', 'cifar10', 'digits')  # 'digits' is the embedded default.
NUM_CLASSES = {'mnist': 10, 'cifar10': 10, 'digits': 10}

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
# Rows of sklearn's load_digits: [0, 1200) train, [1200, 1797) test. A fixed
# split keeps every run comparable; ~2/3 train leaves ~60 test images a class.
DIGITS_NUM_TRAIN = 1200

_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_CIFAR_SIDE = 32
_CIFAR_RECORD_BYTES = 1 + 3 * _CIFAR_SIDE * _CIFAR_SIDE  # label + R, G, B.
_LAYOUT_HINT = (
    'expected layout: DIR/mnist/{train-images-idx3-ubyte.gz,'
    'train-labels-idx1-ubyte.gz,t10k-images-idx3-ubyte.gz,'
    't10k-labels-idx1-ubyte.gz} and DIR/cifar10/{data_batch_1..5.bin.gz,'
    'test_batch_first1000.bin.gz,test_jpeg_approx_yoongikim.npz}, '
    'as in /work/shared/data')
_TFDS_NAMES = {'mnist': 'mnist', 'cifar10': 'cifar10'}
_LOSSY_NOTE = ('lossy JPEG approximation of the official CIFAR-10 test images '
               '(~30 dB PSNR, class-major order); not exact pixels')


@dataclasses.dataclass(frozen=True, eq=False)
class BinaryTask:
  """A two-class image task: plus class -> label 1.0, minus class -> 0.0.

  Attributes:
    x_train: float32 (n_train, H, W, C), pixels in [0, 1].
    y_train: float32 (n_train,), 1.0 for the plus class, 0.0 for the minus.
    x_test: float32 (n_test, H, W, C), pixels in [0, 1].
    y_test: float32 (n_test,).
    info: JSON-serializable provenance: 'dataset', 'plus_class',
      'minus_class', 'source' ('tfds' | 'local:<abs dir>' |
      'embedded:sklearn-digits'), 'test_source', 'n_train', 'n_test',
      'image_shape', 'permutation_seed' (None until `permute`), and
      'transforms' (the `permute` / `subsample` calls, in order). CIFAR tasks
      read from lossy JPEGs carry 'test_note'.
  """
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  info: dict

  def __post_init__(self):
    for x, y, split in ((self.x_train, self.y_train, 'train'),
                        (self.x_test, self.y_test, 'test')):
      require(x.ndim == 4 and y.shape == (x.shape[0],),
              f'BinaryTask {split} arrays must be x (n, H, W, C) and y (n,), '
              f'got x {x.shape} and y {y.shape}')


def load_binary_task(
    dataset: str,
    plus_class: int,
    minus_class: int,
    data_dir: str | None = None,
    cifar_test_source: str = DEFAULT_CIFAR_TEST_SOURCE,
    holdout_size: int = DEFAULT_HOLDOUT_SIZE,
) -> BinaryTask:
  """Loads the `plus_class`-vs-`minus_class` task of `dataset`.

  Keeps only images of the two classes, in the source's original order, and
  labels them y = 1.0 if label == plus_class else 0.0. Pixels are uint8 / 255
  (MNIST, CIFAR-10) or grey level / 16 (digits), so they lie in [0, 1].

  Args:
    dataset: one of `DATASETS`. 'mnist' gives (n, 28, 28, 1) images,
      'cifar10' (n, 32, 32, 3), 'digits' (n, 8, 8, 1).
    plus_class: class id in [0, NUM_CLASSES[dataset]) labelled 1.0.
    minus_class: a different class id, labelled 0.0.
    data_dir: folder in the layout of /work/shared/data (DIR/mnist/...,
      DIR/cifar10/...); only the files the chosen test source needs must
      exist. None loads 'mnist' / 'cifar10' through tensorflow-datasets.
      Ignored for 'digits', which always comes from scikit-learn (recorded as
      info['source']).
    cifar_test_source: one of `CIFAR_TEST_SOURCES`; where the CIFAR-10 test
      set comes from (see the constant's comment). Ignored (and not recorded)
      for other datasets, but must still be a valid name. Through
      tensorflow-datasets, 'exact_first_1000' and 'lossy_full' both give the
      official full (exact) test split, recorded as 'official_test'.
    holdout_size: for 'train_holdout', how many of the last records of the
      concatenated CIFAR-10 train batches (before class filtering) become the
      test set; they are removed from train. Must be positive.

  Returns:
    The `BinaryTask`, unpermuted (info['permutation_seed'] is None).

  Raises:
    AfterKernelError: on an unknown dataset or test source, bad class ids,
      a non-positive holdout_size, a missing data_dir or file, a malformed
      file, tensorflow-datasets failing, or a class with no images in train
      or test.
  """
  require(dataset in DATASETS,
          f'unknown dataset {dataset!r}; valid datasets: {", ".join(DATASETS)}')
  num_classes = NUM_CLASSES[dataset]
  for name, value in (('plus_class', plus_class), ('minus_class', minus_class)):
    require(_is_int(value) and 0 <= value < num_classes,
            f'{name} must be an integer class id in [0, {num_classes}) for '
            f'{dataset}, got {value!r}')
  plus_class, minus_class = int(plus_class), int(minus_class)
  require(plus_class != minus_class,
          f'plus_class and minus_class must differ, both are {plus_class}')
  require(cifar_test_source in CIFAR_TEST_SOURCES,
          f'unknown cifar_test_source {cifar_test_source!r}; valid: '
          f'{", ".join(CIFAR_TEST_SOURCES)}')
  require(_is_int(holdout_size) and holdout_size > 0,
          f'holdout_size must be a positive integer, got {holdout_size!r}')

  extra_info = {}
  if dataset == 'digits':
    x_train, y_train, x_test, y_test = _digits_arrays()
    source = 'embedded:sklearn-digits'
    test_source = 'fixed_split_rows_1200_1797'
    scale = 16.0
  elif data_dir is not None:
    data_dir = os.path.abspath(os.path.expanduser(data_dir))
    require(os.path.isdir(data_dir),
            f'data_dir {data_dir} does not exist or is not a folder; '
            f'{_LAYOUT_HINT}')
    source, scale = f'local:{data_dir}', 255.0
    if dataset == 'mnist':
      x_train, y_train, x_test, y_test = _local_mnist(data_dir)
      test_source = 'official_test'
    else:
      (x_train, y_train, x_test, y_test), extra_info = _local_cifar(
          data_dir, cifar_test_source, holdout_size)
      test_source = cifar_test_source
  else:
    x_train, y_train, x_test, y_test = _tfds_or_raise(dataset)
    source, test_source, scale = 'tfds', 'official_test', 255.0
    if dataset == 'cifar10' and cifar_test_source == 'train_holdout':
      x_train, y_train, x_test, y_test, extra_info = _holdout(
          x_train, y_train, holdout_size)
      test_source = 'train_holdout'
    elif dataset == 'cifar10':
      extra_info = {'requested_test_source': cifar_test_source}

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
      'permutation_seed': None,
      'transforms': [],
  }
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
  try:
    x_train, y_train = _tfds_arrays(_TFDS_NAMES[dataset], 'train')
    x_test, y_test = _tfds_arrays(_TFDS_NAMES[dataset], 'test')
  except Exception as e:  # pylint: disable=broad-except
    reason = (str(e).strip().splitlines() or [''])[0][:200]
    raise AfterKernelError(
        f'could not load {dataset} through tensorflow-datasets '
        f'({type(e).__name__}: {reason}); pass --data_dir=DIR (data_dir=DIR) '
        f'to load offline, with DIR containing {dataset}/... in the layout of '
        '/work/shared/data (DIR/mnist/*-idx?-ubyte.gz, '
        'DIR/cifar10/data_batch_{1..5}.bin.gz, ...)') from e
  return x_train, y_train, x_test, y_test
