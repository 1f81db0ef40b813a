r"""Kernels after 0, 1, 3, ... epochs of training (paper Figs 1-8, 16).

For every task x architecture x augmentation setting and every run, trains
ONE network and measures its kernel at each listed epoch (epoch 0 = the
FNTK): SVM test error and margin, network test error, the four invariances,
alignment with the conjugate projection, the conjugate projection's SVM test
error. One record per (point, run, epoch) goes to --store_dir; re-running
the same command resumes.

The paper's sweep (10 runs, full data; days of CPU):

  python -m binaries.sweep_epochs --tasks=mnist_3v8,mnist_5v6 \
      --architectures=vgg,mega_vgg,fully_connected \
      --epochs=0,1,3,10,30,100,200 \
      --augmentation=false,true --num_runs=10 --data_dir=../shared/data \
      --store_dir=results/paper

A CPU-scale preset (see README, "Reproducing the paper"):

  python -m binaries.sweep_epochs --tasks=mnist_3v8 \
      --architectures=vgg,fully_connected --epochs=0,1,3,10 --num_runs=3 \
      --train_subset=2000 --test_subset=500 --num_translations=200 \
      --num_zooms=200 --num_swaps=200 --num_rotations=200 \
      --ker_alignment_sample_size=200 --data_dir=../shared/data \
      --store_dir=results/cpu

It prints one line per record as it is written, then a table (mean ± 95% CI
per point) of SVM error, network error, conjugate SVM error, swap and
translation invariance and alignment; STORE/summary.{csv,json} hold every
metric. Plot with `python -m binaries.plot_results --store_dir=...`.
"""

import os

# Keep TensorFlow's C++ start-up chatter out of the printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
from afterkernel.studies import sweeps
from binaries import flags
from binaries import mains

# The paper's epochs sweep; the flags change its fields.
PAPER = sweeps.Sweep(family='epochs', base=mains.PAPER_SWEEP_BASE,
                     architectures=sweeps.PAPER_ARCHITECTURES,
                     epochs=sweeps.PAPER_EPOCHS)
SWEEP = mains.SweepBinary(PAPER, sweep_fields=('epochs',),
                                       base_fields=('learning_rate',))
main = SWEEP.main

if __name__ == '__main__':
  flags.run(main)
