r"""The non-linear advantage vs training-set size (Ortiz-Jimenez et al. Fig. 5).

Trains a network and its linearization at initialization on the real labels
of a binary task with nested training sets of growing size n, and prints
test accuracy of both, their difference (the non-linear advantage) and the
L2 / cosine distance of each model's weights from initialization (see
afterkernel/studies/nonlinear_advantage.py).

Offline smoke run (embedded 8x8 digits, seconds):

  python -m binaries.nonlinear_advantage --preset=tiny \
      --output_dir=/tmp/advantage_tiny

CIFAR-10 cat vs dog ("CIFAR2"), LeNet-5, step learning-rate decay, n = 50 to
1000, the exact 189 cat/dog test images, 2 runs (about 20 CPU minutes):

  python -m binaries.nonlinear_advantage --preset=cifar2_small \
      --data_dir=../shared/data --output_dir=results/advantage_cifar2

Every preset field can be overridden by its flag. Writes config.json,
records/*.json (one per n and run), summary.json, summary.csv and
nonlinear_advantage.{png,pdf} to --output_dir; re-running resumes.
"""

import os

# Keep TensorFlow's C++ start-up chatter out of the results printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
from afterkernel.studies import nonlinear_advantage
from binaries import flags
from binaries import mains

STUDY = mains.study_binary(nonlinear_advantage,
                           nonlinear_advantage.AdvantageConfig,
                           nonlinear_advantage.PRESETS_HELP,
                           nonlinear_advantage.TABLE_FOOTER)
main = STUDY.main

if __name__ == '__main__':
  flags.run(main)
