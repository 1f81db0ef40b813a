"""Readers of local dataset files, in the layout of /work/shared/data.

Works offline: gzip / numpy / scipy only, no network. Each reader checks the
file it reads and raises one `AfterKernelError` naming the file and what is
wrong (missing, truncated, bad header, labels out of range); the decoded
arrays are cached (keyed by path, size and mtime, so a rewritten file is
reread) and returned read-only, since callers share them.

  * MNIST (`read_mnist`): the four gzipped IDX files of `MNIST_FILES`.
  * CIFAR-10 (`read_cifar`): the five gzipped binary train batches
    (`CIFAR_TRAIN_FILES`) and a test source (`CIFAR_TEST_FILES`: the exact
    first 1000 test records, or all 10000 decoded from lossy JPEGs), or a
    hold-out of the train records (`holdout_split`).
  * SVHN (`read_svhn`): the cropped-digits MATLAB files of `SVHN_FILES`.
  * CIFAR-5m (`read_cifar5m`): npz parts streamed from their zip archive, so
    a 3 GB part is never decompressed whole.

Which dataset and classes a task uses is decided in `sources` and `tasks`;
this module only turns files into uint8 arrays and integer labels.
"""

import functools
import os
import struct
import zipfile
import zlib

import numpy as np

from afterkernel.errors import AfterKernelError
from afterkernel.errors import require

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
# Classes of CIFAR-10 (label bytes are 0..9).
CIFAR10_NUM_CLASSES = 10

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
_LOSSY_NOTE = ('lossy JPEG approximation of the official CIFAR-10 test images '
               '(~30 dB PSNR, class-major order); not exact pixels')


def holdout_split(x_train, y_train, holdout_size):
  """Moves the last `holdout_size` train records into a test set.

  Returns:
    (x_train, y_train, x_test, y_test, info) where info records the
    holdout size and the [first, end) record range moved.

  Raises:
    AfterKernelError: holdout_size is not smaller than the records.
  """
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


def frozen(array: np.ndarray) -> np.ndarray:
  """Marks `array` read-only and returns it."""
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
  return frozen(np.frombuffer(data, np.uint8, offset=offset).reshape(shape))


def read_idx(path: str) -> np.ndarray:
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
  require(int(records[:, 0].max()) < CIFAR10_NUM_CLASSES,
          f'malformed CIFAR-10 binary file {path}: label byte '
          f'{int(records[:, 0].max())} is not in [0, 10)')
  return frozen(records)


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
  require(y.dtype.kind in 'iu', f'malformed npz {path}: y_test must hold '
          f'integer labels, got {y.dtype}')
  _require_labels(y, CIFAR10_NUM_CLASSES, path, 'npz')
  return frozen(x), frozen(y)


MNIST_NUM_CLASSES = 10


def _require_labels(labels: np.ndarray, num_classes: int, path: str,
                    kind: str) -> None:
  """Labels outside [0, num_classes) are an error naming file and count.

  Silently dropping such rows would change the task's size (and so every
  number) without a word.
  """
  labels = np.asarray(labels)
  bad = (labels < 0) | (labels >= num_classes)
  count = int(np.count_nonzero(bad))
  require(count == 0, f'malformed {kind} file {path}: {count} label(s) '
          f'outside 0..{num_classes - 1} (e.g. {labels[bad][:3].tolist()})')


def read_mnist(data_dir: str):
  """Reads the four MNIST IDX files: (x_train, y_train, x_test, y_test)."""
  paths = {k: _required_file(data_dir, v) for k, v in MNIST_FILES.items()}
  arrays = {k: read_idx(p) for k, p in paths.items()}
  for split in ('train', 'test'):
    images, labels = arrays[f'{split}_images'], arrays[f'{split}_labels']
    require(images.ndim == 3 and labels.ndim == 1 and
            len(images) == len(labels),
            f'MNIST {split} files do not match: images {images.shape} in '
            f'{paths[split + "_images"]}, labels {labels.shape} in '
            f'{paths[split + "_labels"]}')
    _require_labels(labels, MNIST_NUM_CLASSES, paths[split + '_labels'],
                    'MNIST IDX')
  return (arrays['train_images'][..., None], arrays['train_labels'],
          arrays['test_images'][..., None], arrays['test_labels'])


def read_cifar(data_dir: str, test_source: str, holdout_size: int):
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
    x_train, y_train, x_test, y_test, extra_info = holdout_split(
        x_train, y_train, holdout_size)
  elif test_source == 'exact_first_1000':
    test_records = _read_cifar_records(test_path)
    x_test, y_test = _cifar_images(test_records), test_records[:, 0]
  else:
    x_test, y_test = _read_lossy_npz_cached(*_file_key(test_path))
    extra_info = {'test_note': _LOSSY_NOTE}
  return (x_train, y_train, x_test, y_test), extra_info


def checked_data_dir(data_dir: str) -> str:
  """The absolute data_dir, which must be an existing folder."""
  data_dir = os.path.abspath(os.path.expanduser(data_dir))
  require(os.path.isdir(data_dir),
          f'data_dir {data_dir} does not exist or is not a folder; '
          f'{_LAYOUT_HINT}')
  return data_dir


def cifar_half(labels: np.ndarray) -> np.ndarray:
  """CIFAR-10 class 0..9 -> 0 for classes 0-4, 1 for classes 5-9."""
  return (np.asarray(labels) >= 5).astype(np.int64)


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
  return frozen(images), frozen(y.astype(np.int64) % 10)


def read_svhn(data_dir: str):
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


def read_cifar5m(data_dir: str, train_parts: tuple[int, ...],
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
      classes = cifar_half(labels) if groups else labels.astype(np.int64)
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
