r"""Kernel rotation during training (issue 6, experiment 6).

Trains a small network on a binary task and, at checkpoint epochs, measures
its empirical NTK on the training inputs: the label energy on the top-K
eigenvectors ||U_K^T y|| / ||y|| for a list of K, the alignment
|<u_j(0), u_j(t)>| of each of the first eigenvectors with its value at
initialization, and the share s_j = u_j(0)^T K_t u_j(0) / trace(K_t) of the
current kernel's energy along each of the first initial eigenvectors (see
afterkernel/kernel_rotation.py).

Offline smoke run (embedded 8x8 digits, seconds):

  python -m binaries.kernel_rotation --preset=tiny --output_dir=/tmp/rot_tiny

MNIST 3-vs-8 at CPU scale (4 x 94 FC net, 2000 training inputs, 30 epochs,
7 checkpoints, 3 initializations; see the README for the measured time):

  python -m binaries.kernel_rotation --preset=cpu --data_dir=../shared/data \
      --output_dir=results/kernel_rotation_mnist

Every preset field can be overridden by its flag (e.g. --num_runs=1
--checkpoint_epochs=0,1,5). Prints one line per checkpoint epoch (means over
runs): E_K for each K, a_1..a_5, the top-J subspace overlap, s_1..s_3 and
their top-J sum S_J, lambda_1, the alignment of K_t with K_0 and with y y^T,
the test error and training loss. Writes config.json, records/*.json (one
per epoch and run), summary.json, summary.csv and kernel_rotation.{png,pdf}
to --output_dir; re-running resumes (finished runs are skipped).
"""

import dataclasses
import os
import sys

# Keep TensorFlow's C++ start-up chatter out of the results printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from afterkernel import errors
from afterkernel import kernel_rotation

_PRESET = flags.DEFINE_string(
    'preset', 'tiny', 'Base configuration: ' +
    ', '.join(kernel_rotation.PRESETS) + ' (tiny: offline digits, seconds; '
    'cpu: MNIST 3-vs-8, needs --data_dir).')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Result folder.')
_DATA_DIR = flags.DEFINE_string(
    'data_dir', None, 'Folder with mnist/*-ubyte.gz (and cifar10/...); '
    'unset = tensorflow-datasets.')
# Overrides of preset fields (unset = the preset's value).
_DATASET = flags.DEFINE_string('dataset', None, 'mnist, cifar10 or digits.')
_PLUS_CLASS = flags.DEFINE_integer('plus_class', None, 'Class labelled 1.')
_MINUS_CLASS = flags.DEFINE_integer('minus_class', None, 'Class labelled 0.')
_NUM_TRAIN = flags.DEFINE_integer('num_train', None, 'Training examples.')
_NUM_TEST = flags.DEFINE_integer('num_test', None, 'Test examples.')
_NUM_KERNEL_EXAMPLES = flags.DEFINE_integer(
    'num_kernel_examples', None,
    'Training inputs the Gram is measured on (the first ones).')
_ARCHITECTURE = flags.DEFINE_string('architecture', None,
                                    'fully_connected or vgg.')
_WIDTH = flags.DEFINE_integer('width', None,
                              'Hidden units (FC) or first-block channels.')
_NUM_LAYERS = flags.DEFINE_integer(
    'num_layers', None, 'Hidden layers (FC) or convolutions per block.')
_CHECKPOINT_EPOCHS = flags.DEFINE_list(
    'checkpoint_epochs', None, 'Epochs at which the kernel is measured '
    '(must include 0).')
_LEARNING_RATE = flags.DEFINE_float('learning_rate', None,
                                    'SGD learning rate.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', None, 'Minibatch size.')
_ENERGY_KS = flags.DEFINE_list('energy_ks', None,
                               'K values of the label energies E_K.')
_NUM_EIGENFUNCTIONS = flags.DEFINE_integer(
    'num_eigenfunctions', None, 'Eigenvectors whose alignment is tracked.')
_NUM_RUNS = flags.DEFINE_integer('num_runs', None, 'Initializations.')
_SEED = flags.DEFINE_integer('seed', None, 'First seed.')


def _int_list(holder) -> tuple:
  try:
    return tuple(int(v) for v in holder.value)
  except ValueError:
    raise errors.AfterKernelError(
        f'--{holder.name} must be a comma-separated list of integers, got '
        f'{",".join(holder.value)}') from None


def config_from_flags() -> kernel_rotation.RotationConfig:
  """The preset named by --preset with the given flags overriding it."""
  errors.require(_PRESET.value in kernel_rotation.PRESETS,
                 f'unknown --preset {_PRESET.value!r}; choose one of '
                 f'{", ".join(kernel_rotation.PRESETS)}')
  overrides = {}
  for holder in (_DATA_DIR, _DATASET, _PLUS_CLASS, _MINUS_CLASS, _NUM_TRAIN,
                 _NUM_TEST, _NUM_KERNEL_EXAMPLES, _ARCHITECTURE, _WIDTH,
                 _NUM_LAYERS, _LEARNING_RATE, _BATCH_SIZE,
                 _NUM_EIGENFUNCTIONS, _NUM_RUNS, _SEED):
    if holder.value is not None:
      overrides[holder.name] = holder.value
  for holder in (_CHECKPOINT_EPOCHS, _ENERGY_KS):
    if holder.value is not None:
      overrides[holder.name] = _int_list(holder)
  config = dataclasses.replace(kernel_rotation.PRESETS[_PRESET.value],
                               **overrides)
  config.validate()
  return config


def main(argv):
  try:
    errors.require(len(argv) <= 1,
                   f'unexpected arguments: {" ".join(argv[1:])}')
    errors.require(bool(_OUTPUT_DIR.value),
                   '--output_dir is required: where results are written')
    config = config_from_flags()
    entries = kernel_rotation.run_study(config, _OUTPUT_DIR.value,
                                        log=lambda m: print(m, flush=True))
  except errors.AfterKernelError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print()
  print(kernel_rotation.format_table(entries, config))
  print(f'\nresults and {kernel_rotation.FIGURE_NAME}.png in '
        f'{os.path.abspath(_OUTPUT_DIR.value)}')
  return 0


if __name__ == '__main__':
  app.run(main)
