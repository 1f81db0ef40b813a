r"""Kernels of networks of ~60K, ~80K and ~100K parameters (paper Fig 15).

The epochs sweep for VGG-like and fully connected networks whose width is
chosen so that their parameter count is closest to each --num_parameters
value (appendix A of the paper): for every run one training trajectory,
measured at each --epochs checkpoint.

The paper's sweep:

  python -m binaries.sweep_width --tasks=mnist_3v8,mnist_5v6 \
      --architectures=vgg,fully_connected --num_parameters=60000,80000,100000 \
      --epochs=0,1,3,10,30,100,200 --num_runs=10 --data_dir=../shared/data \
      --store_dir=results/paper

A CPU-scale preset:

  python -m binaries.sweep_width --tasks=mnist_3v8 \
      --architectures=fully_connected --num_parameters=60000,80000,100000 \
      --epochs=0,3 --num_runs=2 --train_subset=1000 --test_subset=500 \
      --num_translations=200 --num_zooms=200 --num_swaps=200 \
      --num_rotations=200 --ker_alignment_sample_size=200 \
      --data_dir=../shared/data --store_dir=results/cpu

Prints one line per record, then a table of every point (mean ± 95% CI);
STORE/summary.{csv,json} hold every metric. Re-running resumes.
"""

import os

# Keep TensorFlow's C++ start-up chatter out of the printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
from afterkernel.studies import sweeps
from binaries import flags
from binaries import mains

# The paper's width sweep (Fig 15: VGG-like and fully connected nets of
# ~60K, ~80K, ~100K parameters); the flags change its fields.
PAPER = sweeps.Sweep(family='width', base=mains.PAPER_SWEEP_BASE,
                     architectures=('vgg', 'fully_connected'),
                     epochs=sweeps.PAPER_EPOCHS,
                     num_parameters=sweeps.PAPER_WIDTHS)
SWEEP = mains.SweepBinary(
    PAPER, sweep_fields=('epochs', 'num_parameters'))
main = SWEEP.main

if __name__ == '__main__':
  flags.run(main)
