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

import dataclasses
import os

# Keep TensorFlow's C++ start-up chatter out of the printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
from afterkernel.studies import sweeps
from binaries import flags
from binaries import mains

# The paper's learning-rate sweep (training to the loss target 0.01, capped
# at 1280 epochs); the flags change its fields.
PAPER = sweeps.Sweep(
    family='learning_rate',
    base=dataclasses.replace(
        mains.PAPER_SWEEP_BASE,
        training_loss_target=sweeps.PAPER_LOSS_TARGET,
        max_num_epochs=sweeps.DEFAULT_LOSS_TARGET_MAX_EPOCHS),
    architectures=sweeps.PAPER_ARCHITECTURES)
SWEEP = mains.SweepBinary(
    PAPER, sweep_fields=('learning_rates',),
    base_fields=('training_loss_target', 'max_num_epochs'))
main = SWEEP.main

if __name__ == '__main__':
  flags.run(main)
