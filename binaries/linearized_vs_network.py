r"""A network vs its linearization around initialization, over widths.

Trains each architecture width and its first-order Taylor model with the same
SGD (momentum, weight decay), loss and batch order, and prints train / test
accuracy of both, the test-accuracy gap and the entropy effective rank of the
Jacobian embedding (NTK Gram, trace over outputs) of `--rank_sample_size`
training images, before (NTK) and after (AK) training.

Offline smoke preset (8x8 UCI digits, 10 classes, Myrtle-5; ~1 minute on
2 CPU cores):

  python -m binaries.linearized_vs_network --dataset=digits \
      --architecture=myrtle5 --width_multipliers=0.25,0.5 --epochs=10 \
      --rank_sample_size=300 --output_dir=results/linearized_digits

Small real-MNIST preset (10 classes, LeNet-5, 5,000 train / 2,000 test
images, 10 epochs; 9 minutes wall clock on 2 shared cores; prints e.g. at
k = 1 network 0.980 vs linearized 0.931 test accuracy; see the README):

  python -m binaries.linearized_vs_network --dataset=mnist \
      --data_dir=../shared/data --num_train=5000 --num_test=2000 \
      --architecture=lenet5 --width_multipliers=0.25,0.5,1,2 --epochs=10 \
      --output_dir=results/linearized_mnist

Binary tasks (BCE on one logit) use --task=binary --plus_class --minus_class.
Writes config.json, runs.jsonl (one record per width and seed), summary.json
and accuracy_vs_width.png to --output_dir; re-running resumes.
"""

import os
import sys

# Keep TensorFlow's C++ start-up chatter out of the results printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

from afterkernel.models import architectures
from afterkernel import errors
from afterkernel.studies import linearized as linearized_study

_DEFAULTS = linearized_study.StudyConfig()

_DATASET = flags.DEFINE_enum('dataset', _DEFAULTS.dataset,
                             ['digits', 'mnist', 'cifar10'],
                             'digits (offline UCI 8x8), mnist; cifar10 only '
                             'with --task=binary.')
_TASK = flags.DEFINE_enum('task', _DEFAULTS.task,
                          list(linearized_study.TASKS),
                          'multiclass: 10 outputs, L2 loss on one-hot; '
                          'binary: plus vs minus class, 1 logit, BCE.')
_PLUS_CLASS = flags.DEFINE_integer('plus_class', _DEFAULTS.plus_class,
                                   'Binary task: class labelled 1.')
_MINUS_CLASS = flags.DEFINE_integer('minus_class', _DEFAULTS.minus_class,
                                    'Binary task: class labelled 0.')
_DATA_DIR = flags.DEFINE_string(
    'data_dir', None, 'Folder with mnist/*-ubyte.gz (and cifar10/...); '
    'unset = tensorflow-datasets.')
_NUM_TRAIN = flags.DEFINE_integer('num_train', None,
                                  'Random subset of training examples.')
_NUM_TEST = flags.DEFINE_integer('num_test', None,
                                 'Random subset of test examples.')
_ARCHITECTURE = flags.DEFINE_enum('architecture', _DEFAULTS.architecture,
                                  list(architectures.ARCHITECTURES),
                                  'Network (see afterkernel.models.architectures).')
_WIDTHS = flags.DEFINE_list('width_multipliers',
                            [str(w) for w in _DEFAULTS.width_multipliers],
                            'Width multipliers k (channels and dense x k).')
_PARAMETERIZATION = flags.DEFINE_enum(
    'parameterization', _DEFAULTS.parameterization,
    list(architectures.PARAMETERIZATIONS), 'standard or ntk.')
_UNBIASED = flags.DEFINE_boolean(
    'unbiased', _DEFAULTS.unbiased,
    'Linearization without f(theta_0, x): J(theta_0, x)(theta - theta_0).')
_EPOCHS = flags.DEFINE_integer('epochs', _DEFAULTS.epochs, 'Training epochs.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', _DEFAULTS.batch_size,
                                   'Minibatch size.')
_LEARNING_RATE = flags.DEFINE_float('learning_rate', _DEFAULTS.learning_rate,
                                    'SGD learning rate.')
_MOMENTUM = flags.DEFINE_float('momentum', _DEFAULTS.momentum,
                               'SGD momentum.')
_WEIGHT_DECAY = flags.DEFINE_float(
    'weight_decay', _DEFAULTS.weight_decay,
    'Decoupled weight decay (Keras SGD); on theta - theta_0 for the '
    'linearized model.')
_RANK_SAMPLE_SIZE = flags.DEFINE_integer(
    'rank_sample_size', _DEFAULTS.rank_sample_size,
    'Training images in the Jacobian embedding whose effective rank is '
    'reported.')
_NUM_RUNS = flags.DEFINE_integer('num_runs', _DEFAULTS.num_runs,
                                 'Seeds per width.')
_SEED = flags.DEFINE_integer('seed', _DEFAULTS.seed, 'First seed.')
# Checked in main (not marked required, so tests can import this module and
# parse their own flags).
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'Result folder.')


def config_from_flags() -> linearized_study.StudyConfig:
  """The study configuration the flags describe."""
  try:
    widths = tuple(float(w) for w in _WIDTHS.value)
  except ValueError:
    raise errors.AfterKernelError(
        f'--width_multipliers must be numbers, got {_WIDTHS.value}') from None
  return linearized_study.StudyConfig(
      dataset=_DATASET.value, task=_TASK.value, plus_class=_PLUS_CLASS.value,
      minus_class=_MINUS_CLASS.value, data_dir=_DATA_DIR.value,
      num_train=_NUM_TRAIN.value, num_test=_NUM_TEST.value,
      architecture=_ARCHITECTURE.value, width_multipliers=widths,
      parameterization=_PARAMETERIZATION.value, unbiased=_UNBIASED.value,
      epochs=_EPOCHS.value, batch_size=_BATCH_SIZE.value,
      learning_rate=_LEARNING_RATE.value, momentum=_MOMENTUM.value,
      weight_decay=_WEIGHT_DECAY.value,
      rank_sample_size=_RANK_SAMPLE_SIZE.value, num_runs=_NUM_RUNS.value,
      seed=_SEED.value)


def main(argv):
  del argv
  try:
    errors.require(bool(_OUTPUT_DIR.value),
                   '--output_dir is required: where results are written')
    config = config_from_flags()
    summary = linearized_study.run_study(config, _OUTPUT_DIR.value,
                                         log=logging.info)
  except errors.AfterKernelError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(linearized_study.format_summary(summary))
  print(f'results and {linearized_study.FIGURE_FILE} in {_OUTPUT_DIR.value}')
  return 0


if __name__ == '__main__':
  app.run(main)
