"""Flags shared by the sweep binaries, and their translation into a `Sweep`.

Imported by `sweep_epochs`, `sweep_learning_rate` and `sweep_width` (each
adds its family's flags). Not a program itself. The flag names are those of
`run_after_kernel` where they mean the same thing, so the two programs are
never imported into one process (absl refuses to define a flag twice); the
tests run the binaries as subprocesses, as a user does.
"""

import os
import sys
from typing import Any, Callable, Dict

from absl import flags

from afterkernel import data
from afterkernel import errors
from afterkernel.studies import after_kernel
from afterkernel import margin
from afterkernel.studies import store as store_lib
from afterkernel.studies import sweeps

_DEFAULTS = after_kernel.ExperimentConfig()
_TRUE = ('true', 't', '1', 'yes', 'y', 'on')
_FALSE = ('false', 'f', '0', 'no', 'n', 'off')
# The paper measured invariances and alignment on 1000 test images.
PAPER_SAMPLE_SIZE = 1000

STORE_DIR = flags.DEFINE_string(
    'store_dir', None,
    'Result store: one JSON file per record under STORE/records; re-running '
    'the same command resumes. summary.csv / summary.json are written here.')
flags.mark_flag_as_required('store_dir')
TASKS = flags.DEFINE_list(
    'tasks', ['mnist_3v8'],
    'Tasks DATASET_<minus>v<plus>: paper: mnist_3v8, mnist_5v6, cifar10_3v5 '
    '(cats vs dogs); digits_3v8 runs offline on the embedded digits.')
ARCHITECTURES = flags.DEFINE_list(
    'architectures', list(sweeps.PAPER_ARCHITECTURES),
    'Networks: vgg, mega_vgg, fully_connected.')
AUGMENTATION = flags.DEFINE_list(
    'augmentation', ['false'],
    'Augmentation settings to run: false, true, or false,true for both '
    '(rotations up to 15 degrees and 1-pixel shifts).')
EPOCHS = flags.DEFINE_list(
    'epochs', [str(e) for e in sweeps.PAPER_EPOCHS],
    'Checkpoints (epochs) of the epochs and width sweeps, measured along one '
    'training trajectory per run.')
DATA_DIR = flags.DEFINE_string(
    'data_dir', None,
    'Folder with local MNIST / CIFAR-10 copies (see README); unset: '
    'tensorflow-datasets.')
CIFAR_TEST_SOURCE = flags.DEFINE_enum(
    'cifar_test_source', _DEFAULTS.cifar_test_source,
    list(data.CIFAR_TEST_SOURCES), 'CIFAR-10 test images from --data_dir.')
TRAIN_SUBSET = flags.DEFINE_integer(
    'train_subset', None, 'CPU shrink: use this many (permuted) training '
    'examples; recorded in every record.')
TEST_SUBSET = flags.DEFINE_integer(
    'test_subset', None, 'CPU shrink: use this many (permuted) test examples.')
NUM_RUNS = flags.DEFINE_integer(
    'num_runs', sweeps.PAPER_NUM_RUNS,
    'Runs per point (seeds seed, seed+1, ...); raising it later extends the '
    'store.')
SEED = flags.DEFINE_integer('seed', _DEFAULTS.seed, 'Run r uses seed + r.')
BATCH_SIZE = flags.DEFINE_integer('batch_size', _DEFAULTS.batch_size,
                                  'SGD minibatch size.')
NUM_TRANSLATIONS = flags.DEFINE_integer(
    'num_translations', PAPER_SAMPLE_SIZE,
    'Test images for translation invariance (0: skip).')
NUM_ZOOMS = flags.DEFINE_integer('num_zooms', PAPER_SAMPLE_SIZE,
                                 'Test images for zoom invariance.')
NUM_SWAPS = flags.DEFINE_integer('num_swaps', PAPER_SAMPLE_SIZE,
                                 'Test images for swap invariance.')
NUM_ROTATIONS = flags.DEFINE_integer('num_rotations', PAPER_SAMPLE_SIZE,
                                     'Test images for rotation invariance.')
KER_ALIGNMENT_SAMPLE_SIZE = flags.DEFINE_integer(
    'ker_alignment_sample_size', PAPER_SAMPLE_SIZE,
    'Test images for the alignment with the conjugate projection.')
EFFECTIVE_RANK_SAMPLE_SIZE = flags.DEFINE_integer(
    'effective_rank_sample_size', _DEFAULTS.effective_rank_sample_size,
    'Training images for the effective ranks (0: skip).')
SVM_SOLVER = flags.DEFINE_enum('svm_solver', _DEFAULTS.svm_solver,
                               list(margin.SOLVERS),
                               'Max-margin solver of the kernel SVM.')
