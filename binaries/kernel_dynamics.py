r"""Experiment 3: kernels snapshotted at training steps t, fit and tested.

Trains a fully connected network (NTK parameterization, MSE on +-1 labels,
SGD with momentum) for --train_steps steps; a Keras callback snapshots its
empirical NTK K^t after log-spaced steps t (and at t = 0). Each K^t is fit on
the training set (--kernel_method) and its test error is printed next to the
network's at step t; the figure shows both against t on log-log axes.
"""

import os

# Keep TensorFlow's C++ start-up chatter out of the results printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
from afterkernel.studies import kernel_dynamics as study
from binaries import flags
from binaries import mains

STUDY = mains.scaling_study_binary(study, study.KernelDynamicsConfig)
main = STUDY.main
__doc__ = mains.scaling_usage(
    __doc__, study, 'step',
    'MNIST 3-vs-8, 2000 examples, 3000 steps, 2 runs')

if __name__ == '__main__':
  flags.run(main)
