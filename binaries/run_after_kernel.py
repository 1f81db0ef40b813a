r"""FNTK vs after kernel of one network on one binary task, over several runs.

Offline demo on the embedded digits data (UCI handwritten digits, shipped
with scikit-learn), 3 runs of a VGG-like net, ~1-2 minutes on 2 CPU cores:

  python -m binaries.run_after_kernel --train_linear_model \
      --output_dir=results/demo

The paper's MNIST 3-vs-8 protocol on local files (tensorflow-datasets is used
instead when --data_dir is not given and downloads work):

  python -m binaries.run_after_kernel --dataset=mnist --plus_class=8 \
      --minus_class=3 --nn_architecture=vgg --max_num_epochs=10 --num_runs=3 \
      --train_linear_model --num_translations=1000 --num_zooms=1000 \
      --num_swaps=1000 --num_rotations=1000 --ker_alignment_sample_size=1000 \
      --data_dir=../shared/data --output_dir=results/mnist_3v8

It prints a table (mean ± 95% CI half-width over runs) of the SVM test error
and margin of the FNTK (epoch 0) and of the after kernel, the network's test
error, the four invariances, the alignment with the conjugate projection and
effective ranks, and writes config.json, runs.jsonl (one record per run) and
summary.json ({mean, std, ci95, n} per metric) to --output_dir. Re-running the
same command resumes: finished runs are kept and skipped.
"""

import os
import sys

# Keep TensorFlow's C++ start-up chatter out of the results printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging

import afterkernel
from afterkernel import data
from afterkernel import distribute
from afterkernel import errors
from afterkernel.studies import after_kernel
from afterkernel.kernels import invariance
from afterkernel import margin
from afterkernel import models

_DEFAULTS = after_kernel.ExperimentConfig()

# Data.
_DATASET = flags.DEFINE_enum(
    'dataset', _DEFAULTS.dataset, list(data.DATASETS),
    'digits: embedded UCI digits (8x8, offline); mnist; cifar10; synthetic '
    '(Vyas et al., vectors: fully_connected, no invariances; classes 1/0); '
    'svhn_parity, cifar2, cifar5m2 (classes 1/0, see afterkernel.data); '
    'cifar5m (local files only).')
_PLUS_CLASS = flags.DEFINE_integer('plus_class', _DEFAULTS.plus_class,
                                   'Class labelled 1 (positive).')
_MINUS_CLASS = flags.DEFINE_integer('minus_class', _DEFAULTS.minus_class,
                                    'Class labelled 0 (negative).')
_DATA_DIR = flags.DEFINE_string(
    'data_dir', None,
    'Folder with local copies (mnist/*-ubyte.gz, cifar10/*.bin.gz, '
    'svhn/*_32x32.mat, cifar5m/cifar5m_part*.npz); if unset, mnist, cifar10, '
    'cifar2 and svhn_parity come from tensorflow-datasets.')
_CIFAR_TEST_SOURCE = flags.DEFINE_enum(
    'cifar_test_source', _DEFAULTS.cifar_test_source,
    list(data.CIFAR_TEST_SOURCES),
    'Test images for CIFAR-10 from --data_dir: exact first 1000 test images, '
    'the lossy JPEG-decoded full test set, or a held-out slice of train.')
_TRAIN_SUBSET = flags.DEFINE_integer(
    'train_subset', None, 'Use only this many (permuted) training examples.')
_TEST_SUBSET = flags.DEFINE_integer(
    'test_subset', None, 'Use only this many (permuted) test examples.')

# Network.
_NN_ARCHITECTURE = flags.DEFINE_enum(
    'nn_architecture', _DEFAULTS.nn_architecture, list(models.ARCHITECTURES),
    'vgg (26/52 channels), mega_vgg (119/238), fully_connected (4x94), sum.')
_NUM_PARAMETERS = flags.DEFINE_integer(
    'num_parameters', None,
    'Choose the width of vgg / fully_connected to reach this parameter count.')
_NUM_BLOCKS = flags.DEFINE_integer('num_blocks', _DEFAULTS.num_blocks,
                                   'Conv + max-pool blocks of the VGG nets.')
_NUM_LAYERS = flags.DEFINE_integer(
    'num_layers', None,
    'Convolutions per block (VGG, default 2) or hidden layers '
    '(fully_connected, default 4).')
_FILTER_SIZE = flags.DEFINE_integer('filter_size', _DEFAULTS.filter_size,
                                    'Convolution kernel side.')