SVM_MAX_ITERATIONS = flags.DEFINE_integer(
    'svm_max_iterations', None, 'Iteration budget of the SVM solver.')
SVM_TOLERANCE = flags.DEFINE_float(
    'svm_tolerance', _DEFAULTS.svm_tolerance,
    'Stop the SVM at this relative duality gap.')
SVM_MAX_SECONDS = flags.DEFINE_float(
    'svm_max_seconds', None, 'Optional wall-clock cap of one SVM solve.')
FEATURE_BATCH_SIZE = flags.DEFINE_integer(
    'feature_batch_size', _DEFAULTS.feature_batch_size,
    'Examples per gradient-feature block.')


def parse_bool_list(values) -> tuple:
  """['false', 'true'] -> (False, True); raises AfterKernelError otherwise."""
  parsed = []
  for value in values:
    text = str(value).strip().lower()
    errors.require(text in _TRUE + _FALSE,
                   f'--augmentation takes true/false values, got {value!r}')
    parsed.append(text in _TRUE)
  return tuple(dict.fromkeys(parsed))


def parse_int_list(values, name: str) -> tuple:
  """['0', '1', '3'] -> (0, 1, 3); raises AfterKernelError otherwise."""
  try:
    return tuple(int(v) for v in values)
  except ValueError:
    raise errors.AfterKernelError(
        f'--{name} takes integers, got {",".join(values)}') from None


def parse_float_list(values, name: str) -> tuple:
  """['0.01', '0.1'] -> (0.01, 0.1); raises AfterKernelError otherwise."""
  try:
    return tuple(float(v) for v in values)
  except ValueError:
    raise errors.AfterKernelError(
        f'--{name} takes numbers, got {",".join(values)}') from None


def base_config(**changes: Any) -> after_kernel.ExperimentConfig:
  """The settings shared by all points, from the common flags + `changes`."""
  fields: Dict[str, Any] = dict(
      data_dir=DATA_DIR.value, cifar_test_source=CIFAR_TEST_SOURCE.value,
      train_subset=TRAIN_SUBSET.value, test_subset=TEST_SUBSET.value,
      num_runs=NUM_RUNS.value, seed=SEED.value, batch_size=BATCH_SIZE.value,
      num_translations=NUM_TRANSLATIONS.value, num_zooms=NUM_ZOOMS.value,
      num_swaps=NUM_SWAPS.value, num_rotations=NUM_ROTATIONS.value,
      ker_alignment_sample_size=KER_ALIGNMENT_SAMPLE_SIZE.value,
      effective_rank_sample_size=EFFECTIVE_RANK_SAMPLE_SIZE.value,
      svm_solver=SVM_SOLVER.value,
      svm_max_iterations=SVM_MAX_ITERATIONS.value,
      svm_tolerance=SVM_TOLERANCE.value,
      svm_max_seconds=SVM_MAX_SECONDS.value,
      feature_batch_size=FEATURE_BATCH_SIZE.value)
  fields.update(changes)
  return after_kernel.ExperimentConfig(**fields)


def sweep_from_flags(family: str, base: after_kernel.ExperimentConfig,
                     **fields: Any) -> sweeps.Sweep:
  """A `Sweep` of `family` from the common flags, `base` and `fields`."""
  if family in ('epochs', 'width'):
    fields.setdefault('epochs', parse_int_list(EPOCHS.value, 'epochs'))
  return sweeps.Sweep(
      family=family, base=base, tasks=tuple(TASKS.value),
      architectures=tuple(ARCHITECTURES.value),
      augmentation=parse_bool_list(AUGMENTATION.value), **fields)


def run(build_sweep: Callable[[], sweeps.Sweep]) -> int:
  """Builds and runs the sweep into --store_dir, summarizes, prints a table.

  Args:
    build_sweep: makes the `Sweep` from the flags; called here so that a bad
      flag value is reported like any other input error.

  Returns:
    The process exit code: 0, or 2 after printing a one-line error.
  """
  log = lambda message: print(message, flush=True)
  try:
    sweep = build_sweep()
    store = store_lib.ResultStore(STORE_DIR.value)
    counts = sweeps.run_sweep(sweep, store, log=log)
    entries = store_lib.summarize(
        [r for r in store.records() if r.get('family') == sweep.family])
    store_lib.write_summary(STORE_DIR.value,
                            store_lib.summarize(store.records()))
  except errors.AfterKernelError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print()
  print(store_lib.format_summary(entries))
  print(f'\n{counts["written"]} records written, {counts["skipped"]} already '
        f'there, {counts["total"]} in this sweep; store: '
        f'{os.path.abspath(STORE_DIR.value)}')
  return 0
