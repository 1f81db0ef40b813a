r"""NTK eigenfunction tasks (issue 6, experiment 5; Ortiz-Jimenez et al. 2021).

Labels inputs with sign(phi_j(x)) for the j-th eigenfunction of the network's
empirical NTK Gram at initialization (Nystroem extension to test inputs),
trains the network and its linearization on each task with the same SGD,
and prints test accuracy vs j (plain and balanced, with the test
majority-class rate; one-class tasks are flagged ONE-CLASS) with the target
alignment ||E[y grad f]||^2 at init. and after training (see
afterkernel/eigentasks.py). Inputs are standardized with the training
statistics unless --nostandardize_inputs.

Offline smoke run (embedded 8x8 digits, seconds):

  python -m binaries.eigenfunction_tasks --preset=tiny \
      --output_dir=/tmp/eigentasks_tiny

MNIST 3-vs-8 inputs at CPU scale (FC 2 x 256, 1000 train / 1000 test
inputs, j in 1..200, 20 epochs per model and task, 2 initializations; see
the README for the measured time):

  python -m binaries.eigenfunction_tasks --preset=cpu \
      --data_dir=../shared/data --output_dir=results/eigentasks_mnist

Every preset field can be overridden by its flag (e.g. --eigen_indices=1,10
--num_runs=1). Writes config.json, records/*.json (one per task and run),
summary.json, summary.csv and eigentask_accuracy.{png,pdf} to --output_dir;
re-running resumes (finished tasks are skipped).
"""

import dataclasses
import os
import sys

# Keep TensorFlow's C++ start-up chatter out of the results printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from afterkernel import eigentasks
from afterkernel import errors

_PRESET = flags.DEFINE_string(
    'preset', 'tiny', 'Base configuration: ' + ', '.join(eigentasks.PRESETS) +
    ' (tiny: offline digits, seconds; cpu: MNIST 3-vs-8, needs --data_dir).')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Result folder.')
_DATA_DIR = flags.DEFINE_string(
    'data_dir', None, 'Folder with mnist/*-ubyte.gz (and cifar10/...); '
    'unset = tensorflow-datasets.')
# Overrides of preset fields (unset = the preset's value).
_DATASET = flags.DEFINE_string('dataset', None,
                               'Inputs from mnist, cifar10 or digits.')
_PLUS_CLASS = flags.DEFINE_integer('plus_class', None,
                                   'One class whose images are used.')
_MINUS_CLASS = flags.DEFINE_integer('minus_class', None,
                                    'The other class whose images are used.')
_NUM_TRAIN = flags.DEFINE_integer(
    'num_train', None, 'Training inputs n (the Gram is n x n).')
_NUM_TEST = flags.DEFINE_integer('num_test', None, 'Test inputs.')
_STANDARDIZE_INPUTS = flags.DEFINE_boolean(
    'standardize_inputs', None, 'Center each input feature on its training '
    'mean and divide by the global training std (presets: on).')
_ARCHITECTURE = flags.DEFINE_string('architecture', None,
                                    'fully_connected or vgg.')
_WIDTH = flags.DEFINE_integer('width', None,
                              'Hidden units (FC) or first-block channels.')
_NUM_LAYERS = flags.DEFINE_integer(
    'num_layers', None, 'Hidden layers (FC) or convolutions per block.')
_EIGEN_INDICES = flags.DEFINE_list(
    'eigen_indices', None, '1-based eigenfunction indices j (1 = top).')
_EPOCHS = flags.DEFINE_integer('epochs', None, 'Epochs per model and task.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', None, 'Minibatch size.')
_LEARNING_RATE = flags.DEFINE_float('learning_rate', None,
                                    'SGD learning rate.')
_MOMENTUM = flags.DEFINE_float('momentum', None, 'SGD momentum.')
_LOSS = flags.DEFINE_string('loss', None,
                            'bce (logistic, 0/1 targets) or mse (+-1).')
_NUM_RUNS = flags.DEFINE_integer('num_runs', None, 'Initializations.')
_SEED = flags.DEFINE_integer('seed', None, 'First seed.')


def config_from_flags() -> eigentasks.EigentaskConfig:
  """The preset named by --preset with the given flags overriding it."""
  errors.require(_PRESET.value in eigentasks.PRESETS,
                 f'unknown --preset {_PRESET.value!r}; choose one of '
                 f'{", ".join(eigentasks.PRESETS)}')
  overrides = {}
  for holder in (_DATA_DIR, _DATASET, _PLUS_CLASS, _MINUS_CLASS, _NUM_TRAIN,
                 _NUM_TEST, _STANDARDIZE_INPUTS, _ARCHITECTURE, _WIDTH, _NUM_LAYERS, _EPOCHS,
                 _BATCH_SIZE, _LEARNING_RATE, _MOMENTUM, _LOSS, _NUM_RUNS,
                 _SEED):
    if holder.value is not None:
      overrides[holder.name] = holder.value
  if _EIGEN_INDICES.value is not None:
    try:
      overrides['eigen_indices'] = tuple(int(v) for v in _EIGEN_INDICES.value)
    except ValueError:
      raise errors.AfterKernelError(
          '--eigen_indices must be a comma-separated list of integers, got '
          f'{",".join(_EIGEN_INDICES.value)}') from None
  config = dataclasses.replace(eigentasks.PRESETS[_PRESET.value], **overrides)
  config.validate()
  return config


def main(argv):
  try:
    errors.require(len(argv) <= 1,
                   f'unexpected arguments: {" ".join(argv[1:])}')
    errors.require(bool(_OUTPUT_DIR.value),
                   '--output_dir is required: where results are written')
    config = config_from_flags()
    entries = eigentasks.run_study(config, _OUTPUT_DIR.value,
                                   log=lambda m: print(m, flush=True))
  except errors.AfterKernelError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print()
  print(eigentasks.format_table(entries))
  print('(means over runs; accuracies on sign(phi_j) test labels, "bal" = '
        'mean per-class recall, "maj test" = majority-class rate; alpha = '
        '||E[y grad f]||^2, A = y^T K y / (||K||_F ||y||^2); ONE-CLASS k/n: '
        'in k of n runs the task had one class, its accuracy is meaningless)')
  print(f'\nresults and {eigentasks.FIGURE_NAME}.png in '
        f'{os.path.abspath(_OUTPUT_DIR.value)}')
  return 0


if __name__ == '__main__':
  app.run(main)
