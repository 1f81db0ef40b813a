r"""A network vs its linearization around initialization, over widths.

Trains each architecture width and its first-order Taylor model with the same
SGD (momentum, weight decay), loss and batch order, and prints train / test
accuracy of both, the test-accuracy gap and the entropy effective rank of the
Jacobian embedding of `--rank_sample_size` training images, before (NTK) and
after (AK) training (--effective_rank_kernel: traced over outputs, the
default, or the paper's (n x outputs)-row Jacobian).

Offline smoke preset (8x8 UCI digits, 10 classes, Myrtle-5; ~1 minute on
2 CPU cores):

  python -m binaries.linearized_vs_network --dataset=digits \
      --architecture=myrtle5 --width_multipliers=0.25,0.5 --epochs=10 \
      --rank_sample_size=300 --output_dir=results/linearized_digits

Small real-MNIST preset (10 classes, LeNet-5, 5,000 train / 2,000 test
images, 10 epochs; 9 minutes wall clock on 2 shared cores; prints e.g. at
k = 1 network 0.980 vs linearized 0.931 test accuracy; see the README):

  python -m binaries.linearized_vs_network --dataset=mnist \
      --data_dir=../shared/data --num_train=5000 --num_test=2000 \
      --architecture=lenet5 --width_multipliers=0.25,0.5,1,2 --epochs=10 \
      --output_dir=results/linearized_mnist

Samarin et al.'s Fig 4 (LeNet vs LinLeNet on CIFAR-10, 10 classes, over
widths) at CPU scale, with their Fig 5 effective rank of the (n x 10)-row
Jacobian embedding, Fig 2 output trajectories (output_trajectories.png)
and a step learning-rate decay (the scale of RESULTS.md, "Samarin et
al."; ~25 minutes on 2 heavily shared cores):

  python -m binaries.linearized_vs_network --dataset=cifar10 \
      --data_dir=../shared/data --num_train=5000 --architecture=lenet5 \
      --width_multipliers=0.25,0.5,1,2 --epochs=10 --lr_decay=step \
      --rank_sample_size=100 --effective_rank_kernel=jacobian \
      --trajectory_every=2 --output_dir=results/linearized_cifar10

(the CIFAR-10 test images are the exact first 1000 official records by
default, --cifar_test_source=lossy_full for all 10000 lossy decodes).

Binary tasks (BCE on one logit) use --task=binary --plus_class --minus_class.
Writes config.json, records/*.json (one record per width and seed),
summary.json/.csv and accuracy_vs_width.png to --output_dir; re-running resumes. Flags: one per
field of `afterkernel.studies.linearized.StudyConfig` (its docstring is their help); a flag
not given keeps that class's default. Bad input prints one `error: ...` line
and exits with status 2.
"""

import os

# Keep TensorFlow's C++ start-up chatter out of the results printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
from absl import logging

from afterkernel.studies import linearized as linearized_study
from binaries import flags
from binaries import mains


def _report(summary, output_dir: str) -> str:
  """The accuracy table by width, then where the results are."""
  return (f'{linearized_study.format_summary(summary)}\n'
          f'results and {linearized_study.FIGURE_FILE} in {output_dir}')


# The configuration the flags change: StudyConfig's defaults.
BINARY = mains.ConfigBinary(
    linearized_study.StudyConfig, 'linearized_vs_network',
    run=lambda config, output_dir, executor: linearized_study.run_study(
        config, output_dir, log=logging.info, executor=executor),
    report=_report, on_runner=True)
config_from_flags = BINARY.config
main = BINARY.main

if __name__ == '__main__':
  flags.run(main)
