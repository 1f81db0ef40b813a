r"""Kernels of networks trained to a loss target at several learning rates.

Paper Figs 9-14: for every task x architecture x augmentation x learning
rate and every run, trains until the training loss is <= --training_loss_target
(rounds of 10, 20, 40, ... epochs, capped at --max_num_epochs), then measures
the kernel (SVM test error, invariances, alignment, conjugate SVM error) and
the network; records hold the epochs needed and whether the target was met.
Default learning rates are the paper's per dataset (MNIST 0.001, 0.003, 0.01,
0.03, 0.1; CIFAR-10 0.01, 0.02, 0.03, 0.04).

The paper's sweep:

  python -m binaries.sweep_learning_rate --tasks=mnist_3v8,mnist_5v6 \
      --architectures=vgg,mega_vgg,fully_connected --num_runs=10 \
      --augmentation=false,true --data_dir=../shared/data \
      --store_dir=results/paper

A CPU-scale preset:

  python -m binaries.sweep_learning_rate --tasks=mnist_3v8 \
      --architectures=fully_connected --learning_rates=0.01,0.03,0.1 \
      --training_loss_target=0.05 --max_num_epochs=40 --num_runs=2 \
      --train_subset=1000 --test_subset=500 --num_translations=200 \
      --num_zooms=200 --num_swaps=200 --num_rotations=200 \
      --ker_alignment_sample_size=200 --data_dir=../shared/data \
      --store_dir=results/cpu

Prints one line per record, then a table of every point (mean ± 95% CI);
STORE/summary.{csv,json} hold every metric. Re-running resumes.
"""

import os

# Keep TensorFlow's C++ start-up chatter out of the printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from afterkernel.studies import sweeps
from binaries import sweep_flags

_LEARNING_RATES = flags.DEFINE_list(
    'learning_rates', None,
    'SGD learning rates; default: the paper\'s grid for each task\'s dataset.')
_TRAINING_LOSS_TARGET = flags.DEFINE_float(
    'training_loss_target', sweeps.PAPER_LOSS_TARGET,
    'Train until the training BCE is <= this.')
_MAX_NUM_EPOCHS = flags.DEFINE_integer(
    'max_num_epochs', sweeps.DEFAULT_LOSS_TARGET_MAX_EPOCHS,
    'Cap on the epochs of loss-target training (recorded if not reached).')


def _build() -> sweeps.Sweep:
  rates = (None if _LEARNING_RATES.value is None else
           sweep_flags.parse_float_list(_LEARNING_RATES.value,
                                        'learning_rates'))
  return sweep_flags.sweep_from_flags(
      'learning_rate',
      sweep_flags.base_config(training_loss_target=_TRAINING_LOSS_TARGET.value,
                              max_num_epochs=_MAX_NUM_EPOCHS.value),
      learning_rates=rates)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  return sweep_flags.run(_build)


if __name__ == '__main__':
  app.run(main)