_POOL_SIZE = flags.DEFINE_integer('pool_size', _DEFAULTS.pool_size,
                                  'Max-pooling window side.')

# Training.
_MAX_NUM_EPOCHS = flags.DEFINE_integer(
    'max_num_epochs', _DEFAULTS.max_num_epochs,
    'Epochs of training (0: the after kernel is the FNTK); with '
    '--training_loss_target, the cap.')
_TRAINING_LOSS_TARGET = flags.DEFINE_float(
    'training_loss_target', None,
    'Train 10, 20, 40, ... epochs until the training loss is <= this.')
_LEARNING_RATE = flags.DEFINE_float(
    'learning_rate', None, 'SGD learning rate (default: Keras default 0.01).')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', _DEFAULTS.batch_size,
                                   'SGD minibatch size.')
_USE_AUGMENTATION = flags.DEFINE_bool(
    'use_augmentation', _DEFAULTS.use_augmentation,
    'Random rotations (+-15 degrees) and 1-pixel shifts during training.')
_NUM_RUNS = flags.DEFINE_integer(
    'num_runs', _DEFAULTS.num_runs,
    'Repeats, each with a fresh initialization and data permutation.')
_SEED = flags.DEFINE_integer('seed', _DEFAULTS.seed,
                             'Run r uses seed + r.')

# Kernel measurements.
_TRAIN_LINEAR_MODEL = flags.DEFINE_bool(
    'train_linear_model', _DEFAULTS.train_linear_model,
    'Fit the hard-margin SVM on the FNTK and the after kernel.')
_MEASURE_NTK = flags.DEFINE_bool(
    'measure_ntk', _DEFAULTS.measure_ntk,
    'Measure the FNTK at initialization too; --nomeasure_ntk measures only '
    'the after kernel (half the kernel work, e.g. for mega-VGG).')
_USE_CONJUGATE_KERNEL = flags.DEFINE_bool(
    'use_conjugate_kernel', _DEFAULTS.use_conjugate_kernel,
    'Use the conjugate projection (penultimate features) instead of the '
    'gradient features for the SVM, invariances and effective rank.')
_SVM_SOLVER = flags.DEFINE_enum(
    'svm_solver', _DEFAULTS.svm_solver, list(margin.SOLVERS),
    'dual: Algorithm 1 on the Gram (default); primal: Algorithm 1 on '
    'features; stochastic: Algorithm 2 (one Gram column per step).')
_SVM_MAX_ITERATIONS = flags.DEFINE_integer(
    'svm_max_iterations', None,
    'Iteration budget of the max-margin solver (default: '
    f'{margin.DEFAULT_MAX_ITERATIONS} for dual/primal, '
    f'{margin.DEFAULT_STOCHASTIC_MAX_ITERATIONS} for stochastic).')
_SVM_TOLERANCE = flags.DEFINE_float(
    'svm_tolerance', _DEFAULTS.svm_tolerance,
    'Stop when the relative duality gap of the margin is below this.')
_SVM_MAX_SECONDS = flags.DEFINE_float(
    'svm_max_seconds', None,
    'Optional wall-clock cap on the solver (results then depend on speed).')
_NUM_TRANSLATIONS = flags.DEFINE_integer(
    'num_translations', _DEFAULTS.num_translations,
    'Test images for translation invariance (0: skip).')
_NUM_ZOOMS = flags.DEFINE_integer('num_zooms', _DEFAULTS.num_zooms,
                                  'Test images for zoom invariance.')
_NUM_SWAPS = flags.DEFINE_integer('num_swaps', _DEFAULTS.num_swaps,
                                  'Test images for quadrant-swap invariance.')
_NUM_ROTATIONS = flags.DEFINE_integer(
    'num_rotations', _DEFAULTS.num_rotations,
    'Test images for rotation invariance.')
_ROTATION_ANGLE = flags.DEFINE_float(
    'rotation_angle', invariance.DEFAULT_ROTATION_ANGLE,
    'Rotation (radians) for rotation invariance; +- are averaged.')
_KER_ALIGNMENT_SAMPLE_SIZE = flags.DEFINE_integer(
    'ker_alignment_sample_size', _DEFAULTS.ker_alignment_sample_size,
    'Test images for the alignment of the kernel with its conjugate.')
_EFFECTIVE_RANK_SAMPLE_SIZE = flags.DEFINE_integer(
    'effective_rank_sample_size', _DEFAULTS.effective_rank_sample_size,
    'Training images for the effective rank of the Gram.')
