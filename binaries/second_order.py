r"""Second-order Taylor models vs the network (issue 6, experiment 4).

Trains, from one initialization theta_0 and with the same SGD (momentum),
loss and batch order: the network, its linearization f0 + J delta, and the
quadratic models H_full = f0 + J delta + 1/2 delta^T H delta and H_only =
f0 + 1/2 delta^T H delta (Vyas et al. 2022; see afterkernel/taylor.py for
our reading of the two variants). delta^T H delta comes from nested
forward-mode JVPs; H is never formed. Prints test error of each model.

Offline smoke run (embedded 8x8 digits 8-vs-3, FC 2 x 32, seconds):

  python -m binaries.second_order --preset=tiny --output_dir=/tmp/so_tiny

MNIST 3-vs-8 at CPU scale (2000 train / 1000 test, FC 2 x 128, 20 epochs,
2 runs; see the README for the measured time):

  python -m binaries.second_order --preset=cpu --data_dir=../shared/data \
      --output_dir=results/second_order_mnist

Vyas et al.'s synthetic task y = z_1 z_2 (no files needed):

  python -m binaries.second_order --preset=cpu_synthetic \
      --output_dir=results/second_order_synthetic

Every preset field can be overridden by its flag (e.g. --epochs=5
--model_kinds=network,h_full). Writes config.json, records/*.json (one per
model and run), summary.json, summary.csv and
second_order_test_error.{png,pdf} to --output_dir; re-running resumes.
Bad flags print one line `error: ...` and exit with status 2.
"""

import dataclasses
import os
import sys

# Keep TensorFlow's C++ start-up chatter out of the results printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from afterkernel import errors
from afterkernel import taylor

FLAGS = flags.FLAGS
_PRESET = flags.DEFINE_string(
    'preset', 'tiny', 'Base configuration: ' + ', '.join(taylor.PRESETS) +
    ' (tiny: offline digits, seconds; cpu: MNIST 3-vs-8, needs --data_dir; '
    'cpu_synthetic: Vyas et al.\'s synthetic task).')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Result folder.')
_DATA_DIR = flags.DEFINE_string(
    'data_dir', None, 'Folder with mnist/*-ubyte.gz (and cifar10/...); '
    'unset = tensorflow-datasets.')
# Overrides of preset fields (unset = the preset's value).
_DATASET = flags.DEFINE_string('dataset', None,
                               'mnist, cifar10, digits, synthetic, ...')
_PLUS_CLASS = flags.DEFINE_integer('plus_class', None, 'Class labelled 1.')
_MINUS_CLASS = flags.DEFINE_integer('minus_class', None, 'Class labelled 0.')
_NUM_TRAIN = flags.DEFINE_integer('num_train', None, 'Training examples.')
_NUM_TEST = flags.DEFINE_integer('num_test', None, 'Test examples.')
_ARCHITECTURE = flags.DEFINE_string('architecture', None,
                                    'fully_connected or vgg.')
_WIDTH = flags.DEFINE_integer('width', None,
                              'Hidden units (FC) or first-block channels.')
_NUM_LAYERS = flags.DEFINE_integer(
    'num_layers', None, 'Hidden layers (FC) or convolutions per block.')
_MODEL_KINDS = flags.DEFINE_list(
    'model_kinds', None, 'Models to train: ' + ','.join(taylor.MODEL_KINDS))
_EPOCHS = flags.DEFINE_integer('epochs', None, 'Epochs per model.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', None, 'Minibatch size.')
_LEARNING_RATE = flags.DEFINE_float('learning_rate', None,
                                    'SGD learning rate.')
_MOMENTUM = flags.DEFINE_float('momentum', None, 'SGD momentum.')
_LOSS = flags.DEFINE_string('loss', None,
                            'mse (+-1 targets, Vyas et al.) or bce.')
_H_FULL_UNBIASED = flags.DEFINE_boolean(
    'h_full_unbiased', None, 'Drop f(theta_0, x) from H_full.')
_H_ONLY_UNBIASED = flags.DEFINE_boolean(
    'h_only_unbiased', None,
    'Drop f(theta_0, x) from H_only (Bai and Lee\'s 1/2 delta^T H delta).')
_H_ONLY_DELTA_INIT_SCALE = flags.DEFINE_float(
    'h_only_delta_init_scale', None,
    'Relative size of H_only\'s random starting delta (its gradient is 0 at '
    'delta = 0).')
_NUM_RUNS = flags.DEFINE_integer('num_runs', None, 'Initializations.')
_SEED = flags.DEFINE_integer('seed', None, 'First seed.')

_OVERRIDES = (_DATA_DIR, _DATASET, _PLUS_CLASS, _MINUS_CLASS, _NUM_TRAIN,
              _NUM_TEST, _ARCHITECTURE, _WIDTH, _NUM_LAYERS, _EPOCHS,
              _BATCH_SIZE, _LEARNING_RATE, _MOMENTUM, _LOSS, _H_FULL_UNBIASED,
              _H_ONLY_UNBIASED, _H_ONLY_DELTA_INIT_SCALE, _NUM_RUNS, _SEED)


def config_from_flags() -> taylor.SecondOrderConfig:
  """The preset named by --preset with the given flags overriding it."""
  errors.require(_PRESET.value in taylor.PRESETS,
                 f'unknown --preset {_PRESET.value!r}; choose one of '
                 f'{", ".join(taylor.PRESETS)}')
  overrides = {holder.name: holder.value for holder in _OVERRIDES
               if holder.value is not None}
  if _MODEL_KINDS.value is not None:
    overrides['model_kinds'] = tuple(_MODEL_KINDS.value)
  config = dataclasses.replace(taylor.PRESETS[_PRESET.value], **overrides)
  config.validate()
  return config


def parse_flags(argv):
  """absl flag parsing whose errors are one `error:` line and exit code 2."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    print(f'error: {str(e).splitlines()[0]}', file=sys.stderr)
    sys.exit(2)


def main(argv):
  try:
    errors.require(len(argv) <= 1,
                   f'unexpected arguments: {" ".join(argv[1:])}')
    errors.require(bool(_OUTPUT_DIR.value),
                   '--output_dir is required: where results are written')
    config = config_from_flags()
    entries = taylor.run_study(config, _OUTPUT_DIR.value,
                               log=lambda m: print(m, flush=True))
  except errors.AfterKernelError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print()
  print(taylor.format_table(entries))
  print('(means over runs ± 95% CI half-width; errors are sign(f) vs the '
        'label; rms of the Taylor terms on test inputs after training)')
  print(f'\nresults and {taylor.FIGURE_NAME}.png in '
        f'{os.path.abspath(_OUTPUT_DIR.value)}')
  return 0


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
