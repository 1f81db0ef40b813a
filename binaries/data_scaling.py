r"""Experiment 1: test error vs training-set size n, network vs its kernels.

For every n, the test error of a fully connected ReLU network (NTK
parameterization, MSE on +-1 labels, SGD with momentum, optimal early
stopping), of its empirical NTK at initialization and of its infinite-width
NTK, all fit on the same n examples (kernels by SGD with the network's
hyper-parameters, ridge or SVM: --kernel_method). Fits L(n) = A (1/n +
alpha)^beta per predictor and prints beta with a 95% CI (Student t over the
runs' own exponents), whether beta is identified (the curve not saturated)
and which n a zero test error left out (--zero_errors); Vyas et al. (2022)
report the network's beta above its kernels'.
"""

import os

# Keep TensorFlow's C++ start-up chatter out of the results printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
from afterkernel.studies import data_scaling as study
from binaries import flags
from binaries import mains

STUDY = mains.scaling_study_binary(study, study.DataScalingConfig)
main = STUDY.main
__doc__ = mains.scaling_usage(__doc__, study, 'n',
                             'MNIST 3-vs-8, n = 125 ... 4000, 5 runs')

if __name__ == '__main__':
  flags.run(main)
