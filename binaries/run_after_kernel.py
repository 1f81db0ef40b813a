r"""FNTK vs after kernel of one network on one binary task, over several runs.

Offline demo on the embedded digits data (UCI handwritten digits, shipped
with scikit-learn), 3 runs of a VGG-like net, ~1-2 minutes on 2 CPU cores:

  python -m binaries.run_after_kernel --train_linear_model \
      --output_dir=results/demo

The paper's MNIST 3-vs-8 protocol on local files (tensorflow-datasets is used
instead when --data_dir is not given and downloads work):

  python -m binaries.run_after_kernel --dataset=mnist --plus_class=8 \
      --minus_class=3 --nn_architecture=vgg --max_num_epochs=10 --num_runs=3 \
      --train_linear_model --num_translations=1000 --num_zooms=1000 \
      --num_swaps=1000 --num_rotations=1000 --ker_alignment_sample_size=1000 \
      --data_dir=../shared/data --output_dir=results/mnist_3v8

It prints a table (mean ± 95% CI half-width over runs) of the SVM test error
and margin of the FNTK (epoch 0) and of the after kernel, the network's test
error, the four invariances, the alignment with the conjugate projection and
effective ranks, and writes config.json, records/*.json (one record per run)
and summary.json/.csv ({mean, std, ci95, n} per metric) to --output_dir. Re-running the
same command resumes: finished runs are kept and skipped.

Flags: one per field of `after_kernel.ExperimentConfig` (its docstring is their
help); a flag not given keeps that class's default (`--helpfull` lists them).
Bad input prints one `error: ...` line and exits with status 2.
"""

import os

# Keep TensorFlow's C++ start-up chatter out of the results printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
from afterkernel.studies import after_kernel
from afterkernel.studies import summary as summary_lib
from binaries import flags
from binaries import mains


def _report(summary, output_dir: str) -> str:
  """The table of means ± 95% CI, then where the results are."""
  table = summary_lib.format_table(summary, after_kernel.TABLE_ROWS)
  return f'\n{table}\n\nresults: {os.path.abspath(output_dir)}'


# The configuration the flags change: ExperimentConfig's defaults.
BINARY = mains.ConfigBinary(
    after_kernel.ExperimentConfig, 'run_after_kernel',
    run=lambda config, output_dir: after_kernel.run_experiment(
        config, output_dir, log=lambda m: print(m, flush=True)),
    report=_report)
config_from_flags = BINARY.config
main = BINARY.main

if __name__ == '__main__':
  flags.run(main)