_FEATURE_BATCH_SIZE = flags.DEFINE_integer(
    'feature_batch_size', _DEFAULTS.feature_batch_size,
    'Examples per vectorized gradient-feature block.')

_FEATURE_METHOD = flags.DEFINE_enum(
    'feature_method', _DEFAULTS.feature_method,
    list(afterkernel.kernels.features.FEATURE_METHODS),
    'Gradient-feature algorithm: auto (vectorized when the model has no '
    'per_layer path, per_layer for short jobs, else the faster of the two as '
    'timed on the first block), per_layer, vectorized, or loop (slow '
    'reference).')
_MEMORY_BUDGET_GB = flags.DEFINE_float(
    'memory_budget_gb', None,
    'GiB the gradient features may take; above it the Gram matrices are '
    'streamed (features recomputed block by block, never all held).')
_DISTRIBUTION_STRATEGY = flags.DEFINE_enum(
    'distribution_strategy', _DEFAULTS.distribution_strategy,
    list(distribute.STRATEGIES),
    'default: one device (the first GPU if any, else the CPU); mirrored: all '
    'local GPUs (or logical CPUs); tpu: the TPU of this TPU VM or TPU_NAME; '
    'multi_worker: the workers in TF_CONFIG, each running this command '
    '(features only: needs --max_num_epochs=0). Training and gradient '
    'features are split across the replicas.')

_OUTPUT_DIR = flags.DEFINE_string(
    'output_dir', None, 'Where config.json, runs.jsonl, summary.json go.')
flags.mark_flag_as_required('output_dir')


def config_from_flags() -> after_kernel.ExperimentConfig:
  """The experiment configuration the flags describe."""
  return after_kernel.ExperimentConfig(
      dataset=_DATASET.value, plus_class=_PLUS_CLASS.value,
      minus_class=_MINUS_CLASS.value, data_dir=_DATA_DIR.value,
      cifar_test_source=_CIFAR_TEST_SOURCE.value,
      train_subset=_TRAIN_SUBSET.value, test_subset=_TEST_SUBSET.value,
      nn_architecture=_NN_ARCHITECTURE.value,
      num_parameters=_NUM_PARAMETERS.value, num_blocks=_NUM_BLOCKS.value,
      num_layers=_NUM_LAYERS.value, filter_size=_FILTER_SIZE.value,
      pool_size=_POOL_SIZE.value, max_num_epochs=_MAX_NUM_EPOCHS.value,
      training_loss_target=_TRAINING_LOSS_TARGET.value,
      learning_rate=_LEARNING_RATE.value, batch_size=_BATCH_SIZE.value,
      use_augmentation=_USE_AUGMENTATION.value, num_runs=_NUM_RUNS.value,
      seed=_SEED.value, train_linear_model=_TRAIN_LINEAR_MODEL.value,
      use_conjugate_kernel=_USE_CONJUGATE_KERNEL.value,
      measure_ntk=_MEASURE_NTK.value,
      svm_solver=_SVM_SOLVER.value,
      svm_max_iterations=_SVM_MAX_ITERATIONS.value,
      svm_tolerance=_SVM_TOLERANCE.value,
      svm_max_seconds=_SVM_MAX_SECONDS.value,
      num_translations=_NUM_TRANSLATIONS.value, num_zooms=_NUM_ZOOMS.value,
      num_swaps=_NUM_SWAPS.value, num_rotations=_NUM_ROTATIONS.value,
      rotation_angle=_ROTATION_ANGLE.value,
      ker_alignment_sample_size=_KER_ALIGNMENT_SAMPLE_SIZE.value,
      effective_rank_sample_size=_EFFECTIVE_RANK_SAMPLE_SIZE.value,
      feature_batch_size=_FEATURE_BATCH_SIZE.value,
      feature_method=_FEATURE_METHOD.value,
      memory_budget_gb=_MEMORY_BUDGET_GB.value,
      distribution_strategy=_DISTRIBUTION_STRATEGY.value)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  config = config_from_flags()
  try:
    summary = after_kernel.run_experiment(
        config, _OUTPUT_DIR.value, log=lambda m: print(m, flush=True))
  except errors.AfterKernelError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print()
  print(afterkernel.studies.results.format_table(summary, after_kernel.TABLE_ROWS))
  print(f'\nresults: {os.path.abspath(_OUTPUT_DIR.value)}')
  return 0


if __name__ == '__main__':
  app.run(main)
