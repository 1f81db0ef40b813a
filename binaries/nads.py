r"""Neural anisotropy directions (issue 6, experiment 7; Ortiz-Jimenez et al.).

Computes the NADs of a network at initialization, the right singular vectors
v_j of the mixed derivative M = E_x[d^2 f / (d theta d x)] over Gaussian
inputs, then for each index j trains the network and its linearization
(same SGD, same batch order, from the same theta_0) on Gaussian inputs
labelled by sign(v_j . x), and prints test accuracy vs j next to s_j / s_1
(see afterkernel/nads.py).

Smoke run (6x6 Gaussian images, global-pooling CNN, j = 1, 2, 36; seconds):

  python -m binaries.nads --preset=tiny --output_dir=/tmp/nads_tiny

CPU scale (16x16 inputs, j = 1 .. 256, 2 runs): a global-pooling CNN
(3 x 16 channels), a VGG-like net with Flatten, and the fully connected
baseline (no strong preference expected); see the README for the measured
times:

  python -m binaries.nads --preset=cpu --output_dir=results/nads_cnn
  python -m binaries.nads --preset=cpu_vgg --output_dir=results/nads_vgg
  python -m binaries.nads --preset=cpu_fc --output_dir=results/nads_fc

Every preset field can be overridden by its flag. Writes config.json,
nads_run<r>.npz (singular values and directions), records/*.json (one per
task and run), summary.json, summary.csv, nad_accuracy.{png,pdf} and
nad_directions.{png,pdf} to --output_dir; re-running resumes. Bad flags
print one line `error: ...` and exit with status 2.
"""

import dataclasses
import os
import sys

# Keep TensorFlow's C++ start-up chatter out of the results printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from afterkernel import errors
from afterkernel import nads

FLAGS = flags.FLAGS
_PRESET = flags.DEFINE_string(
    'preset', 'tiny', 'Base configuration: ' + ', '.join(nads.PRESETS) +
    ' (tiny: seconds; cpu, cpu_vgg, cpu_fc: 16x16 inputs, minutes).')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Result folder.')
# Overrides of preset fields (unset = the preset's value).
_ARCHITECTURE = flags.DEFINE_string(
    'architecture', None, 'cnn (global pooling), vgg or fully_connected.')
_WIDTH = flags.DEFINE_integer('width', None,
                              'Hidden units (FC) or channels (CNN).')
_NUM_LAYERS = flags.DEFINE_integer(
    'num_layers', None, 'Hidden layers (FC) or convolutions.')
_IMAGE_SIDE = flags.DEFINE_integer('image_side', None,
                                   'Inputs are image_side^2 x channels.')
_CHANNELS = flags.DEFINE_integer('channels', None, 'Input channels.')
_NUM_NAD_SAMPLES = flags.DEFINE_integer(
    'num_nad_samples', None, 'Gaussian inputs of E_x in the mixed derivative.')
_NAD_INDICES = flags.DEFINE_list('nad_indices', None,
                                 '1-based NAD indices j (1 = top).')
_NUM_TRAIN = flags.DEFINE_integer('num_train', None, 'Examples per task.')
_NUM_TEST = flags.DEFINE_integer('num_test', None, 'Test examples per task.')
_MARGIN = flags.DEFINE_float('margin', None,
                             'Class gap along v_j (0: plain sign(v_j . x)).')
_EPOCHS = flags.DEFINE_integer('epochs', None, 'Epochs per model and task.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', None, 'Minibatch size.')
_LEARNING_RATE = flags.DEFINE_float('learning_rate', None,
                                    'SGD learning rate.')
_MOMENTUM = flags.DEFINE_float('momentum', None, 'SGD momentum.')
_LOSS = flags.DEFINE_string('loss', None,
                            'bce (logistic, 0/1 targets) or mse (+-1).')
_NUM_RUNS = flags.DEFINE_integer('num_runs', None, 'Initializations.')
_SEED = flags.DEFINE_integer('seed', None, 'First seed.')
_MAX_ELEMENTS = flags.DEFINE_integer(
    'max_elements', None, 'Largest P x D mixed derivative formed; above it '
    'M^T M is accumulated per variable.')

_OVERRIDES = (_ARCHITECTURE, _WIDTH, _NUM_LAYERS, _IMAGE_SIDE, _CHANNELS,
              _NUM_NAD_SAMPLES, _NUM_TRAIN, _NUM_TEST, _MARGIN, _EPOCHS,
              _BATCH_SIZE, _LEARNING_RATE, _MOMENTUM, _LOSS, _NUM_RUNS, _SEED,
              _MAX_ELEMENTS)


def config_from_flags() -> nads.NADConfig:
  """The preset named by --preset with the given flags overriding it."""
  errors.require(_PRESET.value in nads.PRESETS,
                 f'unknown --preset {_PRESET.value!r}; choose one of '
                 f'{", ".join(nads.PRESETS)}')
  overrides = {holder.name: holder.value for holder in _OVERRIDES
               if holder.value is not None}
  if _NAD_INDICES.value is not None:
    try:
      overrides['nad_indices'] = tuple(int(v) for v in _NAD_INDICES.value)
    except ValueError:
      raise errors.AfterKernelError(
          '--nad_indices must be a comma-separated list of integers, got '
          f'{",".join(_NAD_INDICES.value)}') from None
  config = dataclasses.replace(nads.PRESETS[_PRESET.value], **overrides)
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
    entries = nads.run_study(config, _OUTPUT_DIR.value,
                             log=lambda m: print(m, flush=True))
  except errors.AfterKernelError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print()
  print(nads.format_table(entries))
  print('(means over runs; accuracies on sign(v_j . x) labels of Gaussian '
        'inputs; s_j = j-th singular value of E_x[d^2 f / d theta d x])')
  print(f'\nresults and {nads.FIGURE_NAME}.png in '
        f'{os.path.abspath(_OUTPUT_DIR.value)}')
  return 0


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
