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

import os

# Keep TensorFlow's C++ start-up chatter out of the results printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
from afterkernel.studies import nads
from binaries import flags
from binaries import mains

STUDY = mains.study_binary(nads, nads.NADConfig, nads.PRESETS_HELP,
                           nads.TABLE_FOOTER)
main = STUDY.main

if __name__ == '__main__':
  flags.run(main)
