r"""Kernels of networks of ~60K, ~80K and ~100K parameters (paper Fig 15).

The epochs sweep for VGG-like and fully connected networks whose width is
chosen so that their parameter count is closest to each --num_parameters
value (appendix A of the paper): for every run one training trajectory,
measured at each --epochs checkpoint.

The paper's sweep:

  python -m binaries.sweep_width --tasks=mnist_3v8,mnist_5v6 \
      --architectures=vgg,fully_connected --num_parameters=60000,80000,100000 \
      --epochs=0,1,3,10,30,100,200 --num_runs=10 --data_dir=../shared/data \
      --store_dir=results/paper

A CPU-scale preset:

  python -m binaries.sweep_width --tasks=mnist_3v8 \
      --architectures=fully_connected --num_parameters=60000,80000,100000 \
      --epochs=0,3 --num_runs=2 --train_subset=1000 --test_subset=500 \
      --num_translations=200 --num_zooms=200 --num_swaps=200 \
      --num_rotations=200 --ker_alignment_sample_size=200 \
      --data_dir=../shared/data --store_dir=results/cpu

Prints one line per record, then a table of every point (mean ± 95% CI);
STORE/summary.{csv,json} hold every metric. Re-running resumes.
"""

import os

# Keep TensorFlow's C++ start-up chatter out of the printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from afterkernel.studies import sweeps
from binaries import sweep_flags

_NUM_PARAMETERS = flags.DEFINE_list(
    'num_parameters', [str(n) for n in sweeps.PAPER_WIDTHS],
    'Target parameter counts; each net\'s width is the closest match.')
flags.FLAGS.set_default('architectures', ['vgg', 'fully_connected'])


def _build() -> sweeps.Sweep:
  return sweep_flags.sweep_from_flags(
      'width', sweep_flags.base_config(),
      num_parameters=sweep_flags.parse_int_list(_NUM_PARAMETERS.value,
                                                'num_parameters'))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  return sweep_flags.run(_build)


if __name__ == '__main__':
  app.run(main)
