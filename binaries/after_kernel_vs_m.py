r"""Experiment 2: the after kernel K_m of a network trained on m examples.

For every m, a fresh fully connected network (NTK parameterization, MSE on
+-1 labels, SGD with momentum) is trained on m examples for --epochs epochs
and its after kernel K_m (empirical NTK after training) is fit on n examples
for every n of --fit_sizes: the first n of the run's data (--fit_examples=
subset: within the m when n <= m) or n examples disjoint from the m
(--fit_examples=fresh). Prints K_m's test error per (m, n) -- the column
n = --reference_fit_size is "K_m(n) vs m" -- and each m's fitted exponent
beta in n. m = 0 is the NTK at initialization.
"""

import os

# Keep TensorFlow's C++ start-up chatter out of the results printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
from afterkernel.studies import after_kernel_vs_m as study
from binaries import flags
from binaries import mains

STUDY = mains.scaling_study_binary(study, study.AfterKernelVsMConfig)
main = STUDY.main
__doc__ = mains.scaling_usage(
    __doc__, study, 'm, n',
    'MNIST 3-vs-8, m = 0 ... 8000, n = 125 ... 2000, 2 runs')

if __name__ == '__main__':
  flags.run(main)
