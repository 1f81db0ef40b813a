r"""Kernel rotation in training (Ortiz-Jimenez et al. 2021, Fig. 6 / Table 1).

Trains a small network on a binary task and, at checkpoint epochs, measures
its empirical NTK on the training inputs: the label energy on the top-K
eigenvectors ||U_K^T y|| / ||y|| for a list of K, the alignment
|<u_j(0), u_j(t)>| of each of the first eigenvectors with its value at
initialization, and the share s_j = u_j(0)^T K_t u_j(0) / trace(K_t) of the
current kernel's energy along each of the first initial eigenvectors (see
afterkernel/kernel_rotation.py).

Offline smoke run (embedded 8x8 digits, seconds):

  python -m binaries.kernel_rotation --preset=tiny --output_dir=/tmp/rot_tiny

MNIST 3-vs-8 at CPU scale (4 x 94 FC net, 2000 training inputs, 30 epochs,
7 checkpoints, 3 initializations; see the README for the measured time):

  python -m binaries.kernel_rotation --preset=cpu --data_dir=../shared/data \
      --output_dir=results/kernel_rotation_mnist

Every preset field can be overridden by its flag (e.g. --num_runs=1
--checkpoint_epochs=0,1,5). Prints one line per checkpoint epoch (means over
runs): E_K for each K, a_1..a_5, the top-J subspace overlap, s_1..s_3 and
S_J = s_1 + ... + s_J, lambda_1, the alignment of K_t with K_0 and with y y^T,
the test error and training loss. Writes config.json, records/*.json (one
per epoch and run), summary.json, summary.csv and kernel_rotation.{png,pdf}
to --output_dir; re-running resumes (finished runs are skipped).
"""

import os

# Keep TensorFlow's C++ start-up chatter out of the results printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
from afterkernel.studies import kernel_rotation
from binaries import flags
from binaries import mains

STUDY = mains.StudyBinary(
    kernel_rotation.RotationConfig, kernel_rotation.PRESETS,
    'tiny: offline digits, seconds; cpu: MNIST 3-vs-8, needs --data_dir',
    run=kernel_rotation.run_study,
    format_result=kernel_rotation.format_table,
    figure_name=kernel_rotation.FIGURE_NAME)
main = STUDY.main

if __name__ == '__main__':
  flags.run(main)
