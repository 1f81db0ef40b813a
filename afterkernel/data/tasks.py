"""Tasks made from a dataset, and the transforms every study applies to them.

A `BinaryTask` is a two-class problem, plus class vs minus class, as the
after-kernel experiments use (MNIST 3-vs-8, MNIST 5-vs-6, CIFAR-10
cats(3)-vs-dogs(5)) and the kernel-scaling studies (Vyas et al. 2022,
"Limitations of the NTK for understanding generalization in deep learning")
extend with a synthetic task, SVHN parity, CIFAR2 and CIFAR-5m (datasets and
their sources: `sources`). `load_binary_task` turns a dataset name and two
class ids into float32 inputs (NHWC images with pixels in [0, 1] as loaded,
or vectors for 'synthetic') and float32 labels in {0, 1} (1 = plus class),
together with a JSON-serializable `info` dict that says where every array
came from.

Transforms, each recorded in `info['transforms']`:
  * `permute` (seeded) and then `subsample` (first k): reproducible subsets.
  * `standardize`: centre every feature and scale by one global std, with
    training statistics.
  * `signed_labels`: {0, 1} -> {-1, +1}, the targets of kernel regression,
    margins and alignments; the one place that conversion is written.
The ten-class tasks of the linearization studies are `multiclass`.
"""

import dataclasses
from typing import Sequence

import numpy as np

from afterkernel.data import sources
from afterkernel.errors import require


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
    cifar_test_source: str = sources.DEFAULT_CIFAR_TEST_SOURCE,
    holdout_size: int = sources.DEFAULT_HOLDOUT_SIZE,
    *,
    num_train: int | None = None,
    num_test: int | None = None,
    synthetic_seed: int = sources.DEFAULT_SYNTHETIC_SEED,
    cifar5m_train_parts: Sequence[int] = sources.DEFAULT_CIFAR5M_TRAIN_PARTS,
    cifar5m_test_part: int = sources.DEFAULT_CIFAR5M_TEST_PART,
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
  require(dataset in sources.DATASETS,
          f'unknown dataset {dataset!r}; valid datasets: '
          f'{", ".join(sources.DATASETS)}')
  num_classes = sources.NUM_CLASSES[dataset]
  meaning = ''
  if dataset in sources.CLASS_GROUPS:
    meaning = ' (' + ', '.join(f'{i} = {m}' for i, m in
                               enumerate(sources.CLASS_GROUPS[dataset])) + ')'
  for name, value in (('plus_class', plus_class), ('minus_class', minus_class)):
    require(sources.is_int(value) and 0 <= value < num_classes,
            f'{name} must be an integer class id in [0, {num_classes}) for '
            f'{dataset}{meaning}, got {value!r}')
  plus_class, minus_class = int(plus_class), int(minus_class)
  require(plus_class != minus_class,
          f'plus_class and minus_class must differ, both are {plus_class}')
  require(cifar_test_source in sources.CIFAR_TEST_SOURCES,
          f'unknown cifar_test_source {cifar_test_source!r}; valid: '
          f'{", ".join(sources.CIFAR_TEST_SOURCES)}')
  require(sources.is_int(holdout_size) and holdout_size > 0,
          f'holdout_size must be a positive integer, got {holdout_size!r}')
  for name, value in (('num_train', num_train), ('num_test', num_test)):
    require(value is None or (sources.is_int(value) and value > 0),
            f'{name} must be a positive integer or None, got {value!r}')
    require(value is None or dataset in sources.DEFAULT_SIZES,
            f'{name} applies only to {", ".join(sources.DEFAULT_SIZES)} '
            f'(generated or read in part); for {dataset} leave it None and use '
            'permute + subsample')
  require(sources.is_int(synthetic_seed) and synthetic_seed >= 0,
          f'synthetic_seed must be a non-negative integer, got '
          f'{synthetic_seed!r}')
  train_parts = sources.check_cifar5m_parts(cifar5m_train_parts,
                                            cifar5m_test_part)
  if dataset in sources.DEFAULT_SIZES:
    default_train, default_test = sources.DEFAULT_SIZES[dataset]
    num_train = default_train if num_train is None else int(num_train)
    num_test = default_test if num_test is None else int(num_test)

  arrays = sources.load_arrays(
      dataset, (plus_class, minus_class), data_dir, cifar_test_source,
      holdout_size, num_train, num_test, synthetic_seed, train_parts,
      int(cifar5m_test_part))
  source, test_source = arrays.source, arrays.test_source
  x_train, y_train = _select(arrays.x_train, arrays.labels_train, plus_class,
                             minus_class, arrays.scale)
  x_test, y_test = _select(arrays.x_test, arrays.labels_test, plus_class,
                           minus_class, arrays.scale)
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
      'input_kind': ('vector' if dataset in sources.VECTOR_DATASETS
                     else 'image'),
      'permutation_seed': None,
      'transforms': [],
  }
  if dataset in sources.CLASS_GROUPS:
    info['plus_meaning'] = sources.CLASS_GROUPS[dataset][plus_class]
    info['minus_meaning'] = sources.CLASS_GROUPS[dataset][minus_class]
  info.update(arrays.extra_info)
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
  require(sources.is_int(seed) and seed >= 0,
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
    require(sources.is_int(k) and k > 0,
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
