r"""Experiment 3: kernels snapshotted at training steps t, fit and tested.

Trains a fully connected network (NTK parameterization, MSE on +-1 labels,
SGD with momentum) for --train_steps steps; a Keras callback snapshots its
empirical NTK K^t after log-spaced steps t (and at t = 0). Each K^t is fit on
the training set (--kernel_method) and its test error is printed next to the
network's at step t; the figure shows both against t on log-log axes.

  # Smoke run (embedded 8x8 digits, seconds):
  python -m binaries.kernel_dynamics --preset=tiny --output_dir=/tmp/kd
  # Real data (MNIST 3-vs-8, 2000 examples, 3000 steps, 2 runs):
  python -m binaries.kernel_dynamics --preset=cpu --data_dir=../shared/data \
      --output_dir=results/kernel_dynamics

Every flag other than --preset overrides one field of the preset
(afterkernel.studies.scaling_study.KernelDynamicsConfig). Writes config.json,
records/*.json (one per step and run; re-running resumes), summary.json/.csv
and kernel_dynamics.png/.pdf to --output_dir.
"""

import os

# Keep TensorFlow's C++ start-up chatter out of the results printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
from afterkernel.studies import scaling_study
from binaries import flags
from binaries import mains

STUDY = mains.StudyFlags(
    scaling_study.KernelDynamicsConfig, scaling_study.DYNAMICS_PRESETS, 'tiny',
    'tiny: embedded digits, seconds (smoke test); cpu: MNIST 3-vs-8, a '
    'real-data run of 5-20 min on 2 cores')


def main(argv):
  return mains.study_main(
      argv, STUDY, scaling_study.run_kernel_dynamics,
      lambda summary, _: scaling_study.format_kernel_dynamics(summary),
      scaling_study.FIGURE_NAMES[scaling_study.KERNEL_DYNAMICS],
      adjust=mains.scaling_classes)


if __name__ == '__main__':
  flags.run(main)
