r"""NTK eigenfunction tasks (issue 6, experiment 5; Ortiz-Jimenez et al. 2021).

Labels inputs with sign(phi_j(x)) for the j-th eigenfunction of the network's
empirical NTK Gram at initialization (Nystroem extension to test inputs),
trains the network and its linearization on each task with the same SGD,
and prints test accuracy vs j (plain and balanced, with the test
majority-class rate; one-class tasks are flagged ONE-CLASS) with the target
alignment ||E[y grad f]||^2 at init. and after training (see
afterkernel/eigentasks.py). Inputs are standardized with the training
statistics unless --nostandardize_inputs.

Offline smoke run (embedded 8x8 digits, seconds):

  python -m binaries.eigenfunction_tasks --preset=tiny \
      --output_dir=/tmp/eigentasks_tiny

MNIST 3-vs-8 inputs at CPU scale (FC 2 x 256, 1000 train / 1000 test
inputs, j in 1..200, 20 epochs per model and task, 2 initializations; see
the README for the measured time):

  python -m binaries.eigenfunction_tasks --preset=cpu \
      --data_dir=../shared/data --output_dir=results/eigentasks_mnist

The paper's setting (Ortiz-Jimenez et al. 2021, Figs. 2-3: CIFAR-10 cat/dog
inputs, LeNet-5, step learning-rate decay, 100 epochs, each model trained to
a training loss of 0.01 with its SGD steps and weight distances from
initialization recorded) is --preset=paper (hours); --preset=paper_small is
it cut to ~20 CPU minutes, with the alpha spectrum of the first 20 tasks
(Fig. 7):

  python -m binaries.eigenfunction_tasks --preset=paper_small \
      --data_dir=../shared/data --output_dir=results/eigentasks_paper_small

--linearize_at_epoch=k linearizes at the weights after k epochs instead of
at initialization (Figs. 8-9).

Every preset field can be overridden by its flag (e.g. --eigen_indices=1,10
--num_runs=1). Writes config.json, records/*.json (one per task and run),
summary.json, summary.csv and eigentask_accuracy.{png,pdf} to --output_dir;
re-running resumes (finished tasks are skipped).
"""

import os

# Keep TensorFlow's C++ start-up chatter out of the results printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
from afterkernel.studies import eigentasks
from binaries import flags
from binaries import mains

STUDY = mains.study_binary(eigentasks, eigentasks.EigentaskConfig,
                           eigentasks.PRESETS_HELP, eigentasks.TABLE_FOOTER)
main = STUDY.main

if __name__ == '__main__':
  flags.run(main)
