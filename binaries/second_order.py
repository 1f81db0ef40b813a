r"""Second-order Taylor models vs the network (issue 6, experiment 4).

Trains, from one initialization theta_0 and with the same SGD (momentum),
loss and batch order: the network, its linearization f0 + J delta, and the
quadratic models H_full = f0 + J delta + 1/2 delta^T H delta and H_only =
[f0 +] 1/2 delta^T H delta (Vyas et al. 2022; see afterkernel/taylor.py for
the two variants and what of the paper could be confirmed). delta^T H delta
comes from nested forward-mode JVPs; H is never formed. Prints test error of
each model. --expansion_point=trained expands around the base network
trained --expansion_epochs on m samples (the paper's g2 models);
--num_train_grid=125,250,... gives one point per training-set size m and the
power-law fit of best test error vs m (the H_full data-scaling law, Fig 7a).

Offline smoke run (embedded 8x8 digits 8-vs-3, FC 2 x 32, seconds):

  python -m binaries.second_order --preset=tiny --output_dir=/tmp/so_tiny

MNIST 3-vs-8 at CPU scale (8000 train / 1900 test, FC 2 x 128, 30 epochs,
3 runs; see the README for the measured time):

  python -m binaries.second_order --preset=cpu --data_dir=../shared/data \
      --output_dir=results/second_order_mnist

The paper's setting (Fig 7a) at CPU scale: g2^full / g2^only (without
f(w0, x)) around the network trained on m samples, m = 125 ... 4000, MNIST
3-vs-8, 2 runs (offline miniature: --preset=tiny_paper):

  python -m binaries.second_order --preset=paper --data_dir=../shared/data \
      --output_dir=results/second_order_paper

Vyas et al.'s synthetic task y = z_1 z_2 (no files needed):

  python -m binaries.second_order --preset=cpu_synthetic \
      --output_dir=results/second_order_synthetic

Every preset field can be overridden by its flag (e.g. --epochs=5
--model_kinds=network,h_full). Writes config.json, records/*.json (one per
model[, m] and run), summary.json, summary.csv,
second_order_test_error.{png,pdf} and, with a grid,
second_order_scaling.{png,pdf} and second_order_scaling_fits.json to
--output_dir; re-running resumes.
Bad flags print one line `error: ...` and exit with status 2.
"""

import os

# Keep TensorFlow's C++ start-up chatter out of the results printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
from afterkernel.studies import second_order
from binaries import flags
from binaries import mains

_FOOTER = ('(means over runs ± 95% CI half-width; errors are sign(f) vs the '
           'label; rms of the Taylor terms on test inputs after training)')

STUDY = mains.study_binary(
    second_order, second_order.SecondOrderConfig,
    'tiny: offline digits, seconds; cpu: MNIST 3-vs-8, needs --data_dir; '
    'tiny_paper / paper: the g2 models around the trained network vs m '
    "(paper needs --data_dir); cpu_synthetic: Vyas et al.'s synthetic task",
    _FOOTER)
main = STUDY.main

if __name__ == '__main__':
  flags.run(main)
